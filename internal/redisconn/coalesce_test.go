package redisconn

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

func serverReads(t *testing.T, addr string) int64 {
	t.Helper()
	n, err := redistest.Reads(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConcurrentCallsShareReads: calls of concurrent requests to one node
// leave in shared pipelines, so the node reads fewer times than it is
// called, and every call still gets its own replies.
func TestConcurrentCallsShareReads(t *testing.T) {
	srv := redistest.StartStandalone(t)
	cl := newConn(t, opts(Standalone, srv.Addr()), nil).Client("test", false)
	const goroutines, each = 32, 50
	before := serverReads(t, srv.Addr())
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			ctx := context.Background()
			key := "k" + strconv.Itoa(g)
			for i := range each {
				var incr *redis.IntCmd
				if err := cl.Do(ctx, "incr", key, func(p *Pipe) { incr = p.Incr(ctx, key) }); err != nil {
					errs <- err
					return
				}
				if incr.Val() != int64(i+1) {
					errs <- errors.New(key + ": INCR answered " + strconv.FormatInt(incr.Val(), 10) + ", want " + strconv.Itoa(i+1))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	calls := goroutines * each
	reads := serverReads(t, srv.Addr()) - before - 1 // the INFO itself
	t.Logf("%d concurrent calls, %d reads (%.2f per call)", calls, reads, float64(reads)/float64(calls))
	if reads >= int64(calls) {
		t.Errorf("%d reads for %d concurrent calls: no pipeline was shared", reads, calls)
	}
}

// TestQueuedCallKeepsItsDeadline: while the pipelines in flight to a
// frozen node wait out their deadlines, a call queued behind them returns
// by its own deadline, not theirs plus its own.
func TestQueuedCallKeepsItsDeadline(t *testing.T) {
	srv := redistest.StartStandalone(t)
	c := newConn(t, opts(Standalone, srv.Addr()), nil)
	cl := c.Client("test", false)
	ctx := context.Background()
	if err := cl.Do(ctx, "get", "k", func(p *Pipe) { p.Get(ctx, "k") }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Thaw() })
	var wg sync.WaitGroup
	// Fill the flights; their calls are sent and wait for the frozen node.
	for range maxFlights {
		wg.Go(func() { _ = cl.Do(ctx, "get", "k", func(p *Pipe) { p.Get(ctx, "k") }) })
	}
	time.Sleep(50 * time.Millisecond)
	// A call whose phase has less time left queues behind them.
	short, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
	defer cancel()
	phase := context.WithValue(short, phaseKey{c}, true)
	start := time.Now()
	err := cl.Do(phase, "get", "k", func(p *Pipe) { p.Get(phase, "k") })
	took := time.Since(start)
	wg.Wait()
	if err == nil {
		t.Fatal("a call to a frozen node succeeded")
	}
	// Its 60ms deadline plus slack, well below the flights' 200ms.
	if took > 150*time.Millisecond {
		t.Errorf("queued call returned after %v; its deadline was 60ms", took)
	}
}
