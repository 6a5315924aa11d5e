package redisconn

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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
	warmThenFreeze(t, srv, cl)
	var wg sync.WaitGroup
	// Fill the flights; their calls are sent and wait for the frozen node.
	for range maxFlights {
		wg.Go(func() { _ = cl.Do(ctx, "get", "k", func(p *Pipe) { p.Get(ctx, "k") }) })
	}
	time.Sleep(50 * time.Millisecond)
	// A call whose phase has less time left queues behind them.
	phase, cancel := phaseWithLeft(c, 60*time.Millisecond)
	defer cancel()
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

// warmThenFreeze makes one call through cl, so that a pooled connection
// to srv exists, then freezes srv until the test ends.
func warmThenFreeze(t *testing.T, srv *redistest.Server, cl *Client) {
	t.Helper()
	ctx := context.Background()
	if err := cl.Do(ctx, "get", "k", func(p *Pipe) { p.Get(ctx, "k") }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Thaw() })
}

// phaseWithLeft is a phase of c with only left of the connection's own
// deadline remaining, as a phase's later calls have once its first ones
// took the rest.
func phaseWithLeft(c *Conn, left time.Duration) (context.Context, context.CancelFunc) {
	dl := time.Now().Add(left)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	return context.WithValue(ctx, phaseKey{c}, &phase{bound: dl}), cancel
}

// TestCoalescedCallKeepsItsOwnDeadline replays the attack on the rule that
// "a pipeline carrying several requests' calls runs within the earliest of
// their deadlines". Two calls queue behind busy flights and leave in one
// pipeline: A, whose phase has little time left and whose reply takes a
// while (a BLPOP stands in for any slow reply: a big cache body, a
// revoke-all's long DEL, a network hiccup), and B, a GET with the
// connection's whole second left. Coalesced under the old rule, B
// inherited A's deadline, failed with A's timeout, and that failure opened
// the node's breaker, so a third call C to the perfectly healthy node was
// refused without being sent. Each call must keep its own deadline: A
// fails at its own, B gets its reply, C is sent.
func TestCoalescedCallKeepsItsOwnDeadline(t *testing.T) {
	srv := redistest.StartStandalone(t)
	o := opts(Standalone, srv.Addr())
	o.ReadTimeout = time.Second // the connection's deadline: ample for B
	c := newConn(t, o, nil)
	cl := c.Client("test", false)
	ctx := context.Background()
	if err := cl.Do(ctx, "set", "b", func(p *Pipe) { p.Set(ctx, "b", "v", 0) }); err != nil {
		t.Fatal(err)
	}

	// Keep both flights busy for ~200ms; the server itself stays idle.
	var wg sync.WaitGroup
	for range maxFlights {
		wg.Go(func() {
			_ = cl.Do(ctx, "busy", "q", func(p *Pipe) { p.Do(ctx, "blpop", "empty-q", "0.2") })
		})
	}
	time.Sleep(30 * time.Millisecond)

	// A: queued, 300ms left, its own reply takes ~150ms once sent, so it
	// runs out of its own time ~100ms into the pipeline.
	var aErr error
	var aTook time.Duration
	wg.Go(func() {
		phase, cancel := phaseWithLeft(c, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		aErr = cl.Do(phase, "slow", "a", func(p *Pipe) { p.Do(phase, "blpop", "empty-a", "0.15") })
		aTook = time.Since(start)
	})
	time.Sleep(10 * time.Millisecond)

	// B: queued too, the connection's full second left, a plain GET.
	var get *redis.StringCmd
	start := time.Now()
	bErr := cl.Do(ctx, "get", "b", func(p *Pipe) { get = p.Get(ctx, "b") })
	bTook := time.Since(start)
	wg.Wait()

	// C: a fresh call to the same healthy node.
	var getC *redis.StringCmd
	cErr := cl.Do(ctx, "get", "b", func(p *Pipe) { getC = p.Get(ctx, "b") })

	t.Logf("A: %v after %v; B: %v after %v (value %q); C: %v (value %q)", aErr, aTook, bErr, bTook, get.Val(), cErr, getC.Val())
	if !errors.Is(aErr, ErrUnavailable) {
		t.Errorf("A (BLPOP 150ms, 300ms deadline behind 200ms flights): %v, want its own timeout", aErr)
	}
	// A leaves at its own deadline, not when B's reply arrives (~380ms);
	// generous slack for a loaded machine, still below B's 1s.
	if aTook > 300*time.Millisecond+400*time.Millisecond {
		t.Errorf("A returned after %v; its deadline was 300ms", aTook)
	}
	if bErr != nil || get.Val() != "v" {
		t.Errorf("B (GET, 1s deadline) failed after %v with %v: it carried the deadline of another call in its pipeline", bTook, bErr)
	}
	if cErr != nil {
		t.Errorf("C, sent after the coalesced pipeline, to a healthy node: %v (skipped: %v)", cErr, errors.Is(cErr, ErrNodeAvoided))
	}
}

// TestCallerDeadlineBoundsTheWait replays a client that sends a gRPC call
// with grpc-timeout shorter than the connection's readTimeout to a node
// that has frozen. The call must give up at the caller's deadline (Phase
// keeps it), not wait out readTimeout; and because the node was not given
// its own deadline, the timeout opens no breaker and leaves the feature
// healthy: a hostile client sending "grpc-timeout: 1m" must not make the
// node look down for every other request.
func TestCallerDeadlineBoundsTheWait(t *testing.T) {
	srv := redistest.StartStandalone(t)
	m := NewMetrics(prometheus.NewRegistry())
	o := opts(Standalone, srv.Addr())
	o.ReadTimeout = 2 * time.Second
	c := newConn(t, o, m)
	cl := c.Client("test", true)
	bg := context.Background()
	warmThenFreeze(t, srv, cl)

	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := cl.Do(ctx, "get", "k", func(p *Pipe) { p.Get(ctx, "k") })
	took := time.Since(start)
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("call with a 50ms deadline to a frozen node: %v, want ErrUnavailable", err)
	}
	// The caller's 50ms plus slack, far below the connection's 2s.
	if took > 50*time.Millisecond+500*time.Millisecond {
		t.Errorf("call with a 50ms deadline returned after %v: the caller's deadline did not bound the wait (readTimeout %v)", took, o.ReadTimeout)
	}
	if err := cl.Do(bg, "get", "k", func(p *Pipe) { p.Get(bg, "k") }); err != nil {
		t.Errorf("call right after the caller's timeout, node thawed: %v (skipped: %v); the caller's deadline opened the breaker", err, errors.Is(err, ErrNodeAvoided))
	}
	if h := cl.Health(); h.State != StateOK || h.LastError != "" {
		t.Errorf("health after the caller's timeout: %+v, want ok with no failure", h)
	}
	if got := counter(t, m, "expired"); got != 1 {
		t.Errorf("expired calls = %v, want 1", got)
	}
}
