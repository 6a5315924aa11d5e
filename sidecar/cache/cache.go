// Package cache is the sidecar's response cache: cache-aside of upstream
// responses in Redis, with an optional bounded in-process tier in front of it,
// explicit invalidation by writes (paths, prefixes, tags) that reaches every
// replica through Redis Pub/Sub, and collapsing of concurrent misses.
//
// Freshness is the point of the design: every key written carries a TTL,
// writes evict after the upstream confirmed them, a fill that raced a write is
// refused (per-path generations), and a sidecar whose invalidation
// subscription broke stops using its in-process tier until it is back.
// Redis trouble never fails a request: the cache steps aside and the request
// goes to the upstream.
package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

const (
	defaultMaxBody   = 1 << 20
	defaultKeyPrefix = "cache:"
	// downFor is how long requests bypass Redis after it failed, so an
	// outage costs one slow request per interval rather than every request.
	downFor = time.Second
	// refreshTimeout bounds a background stale-while-revalidate refresh.
	refreshTimeout = 30 * time.Second
	// genGrace is how long a path's generation outlives its longest entry;
	// it must exceed the longest fill (lookup to store) it protects.
	genGrace = 5 * time.Minute
)

// Cache caches the responses of one CachePolicy.
type Cache struct {
	ks          keyspace
	rules       []rule
	inv         []invRule
	rdb         redisClient
	sharded     bool
	local       *local // nil without an in-process tier
	m           *Metrics
	log         *slog.Logger
	flights     flights
	origin      string
	maxLifetime time.Duration
	downUntil   atomic.Int64
	// timeout bounds each cache operation on the request path: the
	// connection's read timeout, the same bound sessions and rate limits use.
	timeout time.Duration
	// lastSent and lastReceived are the unix-nano times of the latest
	// broadcast published and applied, for measuring eviction delay.
	lastSent, lastReceived atomic.Int64

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup
}

type rule struct {
	name      string
	match     matcher
	ttl       time.Duration
	swr, sie  time.Duration
	vary      []string
	bySubject bool
	maxBody   int64
	honor     bool
	tags      []string
}

type invRule struct {
	name        string
	match       matcher
	requestPath bool
	t           targets
}

type matcher struct {
	prefix  string
	methods []string
	header  *config.HeaderMatch
}

func (m matcher) matches(r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, m.prefix) || !slices.Contains(m.methods, r.Method) {
		return false
	}
	if m.header != nil {
		vs, ok := r.Header[http.CanonicalHeaderKey(m.header.Name)]
		if !ok || (m.header.Value != "" && !slices.Contains(vs, m.header.Value)) {
			return false
		}
	}
	return true
}

func newMatcher(m config.Match, defaults []string) matcher {
	out := matcher{prefix: m.PathPrefix, header: m.Header, methods: defaults}
	if out.prefix == "" {
		out.prefix = "/"
	}
	if len(m.Methods) > 0 {
		out.methods = nil
		for _, x := range m.Methods {
			out.methods = append(out.methods, strings.ToUpper(x))
		}
	}
	return out
}

// New builds the cache of policy p. clients maps connection names to
// clients; p.Redis must name one of them.
func New(p config.CachePolicy, clients map[string]redis.UniversalClient, m *Metrics, log *slog.Logger) (*Cache, error) {
	if m == nil || log == nil {
		return nil, errors.New("cache: metrics and logger are required")
	}
	client, ok := clients[p.Redis]
	if !ok || client == nil {
		return nil, fmt.Errorf("cache policy %s/%s: unknown redis connection %q", p.Namespace, p.Name, p.Redis)
	}
	prefix := p.KeyPrefix
	if prefix == "" {
		prefix = defaultKeyPrefix
	}
	c := &Cache{
		ks:      newKeyspace(prefix, p.Namespace, p.Name),
		rdb:     client,
		timeout: redisconn.RequestTimeout(client),
		m:       m,
		log:     log.With("cachePolicy", p.Namespace+"/"+p.Name),
		quit:    make(chan struct{}),
	}
	_, c.sharded = client.(*redis.ClusterClient)
	var errs []error
	for i, r := range p.Rules {
		if r.TTL.D() <= 0 {
			errs = append(errs, fmt.Errorf("rules[%d] %q: ttl must be positive", i, r.Name))
		}
		if r.StaleWhileRevalidate < 0 || r.StaleIfError < 0 || r.MaxBodyBytes < 0 {
			errs = append(errs, fmt.Errorf("rules[%d] %q: negative staleWhileRevalidate, staleIfError or maxBodyBytes", i, r.Name))
		}
		mt := newMatcher(r.Match, []string{http.MethodGet, http.MethodHead})
		for _, meth := range mt.methods {
			if meth != http.MethodGet && meth != http.MethodHead {
				errs = append(errs, fmt.Errorf("rules[%d] %q: method %s is not cacheable (GET and HEAD only)", i, r.Name, meth))
			}
		}
		maxBody := r.MaxBodyBytes
		if maxBody == 0 {
			maxBody = defaultMaxBody
		}
		c.rules = append(c.rules, rule{
			name: r.Name, match: mt, ttl: r.TTL.D(),
			swr: r.StaleWhileRevalidate.D(), sie: r.StaleIfError.D(),
			vary: headerNames(r.VaryHeaders), bySubject: r.VaryBySubject,
			maxBody: maxBody, honor: r.HonorCacheControl, tags: r.Tags,
		})
		c.maxLifetime = max(c.maxLifetime, r.TTL.D()+max(r.StaleWhileRevalidate.D(), r.StaleIfError.D()))
	}
	for i, r := range p.Invalidate {
		ir := invRule{
			name:        r.Name,
			match:       newMatcher(r.Match, []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}),
			requestPath: r.RequestPath,
			t:           targets{Paths: r.Paths, PathPrefixes: r.PathPrefixes, Tags: r.Tags},
		}
		if !ir.requestPath && ir.t.empty() {
			errs = append(errs, fmt.Errorf("invalidate[%d] %q: names nothing to evict", i, r.Name))
		}
		c.inv = append(c.inv, ir)
	}
	if p.InProcess != nil {
		if p.InProcess.MaxEntries <= 0 || p.InProcess.MaxBytes <= 0 {
			errs = append(errs, errors.New("inProcess: maxEntries and maxBytes must be positive"))
		}
		c.local = newLocal(p.InProcess.MaxEntries, p.InProcess.MaxBytes, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache policy %s/%s: %w", p.Namespace, p.Name, err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	c.origin = hex.EncodeToString(id[:])
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

func (c *Cache) redisUp(now time.Time) bool { return now.UnixNano() >= c.downUntil.Load() }

// redisFailed records a failed Redis operation and makes requests bypass
// Redis for a moment. An operation cut short because its own request ended
// (the client hung up) says nothing about Redis and changes nothing: one
// impatient client must not turn caching off for everyone.
func (c *Cache) redisFailed(ctx context.Context, op string, err error) {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	c.m.redisErrors.WithLabelValues(op).Inc()
	c.downUntil.Store(time.Now().Add(downFor).UnixNano())
	c.log.Warn("cache redis operation failed; bypassing", "op", op, "err", err)
}
