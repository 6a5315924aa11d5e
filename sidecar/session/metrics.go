package session

import "github.com/prometheus/client_golang/prometheus"

// Lookup results, the values of the "result" label.
const (
	resultValid   = "valid"
	resultMissing = "missing"
	resultInvalid = "invalid"
	resultExpired = "expired"
	resultError   = "error"
)

// Metrics are the session collectors. They are created once per process and
// shared by every Manager a config reload builds, so reloads never register
// a collector twice.
type Metrics struct {
	lookups       *prometheus.CounterVec
	redisDuration *prometheus.HistogramVec
	created       prometheus.Counter
	revoked       prometheus.Counter

	// Children resolved once, so the request path skips label hashing.
	byResult map[string]prometheus.Counter
	byOp     map[string]prometheus.Observer
}

// Redis operations, the values of the "op" label.
var ops = []string{"lookup", "extend", "inspect", "create", "index", "revoke", "revoke_all"}

func (m *Metrics) lookup(result string) { m.byResult[result].Inc() }

// NewMetrics registers the session collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_session_lookups_total",
			Help: "Session lookups on the data path by result (valid, missing, invalid, expired, error).",
		}, []string{"result"}),
		redisDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_session_redis_duration_seconds",
			Help:    "Latency of session Redis round trips by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_session_created_total",
			Help: "Sessions created through the admin API.",
		}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_session_revoked_total",
			Help: "Sessions revoked through the admin API (one by one or all of a subject).",
		}),
	}
	// Pre-create every child so dashboards see zeros instead of gaps.
	m.byResult = map[string]prometheus.Counter{}
	for _, r := range []string{resultValid, resultMissing, resultInvalid, resultExpired, resultError} {
		m.byResult[r] = m.lookups.WithLabelValues(r)
	}
	m.byOp = map[string]prometheus.Observer{}
	for _, op := range ops {
		m.byOp[op] = m.redisDuration.WithLabelValues(op)
	}
	reg.MustRegister(m.lookups, m.redisDuration, m.created, m.revoked)
	return m
}
