package proxy

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"

	"github.com/gatehouse-dev/gatehouse/sidecar/cache"
	"github.com/gatehouse-dev/gatehouse/sidecar/gate"
	"github.com/gatehouse-dev/gatehouse/sidecar/ratelimit"
	"github.com/gatehouse-dev/gatehouse/sidecar/session"
)

// feature is one stage of the request chain built from config. A feature may
// also implement adminRegistrar and io.Closer.
type feature interface {
	Middleware(next http.Handler) http.Handler
}

// redisUser is implemented by features that use Redis: their view of each
// connection they use, for /readyz.
type redisUser interface {
	RedisHealth() []redisconn.Health
}

// adminRegistrar is implemented by features with admin API routes.
type adminRegistrar interface {
	RegisterAdmin(mux *http.ServeMux)
}

// selection is the part of a compiled document that applies to this pod.
type selection struct {
	session    *gate.Section[*session.Policy]
	rateLimits []gate.Section[*ratelimit.Policy]
	cache      *gate.Section[*cache.Policy]
}

// builder builds a feature instance for a selection, or returns nil when no
// policy of its kind applies. It runs on every (re)load.
type builder func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error)

// featureKind creates the feature's metrics once per process and returns
// the builder that reloads call.
type featureKind func(reg prometheus.Registerer) builder

// featureKinds lists the features between identity and the upstream, in
// chain order. Adding a feature is one line here plus its featureKind below.
var featureKinds = []featureKind{
	sessionFeature,
	rateLimitFeature,
	cacheFeature,
}

func sessionFeature(reg prometheus.Registerer) builder {
	m := session.NewMetrics(reg)
	return func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error) {
		if sel.session == nil {
			return nil, nil
		}
		mgr, err := session.New(sel.session.Policy, clients, m, log.With("feature", "session"))
		if err != nil {
			return nil, err
		}
		return mgr, nil
	}
}

func rateLimitFeature(reg prometheus.Registerer) builder {
	m := ratelimit.NewMetrics(reg)
	return func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error) {
		if len(sel.rateLimits) == 0 {
			return nil, nil
		}
		ps := make([]*ratelimit.Policy, len(sel.rateLimits))
		for i, s := range sel.rateLimits {
			ps[i] = s.Policy
		}
		l, err := ratelimit.New(ps, clients, m, log.With("feature", "ratelimit"))
		if err != nil {
			return nil, err
		}
		return l, nil
	}
}

func cacheFeature(reg prometheus.Registerer) builder {
	// Shared outlives every Cache a reload builds: failed invalidations are
	// still retried after the config changed.
	sh := cache.NewShared(reg)
	return func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error) {
		if sel.cache == nil {
			return nil, nil
		}
		c, err := cache.New(sel.cache.Policy, clients, sh, log.With("feature", "cache"))
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// selectPolicies picks the policies whose selector matches labels. The
// operator guarantees at most one session and one cache policy per pod; if
// a hand-written file has several, the first wins and the rest are reported.
func selectPolicies(doc *gate.Document, labels map[string]string, log *slog.Logger) selection {
	var sel selection
	for i := range doc.Sessions {
		s := &doc.Sessions[i]
		if !s.Meta.Selector.Matches(labels) {
			continue
		}
		if sel.session != nil {
			log.Warn("Several session policies select this pod; using the first", "using", sel.session.Meta.Name, "ignored", s.Meta.Name)
			continue
		}
		sel.session = s
	}
	for _, s := range doc.RateLimits {
		if s.Meta.Selector.Matches(labels) {
			sel.rateLimits = append(sel.rateLimits, s)
		}
	}
	for i := range doc.Caches {
		s := &doc.Caches[i]
		if !s.Meta.Selector.Matches(labels) {
			continue
		}
		if sel.cache != nil {
			log.Warn("Several cache policies select this pod; using the first", "using", sel.cache.Meta.Name, "ignored", s.Meta.Name)
			continue
		}
		sel.cache = s
	}
	return sel
}

// redisNames lists the connections the selected policies use, so only those
// get a client and a readiness check.
func (s selection) redisNames() []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if s.session != nil {
		add(s.session.Meta.Redis)
	}
	for _, p := range s.rateLimits {
		add(p.Meta.Redis)
	}
	if s.cache != nil {
		add(s.cache.Meta.Redis)
	}
	return names
}

// policyNames lists the selected policies for /readyz.
func (s selection) policyNames() []string {
	var out []string
	if s.session != nil {
		out = append(out, "session:"+s.session.Meta.Namespace+"/"+s.session.Meta.Name)
	}
	for _, p := range s.rateLimits {
		out = append(out, "rateLimit:"+p.Meta.Namespace+"/"+p.Meta.Name)
	}
	if s.cache != nil {
		out = append(out, "cache:"+s.cache.Meta.Namespace+"/"+s.cache.Meta.Name)
	}
	return out
}
