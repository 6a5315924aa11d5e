// Package cache is the sidecar's response cache: cache-aside of upstream
// responses in Redis, with an optional bounded in-process tier in front of it,
// explicit invalidation by writes (paths, prefixes, tags) that reaches every
// replica through Redis Pub/Sub, and collapsing of concurrent misses.
//
// Freshness is the point of the design: every key written carries a TTL,
// writes evict after the upstream confirmed them, a fill that raced a write is
// refused (per-path generations), an eviction Redis did not accept is
// retried in the background while its paths bypass the cache, and a sidecar
// whose invalidation subscription broke stops using its in-process tier
// until it is back. Redis trouble never fails a request: the cache steps
// aside and the request goes to the upstream.
//
// The Redis tier (store, in redis.go) is four operations — lookup, put,
// evict, broadcast — over internal/redisconn, which owns deadlines,
// retries, breakers and topology; the HTTP semantics are built on them.
package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
)

const (
	// refreshTimeout bounds a background stale-while-revalidate refresh.
	refreshTimeout = 30 * time.Second
	// genGrace is how long a path's generation outlives its longest entry;
	// it must exceed the longest fill (lookup to store) it protects.
	genGrace = 5 * time.Minute
)

// Cache caches the responses of one CachePolicy.
type Cache struct {
	ks            keyspace
	canonicalHost string
	rules         []rule
	inv           []invRule
	st            *store
	local         *local // nil without an in-process tier
	m             *Metrics
	sh            *Shared
	pending       *pendingSet
	log           *slog.Logger
	flights       *flights
	hints         *varyHints
	// recs is this sidecar's copy of each bucket's invalidation records,
	// refreshed when a lookup sees a newer sequence.
	recs        [buckets]atomic.Pointer[records]
	maxLifetime time.Duration
	// heard is the unix-nano time the subscription last delivered anything
	// (a message or a pong); the in-process tier is used only while it is
	// recent (see subscriptionLease).
	heard atomic.Int64
	// lastSent and lastReceived are the unix-nano times of the latest
	// announcement published and applied, for measuring eviction delay.
	lastSent, lastReceived atomic.Int64
	// counters are each rule's request counters (metrics.go).
	countersOnce sync.Once
	counters     []ruleCounters

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
}

// New builds the cache of p, a policy Compile accepted. conns maps
// connection names to connections; p's must be there. sh is the process's
// Shared. New validates nothing of p: its only errors are missing runtime
// dependencies.
func New(p *Policy, conns map[string]*redisconn.Conn, sh *Shared, log *slog.Logger) (*Cache, error) {
	if sh == nil || log == nil {
		return nil, errors.New("cache: shared state and logger are required")
	}
	rc, ok := conns[p.redis]
	if !ok || rc == nil {
		return nil, fmt.Errorf("cache policy %s/%s: unknown redis connection %q", p.namespace, p.name, p.redis)
	}
	c := &Cache{
		ks:            p.ks,
		canonicalHost: p.canonicalHost,
		rules:         p.rules,
		inv:           p.inv,
		maxLifetime:   p.maxLifetime,
		m:             sh.m,
		sh:            sh,
		log:           log.With("cachePolicy", p.namespace+"/"+p.name),
		flights:       newFlights(),
		hints:         newVaryHints(),
		quit:          make(chan struct{}),
	}
	// A Redis failure never refuses a request: the cache steps aside.
	c.st = &store{rdb: rc.Client("cache", false), ks: c.ks, maxLifetime: c.maxLifetime}
	if p.inProcess != nil {
		c.local = newLocal(p.inProcess.MaxEntries, p.inProcess.MaxBytes, c.m)
	}
	c.pending = sh.pendingFor(c.ks.prefix)
	c.wg.Add(1)
	go c.retryInvalidations()
	if c.local != nil {
		c.wg.Add(1)
		go c.subscribe()
	}
	return c, nil
}

// Close stops the subscription and background refreshes and waits for them.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.quit)
	c.mu.Unlock()
	c.wg.Wait()
	if c.local != nil {
		c.local.disable()
	}
	return nil
}

// goBackground runs f on a tracked goroutine unless the cache is closed.
func (c *Cache) goBackground(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Go(func() {
		f()
	})
	return true
}

// redisFailed logs a failed Redis operation; the request it served bypasses
// the cache. Calls the access layer did not send because their node failed
// moments ago are not logged: during an outage that would be every request.
func (c *Cache) redisFailed(op string, err error) {
	if errors.Is(err, redisconn.ErrNodeAvoided) {
		return
	}
	c.log.Warn("cache redis operation failed; bypassing", "op", op, "err", err)
}

// RedisHealth is the feature's view of its Redis connection, for /readyz.
func (c *Cache) RedisHealth() []redisconn.Health { return []redisconn.Health{c.st.rdb.Health()} }
