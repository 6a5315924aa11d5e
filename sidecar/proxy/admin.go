package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
	"github.com/gatehouse-dev/gatehouse/sidecar/reload"
)

// pingTimeout bounds each Redis check of /readyz, so a probe never hangs
// past the kubelet's own timeout.
const pingTimeout = 2 * time.Second

// AdminHandler serves /healthz, /readyz, /metrics and the admin routes of
// the features in force. Bind it to loopback: feature routes (creating a
// session, say) are for the app next to the sidecar, not for the network.
func (p *Proxy) AdminHandler() http.Handler {
	mux := p.statusMux()
	// Not on the status listener, which the whole cluster reaches: whoever
	// calls it makes the pod unready for good.
	mux.HandleFunc("POST "+contract.PreStopPath, p.servePreStop)
	mux.HandleFunc("/", p.serveFeatureAdmin)
	return mux
}

// StatusHandler serves only /healthz, /readyz and /metrics: safe to expose
// on the pod IP for kubelet probes and Prometheus scrapes.
func (p *Proxy) StatusHandler() http.Handler { return p.statusMux() }

func (p *Proxy) statusMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", p.serveReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.gatherer, promhttp.HandlerOpts{}))
	return mux
}

func (p *Proxy) serveFeatureAdmin(w http.ResponseWriter, r *http.Request) {
	g := p.enter()
	if g == nil {
		problem.Write(w, r, &problem.Error{Status: http.StatusServiceUnavailable, Kind: "config-not-loaded", Title: "Sidecar has no valid configuration"})
		return
	}
	defer g.leave()
	if _, pattern := g.admin.Handler(r); pattern == "" {
		problem.Write(w, r, &problem.Error{Status: http.StatusNotFound, Kind: "not-found", Title: "No such admin route",
			Detail: "no feature in force serves " + r.Method + " " + r.URL.Path})
		return
	}
	g.admin.ServeHTTP(w, r)
}

// Readiness is the /readyz body.
type Readiness struct {
	// Ready is true when every check passed; the status code is 200 or 503 accordingly.
	Ready bool `json:"ready"`
	// Checks are the readiness conditions, in a stable order.
	Checks []Check `json:"checks"`
	// Warnings are problems that do not make the pod unready, such as a
	// rejected config reload while the previous config still serves.
	Warnings []string `json:"warnings,omitempty"`
	// Config describes the config in force and the last reload attempt.
	Config reload.Status `json:"config"`
	// Policies lists the policies that select this pod.
	Policies []string `json:"policies"`
	// Redis is each feature's health on each Redis connection it uses,
	// judged from the calls it made: idle, ok, degraded (a call failed
	// within the last 10 s) or unavailable (the last call failed).
	Redis []redisconn.Health `json:"redis"`
	// Labels are the pod labels policies are selected by.
	Labels map[string]string `json:"labels"`
}

// Check is one readiness condition.
type Check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Advisory checks are shown but do not make the pod unready: a Redis
	// connection whose features all admit traffic while it is down (the
	// cache, rate limits that fail open).
	Advisory bool `json:"advisory,omitempty"`
}

// readiness evaluates every check. A config reload that fails does not make
// the pod unready: the previous config still serves correctly, and failing
// readiness would take every replica out of its Service at once on a bad
// ConfigMap push. It shows as a warning, in Config.LastError and in the
// gatehouse_sidecar_config_last_reload_successful metric instead.
func (p *Proxy) readiness(ctx context.Context) Readiness {
	st := p.watcher.Status()
	p.mu.Lock()
	rd := Readiness{Config: st, Labels: p.labels, Policies: []string{}}
	labelsErr := p.labelsErr
	p.mu.Unlock()

	drain := Check{Name: "draining", OK: !p.draining.Load()}
	if !drain.OK {
		drain.Error = "shutting down: finishing in-flight requests"
	}
	term := Check{Name: "terminating", OK: !p.term.on.Load()}
	if !term.OK {
		term.Error = "the pod is terminating (preStop hook): still serving, moving clients off their connections (GOAWAY, Connection: close)"
	}
	rd.Checks = append(rd.Checks, drain, term)
	cfg := Check{Name: "config", OK: st.Loaded}
	if !st.Loaded {
		cfg.Error = "no valid config loaded yet"
		if st.LastError != "" {
			cfg.Error += ": " + st.LastError
		}
	}
	rd.Checks = append(rd.Checks, cfg)
	if st.Loaded && st.LastError != "" {
		rd.Warnings = append(rd.Warnings, "config reload failed, previous config still in force: "+st.LastError)
	}
	if labelsErr != "" {
		rd.Warnings = append(rd.Warnings, "pod labels reload failed, previous labels still in force: "+labelsErr)
	}

	rd.Redis = []redisconn.Health{}
	if g := p.enter(); g != nil {
		defer g.leave()
		rd.Policies = append(rd.Policies, g.policies...)
		// A connection makes the pod unready only if a feature on it turns
		// requests away while Redis is down: taking the pod out of its
		// Service helps those requests, and would only hurt the others.
		refuses := map[string]bool{}
		for _, f := range g.features {
			if u, ok := f.(redisUser); ok {
				for _, h := range u.RedisHealth() {
					rd.Redis = append(rd.Redis, h)
					refuses[h.Redis] = refuses[h.Redis] || h.RefusesTraffic
				}
			}
		}
		names := make([]string, 0, len(g.conns))
		for name := range g.conns {
			names = append(names, name)
		}
		slices.Sort(names)
		checks := make([]Check, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, pingTimeout)
				defer cancel()
				checks[i] = Check{Name: "redis/" + name, OK: true, Advisory: !refuses[name]}
				if err := g.conns[name].rc.Ping(ctx); err != nil {
					checks[i].OK, checks[i].Error = false, err.Error()
				}
			})
		}
		wg.Wait()
		rd.Checks = append(rd.Checks, checks...)
	}
	rd.Ready = true
	for _, c := range rd.Checks {
		rd.Ready = rd.Ready && (c.OK || c.Advisory)
	}
	return rd
}

func (p *Proxy) serveReadyz(w http.ResponseWriter, r *http.Request) {
	rd := p.readiness(r.Context())
	body, err := json.MarshalIndent(rd, "", "  ")
	if err != nil {
		problem.Write(w, r, &problem.Error{Status: http.StatusInternalServerError, Kind: "internal", Title: "Encoding readiness failed"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rd.Ready {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(append(body, '\n'))
}
