package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the proxy's own collectors. Created once per process by New;
// reloads rebuild the handler graph but never these.
type Metrics struct {
	requests       *prometheus.CounterVec
	byClass        [len(codeClasses)]prometheus.Counter
	duration       prometheus.Histogram
	inFlight       prometheus.Gauge
	upstream       prometheus.Histogram
	upstreamErrors *prometheus.CounterVec
	builds         *prometheus.CounterVec
	labelsOK       prometheus.Gauge
	refused        *prometheus.CounterVec
	clientStalls   [2]prometheus.Counter // by stallWrite, stallBodyRead
}

// Indexes of Metrics.clientStalls.
const (
	stallWrite = iota
	stallBodyRead
)

// NewMetrics registers the proxy metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_sidecar_requests_total",
			Help: "Requests on the data listener by response code class (1xx..5xx), whether answered by the app or by the sidecar.",
		}, []string{"code"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_sidecar_request_duration_seconds",
			Help:    "Time from receiving a request to the handler returning, sidecar work included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_requests_in_flight",
			Help: "Requests on the data listener currently being served.",
		}),
		upstream: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "gatehouse_sidecar_upstream_duration_seconds",
			Help:    "Time until the app's response headers arrived (one round trip to the upstream).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		upstreamErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_sidecar_upstream_errors_total",
			Help: "Requests the app did not answer, by reason (timeout, unavailable, canceled, deadline).",
		}, []string{"reason"}),
		builds: f.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_sidecar_handler_builds_total",
			Help: "Builds of the request handler graph (config or pod label change) by result (success, failure).",
		}, []string{"result"}),
		labelsOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_sidecar_pod_labels_last_read_successful",
			Help: "1 if the pod labels file was last read successfully (or none is configured), 0 otherwise.",
		}),
	}
	m.refused = f.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_sidecar_requests_refused_total",
		Help: "Requests answered 400 by the request normaliser, by reason (encoded-slash, backslash, path-parameter, ...; docs/security.md).",
	}, []string{"reason"})
	stalls := f.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_sidecar_client_stalls_total",
		Help: "Requests aborted because the client stopped taking the response (write) or sending the body (body-read) within the proxy's progress deadlines.",
	}, []string{"operation"})
	m.clientStalls[stallWrite] = stalls.WithLabelValues("write")
	m.clientStalls[stallBodyRead] = stalls.WithLabelValues("body-read")
	// Resolved once: a label lookup per request would hash the label value.
	for i, c := range codeClasses {
		m.byClass[i] = m.requests.WithLabelValues(c)
	}
	return m
}

// refuse counts a request the normaliser refused.
func (m *Metrics) refuse(reason string) { m.refused.WithLabelValues(reason).Inc() }

// codeClasses are precomputed label values, so counting a request does not
// format a string.
var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// codeClass returns the index into codeClasses of an HTTP status code.
func codeClass(code int) int {
	if code < 100 || code > 599 {
		return len(codeClasses) - 1
	}
	return code/100 - 1
}
