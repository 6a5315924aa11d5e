package redisconn

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// A call dropped before Exec is never sent (its INCR never reaches Redis)
// and says so; one already sent cannot be dropped, and the calls around a
// dropped one still go out.
func TestDropTakesAnUnsentCallOut(t *testing.T) {
	srv := redistest.StartStandalone(t)
	cl := newConn(t, opts(Standalone, srv.Addr()), nil).Client("test", false)
	ctx := context.Background()
	var b Batch
	incr := func(key string) (*Call, *redis.IntCmd) {
		var cmd *redis.IntCmd
		return b.Add(cl, "incr", key, func(p *Pipe) { cmd = p.Incr(ctx, key) }), cmd
	}
	first, firstCmd := incr("first")
	b.Exec(ctx)
	kept, keptCmd := incr("kept")
	dropped, _ := incr("dropped")
	last, lastCmd := incr("last")
	if b.Drop(first) {
		t.Error("dropped a call that was sent")
	}
	if !b.Drop(dropped) || b.Drop(dropped) {
		t.Error("Drop of an unsent call: want true once, then false")
	}
	if b.Pending() != 2 {
		t.Errorf("pending %d, want 2", b.Pending())
	}
	b.Exec(ctx)
	for _, c := range []*Call{first, kept, last} {
		if c.Err() != nil {
			t.Errorf("call: %v", c.Err())
		}
	}
	if firstCmd.Val() != 1 || keptCmd.Val() != 1 || lastCmd.Val() != 1 {
		t.Errorf("INCR replies %d %d %d, want 1 each", firstCmd.Val(), keptCmd.Val(), lastCmd.Val())
	}
	if !errors.Is(dropped.Err(), errDropped) {
		t.Errorf("dropped call's error %v", dropped.Err())
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	if n, err := rdb.Exists(ctx, "dropped").Result(); err != nil || n != 0 {
		t.Errorf("the dropped INCR reached Redis: EXISTS %d %v", n, err)
	}
}
