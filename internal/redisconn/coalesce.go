package redisconn

import (
	"context"
	"errors"
	"fmt"
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
//
// Every call keeps its own deadline. A pipeline carrying several calls
// reads until the latest of their deadlines, so no call fails because
// another one in the same pipeline had less time left; a call whose own
// deadline comes first leaves at that deadline with a timeout while the
// pipeline goes on reading for the others. Such a call is sent as clones of
// its commands, so the replies that arrive after it left are
// written into copies nobody reads, never into commands its caller already
// holds.
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

	// Under coalescer.mu:
	// wire is what the pipeline sends: cmds itself, or clones of them for
	// a flush whose caller may leave before the pipeline ends.
	wire   []redis.Cmder
	cloned bool
	// left: the caller's deadline passed while its clones were on the
	// wire; the pipeline must not copy their replies back.
	left bool
	// finished: the pipeline is over and any replies were copied back.
	finished bool
}

// errNotSent is the error of commands whose deadline passed while they were
// still queued behind the pipelines in flight to their node. Nothing was
// asked of the node, so it says nothing about the node (see settle).
var errNotSent = fmt.Errorf("deadline passed before the commands left the queue for their node: %w", context.DeadlineExceeded)

// coalescer returns the coalescer of node.
func (c *Conn) coalescer(node string) *coalescer {
	if v, ok := c.flights.Load(node); ok {
		return v.(*coalescer)
	}
	v, _ := c.flights.LoadOrStore(node, &coalescer{c: c})
	return v.(*coalescer)
}

// send sends cmds, alone or with other calls' commands, and returns once
// their replies (or errors) are in, and never after ctx's deadline: a
// queued flush whose deadline passes is taken out of the queue and fails,
// and one on the wire in a pipeline that reads until a later deadline
// fails at its own and leaves the pipeline reading for the others.
func (co *coalescer) send(ctx context.Context, cmds []redis.Cmder) {
	f := &flush{cmds: cmds, deadline: deadlineOf(ctx)}
	co.mu.Lock()
	if co.flights < maxFlights {
		co.flights++
		f.wire = cmds
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
	if i := slices.Index(co.queue, f); i >= 0 {
		co.queue = slices.Delete(co.queue, i, i+1)
		co.mu.Unlock()
		for _, cmd := range cmds {
			cmd.SetErr(errNotSent)
		}
		return
	}
	if f.finished || !f.cloned {
		// Done, or sent as the caller's own commands in a pipeline whose
		// deadline is this flush's: it ends now too.
		co.mu.Unlock()
		<-f.done
		return
	}
	f.left = true
	co.mu.Unlock()
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
	} else {
		wire(next)
	}
	co.mu.Unlock()
	if len(next) > 0 {
		go co.fly(next)
	}
}

// wire decides, under the coalescer's lock, what each flush of one
// pipeline sends: a flush whose deadline comes before the pipeline's (the
// latest of them) sends clones, so its caller can leave at its deadline.
// Commands whose replies cannot be copied back (see copyReply) are sent as
// they are, and their caller waits for the pipeline.
func wire(fs []*flush) {
	dl := pipelineDeadline(fs)
	for _, f := range fs {
		f.wire = f.cmds
		if !f.deadline.Before(dl) || slices.ContainsFunc(f.cmds, func(c redis.Cmder) bool { return !copyable(c) }) {
			continue
		}
		f.wire = make([]redis.Cmder, len(f.cmds))
		for i, cmd := range f.cmds {
			f.wire[i] = cmd.Clone()
		}
		f.cloned = true
	}
}

func pipelineDeadline(fs []*flush) time.Time {
	dl := fs[0].deadline
	for _, f := range fs[1:] {
		if f.deadline.After(dl) {
			dl = f.deadline
		}
	}
	return dl
}

func (co *coalescer) pipeline(fs []*flush) {
	cmds := fs[0].wire
	if len(fs) > 1 {
		n := 0
		for _, f := range fs {
			n += len(f.wire)
		}
		cmds = make([]redis.Cmder, 0, n)
		for _, f := range fs {
			cmds = append(cmds, f.wire...)
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), pipelineDeadline(fs))
	pipe := co.c.client.Pipeline()
	_ = pipe.BatchProcess(ctx, cmds...)
	_, _ = pipe.Exec(ctx) // errors are per command, read by settle
	cancel()
	co.mu.Lock()
	for _, f := range fs {
		if f.cloned && !f.left {
			for i, cmd := range f.cmds {
				copyReply(cmd, f.wire[i])
			}
		}
		f.finished = true
	}
	co.mu.Unlock()
	for _, f := range fs {
		if f.done != nil {
			close(f.done)
		}
	}
}

// copyable reports whether copyReply can copy a reply into cmd: the command
// types the features use.
func copyable(cmd redis.Cmder) bool {
	switch cmd.(type) {
	case *redis.Cmd, *redis.StringCmd, *redis.StatusCmd, *redis.IntCmd, *redis.BoolCmd,
		*redis.FloatCmd, *redis.DurationCmd, *redis.SliceCmd, *redis.StringSliceCmd,
		*redis.IntSliceCmd, *redis.BoolSliceCmd, *redis.MapStringStringCmd:
		return true
	}
	return false
}

// copyReply copies the reply of src, a clone of dst, into dst.
func copyReply(dst, src redis.Cmder) {
	dst.SetErr(src.Err())
	switch d := dst.(type) {
	case *redis.Cmd:
		move(d, src)
	case *redis.StringCmd:
		move(d, src)
	case *redis.StatusCmd:
		move(d, src)
	case *redis.IntCmd:
		move(d, src)
	case *redis.BoolCmd:
		move(d, src)
	case *redis.FloatCmd:
		move(d, src)
	case *redis.DurationCmd:
		move(d, src)
	case *redis.SliceCmd:
		move(d, src)
	case *redis.StringSliceCmd:
		move(d, src)
	case *redis.IntSliceCmd:
		move(d, src)
	case *redis.BoolSliceCmd:
		move(d, src)
	case *redis.MapStringStringCmd:
		move(d, src)
	default:
		// wire never clones other types.
		dst.SetErr(errors.New("redisconn: reply of an unsupported command type lost"))
	}
}

func move[T any, C interface {
	redis.Cmder
	Val() T
	SetVal(T)
}](dst C, src redis.Cmder) {
	dst.SetVal(src.(C).Val())
}
