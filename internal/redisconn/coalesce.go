package redisconn

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// maxFlights is how many coalesced pipelines may be in flight to one node at
// once. While they are, the commands of further calls queue and leave
// together in the next pipeline, so under concurrency a node reads many
// requests' commands per read instead of one request's: the Redis CPU of a
// read (a syscall, a wake-up, the parse of a buffer) is shared by all of
// them. Two flights keep a request from waiting for a whole round trip of
// someone else's before its own leaves; an idle node sees no delay at all,
// since the first call finds a flight free and leaves at once.
const maxFlights = 2

// coalescer merges the plain (non-durable) pipelines of concurrent calls to
// one node: envoyproxy/ratelimit's radix client does the same with its
// implicit pipelining. Unlike a timer window it adds no latency: commands
// wait only while maxFlights pipelines are already on the wire.
type coalescer struct {
	c       *Conn
	mu      sync.Mutex
	flights int
	queue   []*flush
}

// flush is one call's commands waiting to be sent.
type flush struct {
	cmds     []redis.Cmder
	deadline time.Time
	done     chan struct{}
}

// coalescer returns the coalescer of node.
func (c *Conn) coalescer(node string) *coalescer {
	if v, ok := c.flights.Load(node); ok {
		return v.(*coalescer)
	}
	v, _ := c.flights.LoadOrStore(node, &coalescer{c: c})
	return v.(*coalescer)
}

// send sends cmds, alone or with other calls' commands, and returns once
// their replies (or errors) are in. It never waits past ctx's deadline plus
// the pipeline's own timeouts: a queued flush whose deadline passes is taken
// out of the queue and fails, and a pipeline runs within the earliest
// deadline of the flushes it carries.
func (co *coalescer) send(ctx context.Context, cmds []redis.Cmder) {
	f := &flush{cmds: cmds, deadline: deadlineOf(ctx)}
	co.mu.Lock()
	if co.flights < maxFlights {
		co.flights++
		co.mu.Unlock()
		co.fly([]*flush{f})
		return
	}
	f.done = make(chan struct{})
	co.queue = append(co.queue, f)
	co.mu.Unlock()
	select {
	case <-f.done:
		return
	case <-ctx.Done():
	}
	co.mu.Lock()
	i := slices.Index(co.queue, f)
	if i >= 0 {
		co.queue = slices.Delete(co.queue, i, i+1)
	}
	co.mu.Unlock()
	if i < 0 {
		// Already on the wire, within a deadline no later than ours.
		<-f.done
		return
	}
	for _, cmd := range cmds {
		cmd.SetErr(ctx.Err())
	}
}

// fly sends fs in one pipeline, then sends whatever queued meanwhile on a
// goroutine of its own, so that the caller of the first flush returns as soon
// as its replies are in.
func (co *coalescer) fly(fs []*flush) {
	co.pipeline(fs)
	co.mu.Lock()
	next := co.queue
	co.queue = nil
	if len(next) == 0 {
		co.flights--
	}
	co.mu.Unlock()
	if len(next) > 0 {
		go co.fly(next)
	}
}

func (co *coalescer) pipeline(fs []*flush) {
	dl := fs[0].deadline
	n := 0
	for _, f := range fs {
		if f.deadline.Before(dl) {
			dl = f.deadline
		}
		n += len(f.cmds)
	}
	cmds := fs[0].cmds
	if len(fs) > 1 {
		cmds = make([]redis.Cmder, 0, n)
		for _, f := range fs {
			cmds = append(cmds, f.cmds...)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	pipe := co.c.client.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, _ = pipe.Exec(ctx) // errors are per command, read by settle
	cancel()
	for _, f := range fs {
		if f.done != nil {
			close(f.done)
		}
	}
}
