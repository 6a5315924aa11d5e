package redisconn

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// breakerCooldown is how long a Redis node that just failed is not asked
// again. Without it every request of an outage would wait out the full
// deadline; with it one request per cooldown probes the node and the rest
// apply their failure mode at once. It is also the longest a feature lags
// behind a node's recovery, which is why it is short: one timeout from a
// node that stalled for a moment (a fork, a busy machine) must not turn
// into half a second of failures. A probe of a dead node is refused at
// once; of a frozen one, it waits one deadline: ten such requests a second
// per sidecar. A failover does not wait for it: the promoted replica is
// another node, with a breaker of its own.
const breakerCooldown = 100 * time.Millisecond

// unknownNode labels calls made while a cluster's slot map is unknown (no
// node has answered CLUSTER SLOTS yet).
const unknownNode = "unknown"

// breaker remembers that one Redis node failed to answer.
type breaker struct {
	// downUntil is the unix-nano time until which the node is not asked;
	// 0 while it is healthy.
	downUntil atomic.Int64
}

// allow reports whether a call may use the node now. After a cooldown,
// exactly one caller wins the right to probe; the others keep failing fast
// until the probe succeeds or the next cooldown ends.
func (b *breaker) allow(now time.Time) bool {
	d := b.downUntil.Load()
	if d == 0 {
		return true
	}
	n := now.UnixNano()
	if n < d {
		return false
	}
	return b.downUntil.CompareAndSwap(d, n+int64(breakerCooldown))
}

// fail opens the breaker; it reports whether it was closed before.
func (b *breaker) fail(now time.Time) bool {
	return b.downUntil.Swap(now.UnixNano()+int64(breakerCooldown)) == 0
}

// succeed closes the breaker; it reports whether it was open before.
func (b *breaker) succeed() bool {
	return b.downUntil.Load() != 0 && b.downUntil.Swap(0) != 0
}

// breakers keeps one breaker per node address of a connection: on a
// cluster, a failed primary must not stop the healthy ones from serving.
type breakers struct {
	m     *connMetrics
	nodes sync.Map // address -> *breaker
}

func (b *breakers) get(addr string) *breaker {
	if v, ok := b.nodes.Load(addr); ok {
		return v.(*breaker)
	}
	v, _ := b.nodes.LoadOrStore(addr, &breaker{})
	return v.(*breaker)
}

func (b *breakers) fail(addr string, now time.Time) {
	if b.get(addr).fail(now) {
		b.m.breakerOpen(addr, true)
	}
}

func (b *breakers) succeed(addr string) {
	if b.get(addr).succeed() {
		b.m.breakerOpen(addr, false)
	}
}

// route returns the address of the node serving key and, on a cluster, its
// client. Standalone and Sentinel connections are one node.
func (c *Conn) route(ctx context.Context, key string) (string, *redis.Client) {
	if c.cluster == nil {
		return c.single, nil
	}
	n, err := c.cluster.MasterForKey(ctx, key)
	if err != nil || n == nil {
		return unknownNode, nil
	}
	return n.Options().Addr, n
}

// reloadEvery spaces this layer's requests for a slot-map reload. go-redis
// coalesces them as well (one reload at a time, then a 200 ms cooldown, and
// one more if asked meanwhile), so under continuous failures the map is
// refreshed every few hundred milliseconds until the cluster has moved on.
const reloadEvery = 50 * time.Millisecond

// reloader asks go-redis to refresh a cluster's slot map.
type reloader struct {
	c    *Conn
	last atomic.Int64
}

func (r *reloader) request(reason string) {
	if r.c.cluster == nil {
		return
	}
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(reloadEvery) || !r.last.CompareAndSwap(last, now) {
		return
	}
	r.c.m.reload(reason)
	// ReloadState only schedules the reload (on a goroutine of go-redis'
	// own, with its own context); it never blocks the caller.
	r.c.cluster.ReloadState(context.Background())
}

// verdict is what an error says about the node that produced it.
type verdict int

const (
	// answered: the node answered (a value, nil, or an error reply about
	// the command itself, such as a script error): it is up.
	answered verdict = iota
	// moving: the node answered, but the cluster is changing under it
	// (MOVED, ASK, CLUSTERDOWN, TRYAGAIN, LOADING, MASTERDOWN, READONLY).
	// Nothing is wrong with the node; the slot map may be stale.
	moving
	// expired: no answer, but not for want of the node: the caller's own
	// deadline, earlier than the connection's, ran out, or the call's
	// deadline passed before it left the queue for its node. It opens no
	// breaker and leaves the feature's health alone: a client sending
	// grpc-timeout: 1m must not make Redis look down for everyone.
	expired
	// silent: no answer in time (connection refused or reset, timeout):
	// the node may be down.
	silent
)

// topologyErrors are the error replies that mean the slot map moved on or
// the cluster is failing over.
var topologyErrors = []string{"MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY"}

func judge(err error) verdict {
	if err == nil || errors.Is(err, redis.Nil) {
		return answered
	}
	if _, ok := errors.AsType[redis.Error](err); !ok {
		return silent
	}
	for _, p := range topologyErrors {
		if redis.HasErrorPrefix(err, p) {
			return moving
		}
	}
	return answered
}
