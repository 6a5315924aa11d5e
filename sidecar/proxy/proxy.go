// Package proxy is the sidecar's runtime: it assembles the request chain
// (identity → session → rate limit → cache → app), reverse-proxies to the
// app over a pooled transport, serves the admin API (health, readiness,
// metrics, feature routes), hot-reloads config and pod labels, and drains
// gracefully on shutdown.
//
// Every (re)load builds a complete, immutable handler graph — feature
// instances, their admin routes and the Redis clients they use — and swaps
// it in atomically only if every part built. A request runs entirely on the
// graph it started on; a replaced graph is closed once its last request
// finishes.
package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/gate"
	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
	"github.com/gatehouse-dev/gatehouse/sidecar/reload"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// Options configures a Proxy.
type Options struct {
	// Upstream is the app's base URL, e.g. http://127.0.0.1:8081.
	Upstream *url.URL
	// UpstreamProtocol is how to speak to the app: contract.UpstreamHTTP1
	// (also when empty) or contract.UpstreamH2C.
	UpstreamProtocol string
	// ConfigPath is the sidecar config file (config.json of the ConfigMap).
	ConfigPath string
	// LabelsPath is the downward-API labels file. Empty means the pod has no
	// labels, so only policies with an empty selector apply.
	LabelsPath string
	// Registerer and Gatherer hold every metric of the process; the proxy
	// registers its own and the features' collectors once, in New.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger receives structured logs.
	Logger *slog.Logger
	// DrainTimeout bounds how long in-flight requests may finish on shutdown.
	DrainTimeout time.Duration
	// UpstreamHeaderTimeout bounds waiting for the app's response headers;
	// zero waits as long as the client does.
	UpstreamHeaderTimeout time.Duration
	// Paths are the pod's exceptions to the request path rules
	// (request.Options); the zero value refuses every ambiguous spelling.
	Paths request.Options
	// Proxy holds the proxy settings of the command line: every field it
	// sets overrides the document's proxy section (config.Proxy.Overlay).
	// The operator renders no proxy section, so on an injected pod these
	// are the settings (docs/injection.md).
	Proxy config.Proxy
}

// Proxy is the sidecar. Serve the data path with it as an http.Handler and
// the admin API with AdminHandler, or let Run do both.
type Proxy struct {
	log          *slog.Logger
	m            *Metrics
	redisM       *redisconn.Metrics
	gatherer     prometheus.Gatherer
	transport    *http.Transport
	upstream     http.Handler
	watcher      *reload.Watcher
	labelsPath   string
	drainTimeout time.Duration
	paths        request.Options
	overrides    config.Proxy
	builders     []builder

	cur      atomic.Pointer[graph]
	draining atomic.Bool
	term     termination

	mu        sync.Mutex // serialises rebuilds; guards the fields below
	cfg       *gate.Document
	labels    map[string]string
	labelsErr string
	conns     map[string]*conn
	gen       uint64
}

// New returns a proxy. It registers metrics and reads the labels file, but
// loads no config yet: Run does, so that a bad file at start-up leaves the
// sidecar running (answering 503 and unready) until it is fixed.
func New(o Options) (*Proxy, error) {
	if o.Upstream == nil || o.Upstream.Host == "" {
		return nil, errors.New("new proxy: upstream URL with a host is required")
	}
	if o.ConfigPath == "" {
		return nil, errors.New("new proxy: config path is required")
	}
	if o.UpstreamProtocol != "" && !contract.ValidUpstreamProtocol(o.UpstreamProtocol) {
		return nil, fmt.Errorf("new proxy: upstream protocol %q: want %q or %q", o.UpstreamProtocol, contract.UpstreamHTTP1, contract.UpstreamH2C)
	}
	if o.UpstreamProtocol == contract.UpstreamH2C && o.Upstream.Scheme != "http" {
		// h2c is HTTP/2 without TLS; over TLS HTTP/2 is negotiated by ALPN.
		return nil, fmt.Errorf("new proxy: upstream protocol %q needs an http:// upstream, not %q", contract.UpstreamH2C, o.Upstream.Scheme)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil || o.Gatherer == nil {
		reg := prometheus.NewRegistry()
		o.Registerer, o.Gatherer = reg, reg
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	// A bad setting would refuse every document; say so at start instead.
	if _, err := gate.CompileProxy(o.Proxy); err != nil {
		return nil, fmt.Errorf("new proxy: proxy settings: %w", err)
	}
	p := &Proxy{
		log:          o.Logger,
		m:            NewMetrics(o.Registerer),
		redisM:       redisconn.NewMetrics(o.Registerer),
		gatherer:     o.Gatherer,
		transport:    newTransport(o.UpstreamHeaderTimeout, o.UpstreamProtocol == contract.UpstreamH2C),
		labelsPath:   o.LabelsPath,
		drainTimeout: o.DrainTimeout,
		paths:        o.Paths,
		overrides:    o.Proxy,
		labels:       map[string]string{},
		conns:        map[string]*conn{},
	}
	p.upstream = endExpiredGRPC(newUpstream(o.Upstream, p.transport, p.m, p.log))
	for _, k := range featureKinds {
		p.builders = append(p.builders, k(o.Registerer))
	}
	p.watcher = reload.NewWatcher(o.ConfigPath, p.apply, reload.NewMetrics(o.Registerer), p.log)
	p.m.labelsOK.Set(1)
	if p.labelsPath != "" {
		labels, err := readLabels(p.labelsPath)
		if err != nil {
			return nil, fmt.Errorf("new proxy: %w", err)
		}
		p.labels = labels
	}
	return p, nil
}

// ServeHTTP serves the data path on the current handler graph.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p.m.inFlight.Inc()
	rec := &recorder{ResponseWriter: w, m: p.m, h2: r.ProtoMajor == 2}
	defer func() {
		p.m.inFlight.Dec()
		p.m.byClass[codeClass(rec.status())].Inc()
		p.m.duration.Observe(time.Since(start).Seconds())
	}()
	g := p.enter()
	if g == nil {
		rec.writeTimeout = time.Duration(config.DefaultClientWriteTimeout)
		// Never pass traffic unprotected because the config is missing: the
		// policies it would have enforced may be the app's only auth.
		problem.Write(rec, r, &problem.Error{Status: http.StatusServiceUnavailable, Kind: "config-not-loaded",
			Title: "Sidecar has no valid configuration", Header: http.Header{"Retry-After": {"1"}}})
		return
	}
	defer g.leave()
	rec.writeTimeout = g.timeouts.write
	bodyRead := g.timeouts.bodyRead
	if grpcwire.IsGRPC(r) {
		// A gRPC stream's client may rightly send nothing for as long as
		// the call lasts (a watch, a bidirectional stream waiting on the
		// server): silence is not a stall. The call is bounded by its own
		// grpc-timeout and the connection's liveness instead (serve.go).
		bodyRead = 0
	}
	r, body := withBodyDeadline(w, r, bodyRead, p.m)
	if body != nil {
		defer body.finish()
	}
	g.handler.ServeHTTP(rec, r)
}

// recorder remembers the status code and bounds every write to the client
// (deadline.go). It exposes the underlying writer via Unwrap, so
// http.ResponseController (used by the reverse proxy for flushing) still
// reaches Flush; Hijack it implements itself.
type recorder struct {
	http.ResponseWriter
	m            *Metrics
	code         int
	writeTimeout time.Duration
	stalled      bool
	// h2 marks an HTTP/2 stream, whose write deadline must be cleared
	// after each write (disarm).
	h2 bool
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
	if code < 200 {
		// Informational responses are written at once.
		armWrite(r.ResponseWriter, r.writeTimeout)
		r.ResponseWriter.WriteHeader(code)
		r.disarm()
		return
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.write(b)
}

func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	armWrite(r.ResponseWriter, r.writeTimeout)
	err := http.NewResponseController(r.ResponseWriter).Flush()
	r.disarm()
	if err != nil {
		r.writeFailed(err)
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}

// conn is a Redis connection shared by every graph that uses it; it is
// closed when the last of them is.
type conn struct {
	spec redisconn.Options
	rc   *redisconn.Conn
	refs atomic.Int64
}

func (c *conn) release(log *slog.Logger) {
	if c.refs.Add(-1) == 0 {
		if err := c.rc.Close(); err != nil {
			log.Warn("Closing Redis client", "redis", c.spec.Name, "error", err)
		}
	}
}

// graph is one immutable build of the request path.
type graph struct {
	gen      uint64
	handler  http.Handler
	admin    *http.ServeMux
	closers  []io.Closer
	features []feature
	conns    map[string]*conn
	policies []string
	timeouts timeouts
	log      *slog.Logger

	inflight  atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

// enter returns the current graph with a reference held, or nil if there is
// none. Taking the reference and then re-checking retired closes the race
// with a concurrent swap: either retire sees our reference, or we see it
// retired and retry on the new graph.
func (p *Proxy) enter() *graph {
	for {
		g := p.cur.Load()
		if g == nil {
			return nil
		}
		g.inflight.Add(1)
		if !g.retired.Load() {
			return g
		}
		g.leave()
	}
}

func (g *graph) leave() {
	if g.inflight.Add(-1) == 0 && g.retired.Load() {
		g.close()
	}
}

// retire marks a graph replaced; it closes now or when its last request leaves.
func (g *graph) retire() {
	g.retired.Store(true)
	if g.inflight.Load() == 0 {
		g.close()
	}
}

func (g *graph) close() {
	g.closeOnce.Do(func() {
		for _, c := range g.closers {
			if err := c.Close(); err != nil {
				g.log.Warn("Closing a replaced feature", "generation", g.gen, "error", err)
			}
		}
		for _, c := range g.conns {
			c.release(g.log)
		}
	})
}

// apply is the config watcher's callback: it compiles the document, with
// the command line's proxy settings over its own, through the one gate
// the operator also runs, and builds the pod's graph from what compiled.
func (p *Proxy) apply(c *config.Config) error {
	withFlags := *c
	withFlags.Proxy = c.Proxy.Overlay(p.overrides)
	doc, err := gate.Compile(&withFlags)
	if err != nil {
		p.m.builds.WithLabelValues("failure").Inc()
		return fmt.Errorf("compile config: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.rebuild(doc, p.labels); err != nil {
		return err
	}
	p.cfg = doc
	return nil
}

// setLabels rebuilds the graph for new pod labels, with the config in force.
func (p *Proxy) setLabels(labels map[string]string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if maps.Equal(labels, p.labels) {
		return nil
	}
	if p.cfg != nil {
		if err := p.rebuild(p.cfg, labels); err != nil {
			return err
		}
	}
	p.log.Info("Pod labels changed", "labels", labels)
	p.labels = labels
	return nil
}

// rebuild builds a graph for c and labels and swaps it in; on any error the
// current graph stays. Callers hold p.mu.
func (p *Proxy) rebuild(doc *gate.Document, labels map[string]string) (err error) {
	g, err := p.build(doc, labels)
	if err != nil {
		p.m.builds.WithLabelValues("failure").Inc()
		return err
	}
	p.m.builds.WithLabelValues("success").Inc()
	p.conns = g.conns
	if old := p.cur.Swap(g); old != nil {
		old.retire()
	}
	p.log.Info("Handler graph in force", "generation", g.gen, "policies", g.policies)
	return nil
}

// build builds the graph of doc for a pod with labels. doc passed the
// gate, so nothing here validates: what can fail is what only the pod can
// tell, such as a Redis password variable that is not set.
func (p *Proxy) build(doc *gate.Document, labels map[string]string) (_ *graph, err error) {
	p.gen++
	g := &graph{gen: p.gen, conns: map[string]*conn{}, log: p.log, admin: http.NewServeMux(),
		timeouts: timeouts{write: doc.Proxy.WriteTimeout, bodyRead: doc.Proxy.BodyReadTimeout}}
	defer func() {
		if err != nil {
			g.close() // releases the Redis clients and features built so far
		}
	}()

	sel := selectPolicies(doc, labels, p.log)
	g.policies = sel.policyNames()
	clients := map[string]*redisconn.Conn{}
	for _, name := range sel.redisNames() {
		spec := doc.Redis[name]
		cn := p.conns[name]
		if cn == nil || !reflect.DeepEqual(cn.spec, spec) {
			rc, err := redisconn.New(spec, p.redisM, p.log)
			if err != nil {
				return nil, err
			}
			cn = &conn{spec: spec, rc: rc}
		}
		cn.refs.Add(1)
		g.conns[name] = cn
		clients[name] = cn.rc
	}

	var features []feature
	for _, b := range p.builders {
		f, err := b(sel, clients, p.log)
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue
		}
		features = append(features, f)
		if c, ok := f.(io.Closer); ok {
			g.closers = append(g.closers, c)
		}
		if a, ok := f.(adminRegistrar); ok {
			a.RegisterAdmin(g.admin)
		}
	}
	g.features = features
	g.handler = p.chain(doc.Proxy.TrustedProxies, features)
	return g, nil
}

// chain assembles the request path, in its one place: the normaliser first,
// so every feature and the app see one canonical request with no header
// named in Connection and no forged X-Gatehouse-* header; then identity, so
// every feature sees the real client IP; then a gRPC call's deadline, so
// that it bounds every feature's wait too; then the request's Redis batch,
// planned by every feature that uses Redis; then the features in
// featureKinds order; then the app.
func (p *Proxy) chain(trusted []netip.Prefix, features []feature) http.Handler {
	h := p.upstream
	var planners []planner
	for _, feature := range slices.Backward(features) {
		h = feature.Middleware(h)
		if pl, ok := feature.(planner); ok {
			planners = append([]planner{pl}, planners...)
		}
	}
	if len(planners) > 0 {
		// Before the first feature decides, every feature queues its
		// Redis calls into the request's batch (batch.go).
		h = planned(planners, h)
	}
	return request.Normalize(identify(trusted, withGRPCDeadline(h)), p.paths, p.m.refuse)
}

func readLabels(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pod labels: %w", err)
	}
	labels, err := parseLabels(data)
	if err != nil {
		return nil, fmt.Errorf("pod labels %s: %w", path, err)
	}
	return labels, nil
}

// reloadLabels is the labels file watcher's callback. A bad file keeps the
// labels in force.
func (p *Proxy) reloadLabels() {
	labels, err := readLabels(p.labelsPath)
	if err == nil {
		err = p.setLabels(labels)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.labelsErr = err.Error()
		p.m.labelsOK.Set(0)
		p.log.Error("Pod labels rejected; the previous labels stay in force", "error", err)
		return
	}
	p.labelsErr = ""
	p.m.labelsOK.Set(1)
}

// Close retires the current graph, closing its features and Redis clients
// once in-flight requests finish, and idle upstream connections.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.cur.Swap(nil); g != nil {
		g.retire()
	}
	p.conns = map[string]*conn{}
	p.transport.CloseIdleConnections()
	return nil
}
