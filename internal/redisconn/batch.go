package redisconn

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Script is a Lua script. It is sent with EVALSHA and, where the server
// does not know it (a fresh node, a promoted replica, SCRIPT FLUSH), again
// with EVAL, which also caches it there for the next call.
type Script struct {
	src, sha string
}

// NewScript wraps the Lua source src. Scripts are meant to be package-level
// values: every key a script touches must be in KEYS and share one hash slot.
func NewScript(src string) *Script {
	sum := sha1.Sum([]byte(src)) //nolint:gosec // EVALSHA names scripts by SHA-1
	return &Script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Hash is the script's SHA-1, as SCRIPT EXISTS and EVALSHA name it.
func (s *Script) Hash() string { return s.sha }

// Pipe queues the commands of one group. Use its go-redis command methods
// for plain commands and Run for scripts; the commands' results are
// available once the batch has run.
type Pipe struct {
	redis.Pipeliner
	scripts []scriptCall
}

type scriptCall struct {
	s    *Script
	cmd  *redis.Cmd
	args []any // numkeys, keys..., args...
}

// Run queues script s with keys and args.
func (p *Pipe) Run(ctx context.Context, s *Script, keys []string, args ...any) *redis.Cmd {
	a := make([]any, 0, 1+len(keys)+len(args))
	a = append(a, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, append([]any{"evalsha", s.sha}, a...)...)
	_ = p.Process(ctx, cmd)
	p.scripts = append(p.scripts, scriptCall{s: s, cmd: cmd, args: a})
	return cmd
}

// Call is one group of a batch: commands for one hash slot, sent on behalf
// of one feature. Its outcome is known once the batch has run.
type Call struct {
	client  *Client
	op      string
	key     string
	durable bool
	cmds    []redis.Cmder
	scripts []scriptCall

	node       string
	nodeClient *redis.Client
	skipped    bool
	err        error
	v          verdict
	replicated bool
}

// Err is the call's error: nil when every command succeeded (redis.Nil
// replies count as success; read them from the commands), an error wrapping
// ErrUnavailable when the node could not answer (or is in its breaker's
// cooldown, or the cluster is failing over), or the first error reply.
func (c *Call) Err() error { return c.err }

// Skipped reports whether the call was not sent because its node's breaker
// was open: it failed at once, without waiting for Redis.
func (c *Call) Skipped() bool { return c.skipped }

// Replicated reports whether a durable call's writes reached at least one
// replica before the call returned (always false for a Standalone
// connection, which has no replica to fail over to).
func (c *Call) Replicated() bool { return c.replicated }

// Batch is a set of calls made on behalf of one request. Exec sends all of
// them at once: one pipeline per node, every node concurrently, each
// connection within its own deadline. The zero Batch is ready to use.
//
// A request-scoped batch collects the calls of several features before it
// is sent (sidecar/proxy assembles it); a feature whose calls depend on
// another's replies adds them afterwards and calls Exec again, which sends
// only the calls added since the last Exec.
type Batch struct {
	calls []*Call
	sent  int
}

// Pending reports how many calls were added since the last Exec.
func (b *Batch) Pending() int { return len(b.calls) - b.sent }

// Add queues the commands that queue adds as one call of feature client c,
// named op in metrics, bound to key's hash slot: every key the commands
// touch must share that slot.
func (b *Batch) Add(c *Client, op, key string, queue func(p *Pipe)) *Call {
	return b.add(c, op, key, false, queue)
}

// AddDurable is Add for writes that must survive the failure of their
// primary: after the commands the call waits (WAIT 1) for one replica to
// acknowledge them, within the same deadline. Replicated tells whether one
// did. A call whose shard showed no replica within the last 10 s does not
// wait again until then.
func (b *Batch) AddDurable(c *Client, op, key string, queue func(p *Pipe)) *Call {
	return b.add(c, op, key, true, queue)
}

func (b *Batch) add(c *Client, op, key string, durable bool, queue func(p *Pipe)) *Call {
	p := &Pipe{Pipeliner: c.conn.client.Pipeline()}
	queue(p)
	call := &Call{client: c, op: op, key: key, durable: durable, cmds: p.Cmds(), scripts: p.scripts}
	b.calls = append(b.calls, call)
	return call
}

// errDropped is the error of a call taken out of its batch before it was sent.
var errDropped = errors.New("call dropped before it was sent")

// Drop takes c out of the batch unless it was sent already, and reports
// whether it did: a feature that learns while planning that the request
// will be refused withdraws what it queued for it, so the refused request
// is counted nowhere. A dropped call is never sent; its error says so.
func (b *Batch) Drop(c *Call) bool {
	i := slices.Index(b.calls[b.sent:], c)
	if i < 0 {
		return false
	}
	b.calls = slices.Delete(b.calls, b.sent+i, b.sent+i+1)
	c.err = errDropped
	return true
}

// Exec sends every call and fills in the results. Calls on several
// connections run concurrently. ctx's cancellation is ignored; its
// deadline, if earlier than the connection's, bounds the wait (see Phase).
func (b *Batch) Exec(ctx context.Context) {
	calls := b.calls[b.sent:]
	b.sent = len(b.calls)
	fanOut(calls, func(c *Call) *Conn { return c.client.conn }, func(calls []*Call) {
		calls[0].client.conn.exec(ctx, calls)
	})
}

// fanOut groups xs by key, in the order keys first appear, and runs f on
// every group, the groups concurrently; one group runs on the caller's
// goroutine.
func fanOut[T any, K comparable](xs []T, key func(T) K, f func([]T)) {
	if len(xs) == 0 {
		return
	}
	k0 := key(xs[0])
	if !slices.ContainsFunc(xs[1:], func(x T) bool { return key(x) != k0 }) {
		f(xs)
		return
	}
	var order []K
	groups := map[K][]T{}
	for _, x := range xs {
		k := key(x)
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], x)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		wg.Go(func() { f(groups[k]) })
	}
	wg.Wait()
}

// exec runs calls, which all use c, within one phase.
func (c *Conn) exec(ctx context.Context, calls []*Call) {
	ctx, cancel := c.Phase(ctx)
	defer cancel()
	start := time.Now()

	// One breaker decision per node and batch: a second call to the same
	// node follows the first, so one probe is one probe.
	type decision struct {
		node string
		ok   bool
	}
	var buf [4]decision
	decided := buf[:0]
	send := make([]*Call, 0, len(calls))
	for _, call := range calls {
		call.node, call.nodeClient = c.route(ctx, call.key)
		i := slices.IndexFunc(decided, func(d decision) bool { return d.node == call.node })
		if i < 0 {
			decided = append(decided, decision{call.node, c.nodes.get(call.node).allow(start)})
			i = len(decided) - 1
		}
		ok := decided[i].ok
		if !ok {
			call.skipped = true
			call.v = silent
			call.err = fmt.Errorf("%w: node %s: %w", ErrUnavailable, call.node, ErrNodeAvoided)
			for _, cmd := range call.cmds {
				cmd.SetErr(call.err)
			}
			// The cluster may have failed over meanwhile: keep the slot
			// map moving while the node is avoided.
			c.reload.request("breaker-open")
			continue
		}
		send = append(send, call)
	}
	if len(send) > 0 {
		items := make([]item, len(send))
		for i, call := range send {
			items[i] = item{call: call, cmds: call.cmds}
		}
		c.roundTrip(ctx, items)
		c.retryNoScript(ctx, send)
	}
	took := time.Since(start)
	now := time.Now()
	callers := deadlineOf(ctx).Before(c.phaseOf(ctx).bound)
	for _, call := range calls {
		c.settle(call, now, took, callers)
	}
}

// item is what one call sends in one round trip.
type item struct {
	call *Call
	cmds []redis.Cmder
}

// roundTrip sends items, one pipeline per node and the nodes concurrently.
// Each node gets a pipeline of its own, rather than one cluster pipeline for
// all: go-redis retries a cluster pipeline's failed part within the same
// Exec and, when the deadline ends the retry, marks every command of the
// pipeline failed, so one dead node would fail the calls to healthy ones.
// Plain calls go through the cluster client (which follows MOVED and ASK);
// durable calls go to their node directly (see sendDurable).
func (c *Conn) roundTrip(ctx context.Context, items []item) {
	fanOut(items, func(it item) string { return it.call.node }, func(items []item) { c.sendNode(ctx, items) })
}

// sendNode sends the items of one node.
func (c *Conn) sendNode(ctx context.Context, items []item) {
	var plain []redis.Cmder
	var durable []item
	for _, it := range items {
		if it.call.durable && c.mode != Standalone && c.direct(it.call) != nil {
			durable = append(durable, it)
			continue
		}
		plain = append(plain, it.cmds...)
	}
	var wg sync.WaitGroup
	for _, it := range durable {
		wg.Go(func() { c.sendDurable(ctx, it) })
	}
	if len(plain) > 0 {
		c.coalescer(items[0].call.node).send(ctx, plain)
	}
	wg.Wait()
}

// direct is the client of a call's node itself: the node's client on a
// cluster, the failover client on Sentinel; nil when unknown.
func (c *Conn) direct(call *Call) *redis.Client {
	if c.cluster != nil {
		return call.nodeClient
	}
	rc, _ := c.client.(*redis.Client)
	return rc
}

// sendDurable sends a durable call on one connection of its node and then,
// on the same connection, WAITs for a replica: WAIT counts the replicas that
// acknowledged the writes of its own connection only, and a cluster
// pipeline cannot route a keyless WAIT to the node of the writes. WAIT is a
// round trip of its own so that a late acknowledgement (redis-server times
// WAIT out with its hz granularity, 100 ms by default) can only make the
// call unreplicated, never hide that the writes succeeded. If the slot
// moved meanwhile, the call goes through the cluster client, which follows
// the redirect, unreplicated.
func (c *Conn) sendDurable(ctx context.Context, it item) {
	cn := c.direct(it.call).Conn()
	defer cn.Close()
	pipe := cn.Pipeline()
	_ = pipe.BatchProcess(ctx, it.cmds...)
	_, _ = pipe.Exec(ctx)
	worst := answered
	for _, cmd := range it.cmds {
		worst = max(worst, judge(cmd.Err()))
	}
	switch {
	case worst == moving && c.cluster != nil:
		c.reload.request("moved")
		pipe := c.client.Pipeline()
		_ = pipe.BatchProcess(ctx, it.cmds...)
		_, _ = pipe.Exec(ctx)
		return
	case worst != answered:
		return
	}
	if w := c.replicaWait(ctx, it.call.node); w != nil {
		_ = cn.Process(ctx, w)
		it.call.replicated = c.waited(it.call.node, w)
	}
}

// unreplicatedFor is how long a node whose WAIT saw no replica is written to
// without waiting: a shard without replicas would otherwise make every
// durable write wait out its deadline.
const unreplicatedFor = 10 * time.Second

// waitSlack is how much of the deadline a WAIT leaves for its late reply.
const waitSlack = 110 * time.Millisecond

// replicaWait returns the WAIT for a durable write to node, or nil when
// there is nothing to wait for: a Standalone connection, or a node that
// recently had no replica.
func (c *Conn) replicaWait(ctx context.Context, node string) *redis.IntCmd {
	if c.mode == Standalone {
		return nil
	}
	c.mu.Lock()
	until, ok := c.unreplicated[node]
	c.mu.Unlock()
	if ok && time.Now().Before(until) {
		return nil
	}
	// redis-server checks WAIT's timeout on its cron (hz 10: every 100 ms),
	// so the reply may come that much after the timeout asked for.
	ms := (time.Until(deadlineOf(ctx)) - waitSlack).Milliseconds()
	return redis.NewIntCmd(ctx, "wait", 1, max(ms, 1))
}

// waited reads a WAIT reply for node and remembers a node without replicas.
func (c *Conn) waited(node string, w *redis.IntCmd) bool {
	n, err := w.Result()
	if err == nil && n == 0 {
		c.mu.Lock()
		c.unreplicated[node] = time.Now().Add(unreplicatedFor)
		c.mu.Unlock()
	}
	return err == nil && n >= 1
}

// timedOut reports whether err is a deadline running out, a context's or a
// connection's.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || IsTimeout(err)
}

func deadlineOf(ctx context.Context) time.Time {
	dl, ok := ctx.Deadline()
	if !ok {
		return time.Now()
	}
	return dl
}

// retryNoScript sends again, with EVAL, the scripts a node did not know.
// EVALSHA in a pipeline does not fall back by itself.
func (c *Conn) retryNoScript(ctx context.Context, calls []*Call) {
	var items []item
	type copyBack struct {
		sc   scriptCall
		eval *redis.Cmd
	}
	var back []copyBack
	for _, call := range calls {
		var cmds []redis.Cmder
		for _, sc := range call.scripts {
			if !redis.HasErrorPrefix(sc.cmd.Err(), "NOSCRIPT") {
				continue
			}
			eval := redis.NewCmd(ctx, append([]any{"eval", sc.s.src}, sc.args...)...)
			cmds = append(cmds, eval)
			back = append(back, copyBack{sc, eval})
		}
		if len(cmds) > 0 {
			items = append(items, item{call: call, cmds: cmds})
		}
	}
	if len(items) == 0 {
		return
	}
	c.roundTrip(ctx, items)
	for _, b := range back {
		b.sc.cmd.SetVal(b.eval.Val())
		b.sc.cmd.SetErr(b.eval.Err())
	}
}

// settle judges a call from its commands' errors: the call's error, its
// node's breaker, the topology, the metrics and its feature's health.
// callers says whether the call's deadline was its caller's, earlier than
// the connection's own: a timeout then is the caller's, not the node's.
func (c *Conn) settle(call *Call, now time.Time, took time.Duration, callers bool) {
	if !call.skipped {
		// The call's error is its worst one: no answer over a moving
		// cluster over an error reply, the first of each kind.
		for _, cmd := range call.cmds {
			err := cmd.Err()
			if err == nil || errors.Is(err, redis.Nil) {
				continue
			}
			if v := judge(err); call.err == nil || v > call.v {
				call.err, call.v = err, v
			}
		}
		if call.v == silent && (errors.Is(call.err, errNotSent) || callers && timedOut(call.err)) {
			call.v = expired
		}
		switch call.v {
		case expired:
			call.err = fmt.Errorf("%w: node %s: %w", ErrUnavailable, call.node, call.err)
		case silent:
			c.nodes.fail(call.node, now)
			c.reload.request("node-unreachable")
			call.err = fmt.Errorf("%w: node %s: %w", ErrUnavailable, call.node, call.err)
		case moving:
			// The node answered, so its breaker closes; the cluster is
			// moving, so the slot map is reloaded.
			c.nodes.succeed(call.node)
			c.reload.request("topology")
			call.err = fmt.Errorf("%w: node %s: %w", ErrUnavailable, call.node, call.err)
		default:
			c.nodes.succeed(call.node)
		}
	}
	call.client.record(call, now, took)
}
