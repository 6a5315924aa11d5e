package redisconn

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the access layer's collectors, created once per process and
// shared by every connection (connections are rebuilt when their options
// change; series are not).
type Metrics struct {
	calls        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	breakerOpen  *prometheus.GaugeVec
	reloads      *prometheus.CounterVec
	unreplicated *prometheus.CounterVec
	healthy      *prometheus.GaugeVec
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_redis_calls_total",
			Help: "Redis calls (one group of commands for one hash slot) by connection, feature, operation, node and result: ok, error (Redis answered with an error), unavailable (no answer within the deadline, or the cluster failing over), skipped (the node's breaker was open), expired (the caller's own, earlier deadline ran out, or the deadline passed before the call left the queue: no verdict on the node).",
		}, []string{labelRedis, labelFeature, "op", "node", "result"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_redis_call_duration_seconds",
			Help:    "Time from sending a batch to the last reply, by connection, feature and operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{labelRedis, labelFeature, "op"}),
		breakerOpen: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_redis_node_breaker_open",
			Help: "1 while a Redis node is avoided after failing to answer (one probe per 100ms), 0 once it answered again.",
		}, []string{labelRedis, "node"}),
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_redis_topology_reloads_total",
			Help: "Cluster slot-map reloads requested, by reason (node-unreachable, topology, breaker-open, moved, subscription-lost).",
		}, []string{labelRedis, "reason"}),
		unreplicated: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_redis_unreplicated_writes_total",
			Help: "Durable writes (session create and revoke) that returned before a replica acknowledged them.",
		}, []string{labelRedis, labelFeature}),
		healthy: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_redis_feature_healthy",
			Help: "0 while a feature's latest Redis call failed, 1 otherwise.",
		}, []string{labelRedis, labelFeature}),
	}
}

// Label names.
const (
	labelRedis   = "redis"
	labelFeature = "feature"
)

// connMetrics are the metrics of one connection; nil-safe.
type connMetrics struct {
	m    *Metrics
	conn string
}

func (m *Metrics) forConn(name string) *connMetrics {
	if m == nil {
		return nil
	}
	return &connMetrics{m: m, conn: name}
}

func (c *connMetrics) breakerOpen(node string, open bool) {
	if c == nil {
		return
	}
	v := 0.0
	if open {
		v = 1
	}
	c.m.breakerOpen.WithLabelValues(c.conn, node).Set(v)
}

func (c *connMetrics) reload(reason string) {
	if c == nil {
		return
	}
	c.m.reloads.WithLabelValues(c.conn, reason).Inc()
}

// featureMetrics are the metrics of one feature on one connection; nil-safe.
type featureMetrics struct {
	c       *connMetrics
	feature string
	gauge   prometheus.Gauge
}

func (c *connMetrics) forFeature(feature string) *featureMetrics {
	if c == nil {
		return nil
	}
	return &featureMetrics{c: c, feature: feature, gauge: c.m.healthy.WithLabelValues(c.conn, feature)}
}

func (f *featureMetrics) observe(op, node, result string, took time.Duration) {
	if f == nil {
		return
	}
	f.c.m.calls.WithLabelValues(f.c.conn, f.feature, op, node, result).Inc()
	f.c.m.duration.WithLabelValues(f.c.conn, f.feature, op).Observe(took.Seconds())
}

func (f *featureMetrics) unreplicated() {
	if f == nil {
		return
	}
	f.c.m.unreplicated.WithLabelValues(f.c.conn, f.feature).Inc()
}

func (f *featureMetrics) healthy(ok bool) {
	if f == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	f.gauge.Set(v)
}
