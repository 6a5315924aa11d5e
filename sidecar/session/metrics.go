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
	lookups *prometheus.CounterVec
	created prometheus.Counter
	revoked prometheus.Counter

	// Children resolved once, so the request path skips label hashing.
	byResult map[string]prometheus.Counter
}

// The latency and outcome of every Redis call are the access layer's
// metrics (gatehouse_redis_*, feature="session").

func (m *Metrics) lookup(result string) { m.byResult[result].Inc() }

// NewMetrics registers the session collectors with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_session_lookups_total",
			Help: "Session lookups on the data path by result (valid, missing, invalid, expired, error).",
		}, []string{"result"}),
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
	reg.MustRegister(m.lookups, m.created, m.revoked)
	return m
}
