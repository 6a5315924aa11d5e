package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Decision results recorded per rule in gatehouse_ratelimit_decisions_total.
const (
	resultAllowed      = "allowed"
	resultDenied       = "denied"
	resultShadowDenied = "shadow_denied"
	// resultErrorOpen: Redis failed, the rule fails open and the in-process
	// fallback limiter admitted the request.
	resultErrorOpen = "error_open"
	// resultFallbackDenied: Redis failed, the rule fails open, but the
	// in-process fallback limiter denied the request.
	resultFallbackDenied = "fallback_denied"
	// resultErrorClosed: Redis failed and the rule fails closed (503).
	resultErrorClosed = "error_closed"
)

// Metrics are the rate limiter's collectors. They are created once per
// process and shared by every Limiter built on config reload, so reloading
// never registers a collector twice.
type Metrics struct {
	decisions *prometheus.CounterVec
	nearLimit *prometheus.CounterVec
	latency   prometheus.Histogram
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, useful in tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_decisions_total",
			Help: "Rate-limit decisions per rule. result is allowed, denied, shadow_denied (a Shadow rule would have denied), " +
				"error_open (Redis failed, admitted through the local fallback), fallback_denied (Redis failed, local fallback denied) " +
				"or error_closed (Redis failed, answered 503).",
		}, []string{"policy", "rule", "result"}),
		nearLimit: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_ratelimit_near_limit_total",
			Help: "Admitted requests that left less than 10% of a rule's limit.",
		}, []string{"policy", "rule"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_ratelimit_decision_duration_seconds",
			Help:    "Time to decide a request against all its matching rules, including the Redis round trip.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
	}
}
