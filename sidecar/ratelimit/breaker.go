package ratelimit

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
// timeout (go-redis keeps retrying a refused dial until the deadline); with
// it one request per cooldown probes the node and the rest apply the failure
// mode at once. It is also the longest enforcement lags behind a recovery.
const breakerCooldown = 500 * time.Millisecond

// errNodeDown is the error of a rule whose Redis node is in its cooldown.
var errNodeDown = errors.New("redis node failed recently; not retried until its cooldown ends")

// breaker remembers that one Redis node failed.
type breaker struct {
	// downUntil is the unix-nano time until which the node is not asked;
	// 0 when it is healthy.
	downUntil atomic.Int64
}

// allow reports whether a request may use the node now. After a cooldown,
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

func (b *breaker) fail(now time.Time) { b.downUntil.Store(now.UnixNano() + int64(breakerCooldown)) }

func (b *breaker) succeed() {
	if b.downUntil.Load() != 0 {
		b.downUntil.Store(0)
	}
}

// router is the part of *redis.ClusterClient that maps a key to the node
// serving it and refreshes that map.
type router interface {
	MasterForKey(ctx context.Context, key string) (*redis.Client, error)
	// ReloadState refreshes the slot map in the background. go-redis does so
	// by itself on MOVED replies and every ClusterStateReloadInterval (60s
	// by default), but not when a pipeline cannot reach a primary, so without
	// a nudge a failover would go unnoticed for up to a minute.
	ReloadState(ctx context.Context)
}

// breakers keeps one breaker per Redis node of a connection: on a cluster, a
// failed primary must not stop the limiter from using the healthy ones.
type breakers struct {
	cluster router // nil: one node, the connection itself
	single  breaker
	nodes   sync.Map // *redis.Client -> *breaker
}

func newBreakers(c redis.UniversalClient) *breakers {
	b := &breakers{}
	if cc, ok := c.(*redis.ClusterClient); ok {
		b.cluster = cc
	}
	return b
}

// forKey returns the breaker of the node serving key. When the cluster
// layout is unknown (no node reachable yet) it uses the connection-wide one.
func (b *breakers) forKey(ctx context.Context, key string) *breaker {
	if b.cluster == nil {
		return &b.single
	}
	node, err := b.cluster.MasterForKey(ctx, key)
	if err != nil || node == nil {
		return &b.single
	}
	if v, ok := b.nodes.Load(node); ok {
		return v.(*breaker)
	}
	v, _ := b.nodes.LoadOrStore(node, &breaker{})
	return v.(*breaker)
}

// failed records that a call to a node failed: on a cluster the slot map
// may be stale (a failover), so it is refreshed.
func (b *breakers) failed(ctx context.Context) {
	if b.cluster != nil {
		b.cluster.ReloadState(ctx)
	}
}
