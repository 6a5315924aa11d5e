package redisconn

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// TestCoalescedCallKeepsItsOwnDeadline attacks the coalescer's rule that "a
// pipeline carrying several requests' calls runs within the earliest of
// their deadlines" (coalesce.go, docs/rate-limiting.md). Two calls that
// queue behind busy flights leave in one pipeline: A, whose phase has
// little time left and whose pipeline needs a while (a BLPOP stands in for
// any slow reply: a big cache body, a revoke-all's long DEL, a network
// hiccup), and B, a GET with a whole second left. On its own connection
// B's GET would be answered at once. Coalesced, B inherits A's deadline:
// it fails with A's timeout (an error attributed to the wrong call), and
// that failure opens the node's breaker, so a third call C made right
// after, to a perfectly healthy node, is refused without being sent.
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

	// A: queued, 300ms left, its own reply takes ~150ms once sent.
	var aErr error
	wg.Go(func() {
		short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		phase := context.WithValue(short, phaseKey{c}, true)
		aErr = cl.Do(phase, "slow", "a", func(p *Pipe) { p.Do(phase, "blpop", "empty-a", "0.15") })
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

	t.Logf("A: %v; B: %v after %v (value %q); C: %v (value %q)", aErr, bErr, bTook, get.Val(), cErr, getC.Val())
	if bErr != nil || get.Val() != "v" {
		t.Errorf("B (GET, 1s deadline) failed after %v with %v: it carried the deadline of another call in its pipeline", bTook, bErr)
	}
	if cErr != nil {
		t.Errorf("C, sent after the coalesced pipeline, to a healthy node: %v (skipped: %v)", cErr, errors.Is(cErr, ErrNodeAvoided))
	}
}

