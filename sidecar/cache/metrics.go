package cache

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cache's collectors. They are created once per process and
// shared by every Cache built from successive configs, so a hot reload never
// registers a collector twice.
type Metrics struct {
	requests      *prometheus.CounterVec
	storedBytes   *prometheus.CounterVec
	evictions     *prometheus.CounterVec
	localEntries  prometheus.Gauge
	localBytes    prometheus.Gauge
	invSent       prometheus.Counter
	invReceived   prometheus.Counter
	upstreamSaved *prometheus.CounterVec
	redisErrors   *prometheus.CounterVec
}

// NewMetrics creates the cache collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_requests_total",
			Help: "Requests matching a cache rule, by rule and result (hit, miss, stale, bypass).",
		}, []string{"rule", "result"}),
		storedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_stored_bytes_total",
			Help: "Encoded bytes of responses written to a tier (redis or inprocess).",
		}, []string{"tier"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_evictions_total",
			Help: "Entries removed from the in-process tier, by reason (capacity, expired, invalidation, subscription-lost), and Redis paths evicted by invalidation (tier=redis).",
		}, []string{"tier", "reason"}),
		localEntries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_inprocess_entries",
			Help: "Entries held by the in-process tier.",
		}),
		localBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_cache_inprocess_bytes",
			Help: "Bytes held by the in-process tier.",
		}),
		invSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cache_invalidations_sent_total",
			Help: "Invalidation broadcasts published by this sidecar.",
		}),
		invReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_cache_invalidations_received_total",
			Help: "Invalidation broadcasts received from other sidecars.",
		}),
		upstreamSaved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_upstream_calls_saved_total",
			Help: "Requests answered without their own upstream call (hits, stale serves, collapsed misses).",
		}, []string{"rule"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_cache_redis_errors_total",
			Help: "Failed Redis operations by operation; requests bypass the cache meanwhile.",
		}, []string{"op"}),
	}
	m.requests = register(reg, m.requests)
	m.storedBytes = register(reg, m.storedBytes)
	m.evictions = register(reg, m.evictions)
	m.localEntries = register(reg, m.localEntries)
	m.localBytes = register(reg, m.localBytes)
	m.invSent = register(reg, m.invSent)
	m.invReceived = register(reg, m.invReceived)
	m.upstreamSaved = register(reg, m.upstreamSaved)
	m.redisErrors = register(reg, m.redisErrors)
	return m
}

// register adopts an already registered identical collector instead of
// panicking, so a second NewMetrics on the same registry is harmless.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}
