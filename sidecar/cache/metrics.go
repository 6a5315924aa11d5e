package cache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the cache's collectors, part of Shared: created once per
// process and shared by every Cache built from successive configs, so a hot
// reload never registers a collector twice. Redis calls are counted by the
// access layer (gatehouse_redis_*, feature="cache").
type Metrics struct {
	requests      *prometheus.CounterVec
	storedBytes   *prometheus.CounterVec
	evictions     *prometheus.CounterVec
	localEntries  prometheus.Gauge
	localBytes    prometheus.Gauge
	invSent       prometheus.Counter
	invReceived   prometheus.Counter
	upstreamSaved *prometheus.CounterVec
	pending       prometheus.Gauge
	invRetries    *prometheus.CounterVec
}

// NewMetrics creates the cache collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_requests_total",
			Help: "Requests matching a cache rule, by rule and result (hit, miss, stale, bypass).",
		}, []string{"rule", "result"}),
		storedBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_stored_bytes_total",
			Help: "Encoded bytes of responses written to a tier (redis or inprocess).",
		}, []string{"tier"}),
		evictions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_evictions_total",
			Help: "Entries removed from the in-process tier, by reason (capacity, expired, invalidation, subscription-lost), and Redis paths evicted by invalidation (tier=redis).",
		}, []string{"tier", "reason"}),
		localEntries: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_inprocess_entries",
			Help: "Entries held by the in-process tier.",
		}),
		localBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_inprocess_bytes",
			Help: "Bytes held by the in-process tier.",
		}),
		invSent: f.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cache_invalidations_sent_total",
			Help: "Invalidation broadcasts published by this sidecar.",
		}),
		invReceived: f.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cache_invalidations_received_total",
			Help: "Invalidation broadcasts received from other sidecars.",
		}),
		upstreamSaved: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_upstream_calls_saved_total",
			Help: "Requests answered without their own upstream call (hits, stale serves, collapsed misses).",
		}, []string{"rule"}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_invalidations_pending",
			Help: "Invalidations Redis has not confirmed yet (this sidecar's, being retried, and other replicas' announced as pending); the paths they name bypass the cache meanwhile.",
		}),
		invRetries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_invalidation_retries_total",
			Help: "Background attempts at failed invalidations by result: ok (evicted and broadcast), failed (tried again in 100ms), expired (given up: all it would evict has expired).",
		}, []string{"result"}),
	}
}

// result is the result label of gatehouse_cache_requests_total.
type result int

const (
	resultHit result = iota
	resultMiss
	resultStale
	resultBypass
	results
)

var resultNames = [results]string{"hit", "miss", "stale", "bypass"}

// ruleCounters are one rule's request counters, resolved once per Cache:
// looking a counter up by its labels hashes them on every request.
type ruleCounters struct {
	requests [results]prometheus.Counter
	saved    prometheus.Counter
}

// ruleCounters returns rl's counters; rl is one of c.rules.
func (c *Cache) ruleCounters(rl *rule) *ruleCounters {
	c.countersOnce.Do(func() {
		c.counters = make([]ruleCounters, len(c.rules))
		for i := range c.rules {
			rc := &c.counters[i]
			for res, name := range resultNames {
				rc.requests[res] = c.m.requests.WithLabelValues(c.rules[i].name, name)
			}
			rc.saved = c.m.upstreamSaved.WithLabelValues(c.rules[i].name)
		}
	})
	for i := range c.rules {
		if &c.rules[i] == rl {
			return &c.counters[i]
		}
	}
	// Not one of c.rules (never, but a counter by its labels is right).
	rc := &ruleCounters{saved: c.m.upstreamSaved.WithLabelValues(rl.name)}
	for res, name := range resultNames {
		rc.requests[res] = c.m.requests.WithLabelValues(rl.name, name)
	}
	return rc
}
