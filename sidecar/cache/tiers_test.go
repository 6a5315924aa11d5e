package cache

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// tierSidecar is one cache under test, in front of its own app.
type tierSidecar struct {
	*sidecar
	up *upstream
}

// bothTiers runs test against the Redis tier alone and against the
// in-process tier in front of Redis, each through the real middleware and a
// real reverse proxy to an app answering h, on a real redis-server.
func bothTiers(t *testing.T, rules []config.CacheRule, h http.HandlerFunc, test func(t *testing.T, s tierSidecar)) {
	t.Helper()
	srv := startStandalone(t)
	for _, tier := range []struct {
		name      string
		inProcess bool
	}{{"redis", false}, {"inprocess+redis", true}} {
		t.Run(tier.name, func(t *testing.T) {
			p := policy(rules, nil)
			p.Name = strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
			if tier.inProcess {
				p.InProcess = &config.InProcessTier{MaxEntries: 1000, MaxBytes: 64 << 20}
			}
			up := newUpstream(t, h)
			s := newSidecar(t, p, standaloneClient(t, srv.Addr()), up)
			if tier.inProcess {
				s.localReady(t)
			}
			test(t, tierSidecar{s, up})
		})
	}
}

// rfcRule is a Standard-mode catch-all rule capping freshness at an hour.
func rfcRule() config.CacheRule {
	return config.CacheRule{Name: "all", TTL: config.Duration(time.Hour)}
}

// answer is an app handler with fixed status, headers and body.
func answer(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Add(headers[i], headers[i+1])
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

// ago formats the HTTP-date d before now, for Date, Expires, Last-Modified.
func ago(d time.Duration) string { return time.Now().Add(-d).UTC().Format(http.TimeFormat) }

// seen records what the app received, for assertions on the cache's
// requests to it.
type seen struct {
	mu   sync.Mutex
	reqs []http.Header
}

func (s *seen) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Header.Clone())
		s.mu.Unlock()
		h(w, r)
	}
}

func (s *seen) last() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil
	}
	return s.reqs[len(s.reqs)-1]
}

// wantStored fetches path twice and checks the second is a hit.
func (s tierSidecar) wantStored(t *testing.T, path string, headers ...string) resp {
	t.Helper()
	first := s.get(t, path, headers...)
	if first.xcache != "MISS" || !strings.Contains(first.cacheStatus, "stored") {
		t.Fatalf("first GET %s: %s %q, want a stored MISS", path, first.xcache, first.cacheStatus)
	}
	before := s.up.calls.Load()
	r := s.get(t, path, headers...)
	if r.xcache != "HIT" || s.up.calls.Load() != before {
		t.Fatalf("second GET %s: %s %q (app called %d times), want a HIT", path, r.xcache, r.cacheStatus, s.up.calls.Load()-before)
	}
	return r
}

// wantNotStored fetches path twice and checks both went to the app,
// nothing stored, the first naming reason.
func (s tierSidecar) wantNotStored(t *testing.T, path string, reason detail, headers ...string) {
	t.Helper()
	before := s.up.calls.Load()
	for i := range 2 {
		r := s.get(t, path, headers...)
		if r.xcache == "HIT" || strings.Contains(r.cacheStatus, "stored") {
			t.Fatalf("GET %d %s: %s %q, want it not stored", i, path, r.xcache, r.cacheStatus)
		}
		if reason != "" && !strings.Contains(r.cacheStatus, "detail="+string(reason)) {
			t.Errorf("GET %d %s: Cache-Status %q, want detail=%s", i, path, r.cacheStatus, reason)
		}
	}
	if got := s.up.calls.Load() - before; got != 2 {
		t.Errorf("app called %d times, want 2 (nothing stored)", got)
	}
}
