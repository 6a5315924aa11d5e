package cache

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// upstream is a test application that counts its calls. Its handler is
// swappable so a test can change what the app answers.
type upstream struct {
	calls   atomic.Int64
	mu      sync.Mutex
	handler http.HandlerFunc
	srv     *httptest.Server
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{handler: h}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		u.mu.Lock()
		h := u.handler
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) set(h http.HandlerFunc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.handler = h
}

// text answers body with extra headers. Unless they name Cache-Control,
// the answer says it is fresh for an hour, as an origin that wants its
// responses cached does.
func text(body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Add(headers[i], headers[i+1])
		}
		if _, ok := w.Header()["Cache-Control"]; !ok {
			w.Header().Set("Cache-Control", "max-age=3600")
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}
}

func standaloneClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func clusterClient(t *testing.T, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func policy(rules []config.CacheRule, inv []config.InvalidateRule) config.CachePolicy {
	return config.CachePolicy{
		PolicyMeta: config.PolicyMeta{Namespace: "shop", Name: "products", Redis: "main"},
		Rules:      rules, Invalidate: inv,
	}
}

func cacheRule(name string, ttl time.Duration) config.CacheRule {
	return config.CacheRule{Name: name, TTL: config.Duration(ttl), HonorCacheControl: true}
}

// connTo opens the access layer's connection to the deployment client
// talks to; tests keep client to look at Redis behind the cache's back.
func connTo(t testing.TB, client redis.UniversalClient) *redisconn.Conn {
	t.Helper()
	o := redisconn.Options{Name: "main", DialTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	switch c := client.(type) {
	case *redis.Client:
		o.Mode, o.Addrs = redisconn.Standalone, []string{c.Options().Addr}
	case *redis.ClusterClient:
		// Generous: the cluster tests share two busy cores.
		o.Mode, o.Addrs, o.ReadTimeout, o.WriteTimeout = redisconn.Cluster, c.Options().Addrs, time.Second, time.Second
	}
	rc, err := redisconn.New(o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// sidecar is one Cache in front of an upstream, reachable over HTTP.
type sidecar struct {
	c     *Cache
	m     *Metrics
	srv   *httptest.Server
	admin *httptest.Server
}

func newSidecar(t *testing.T, p config.CachePolicy, client redis.UniversalClient, up *upstream) *sidecar {
	t.Helper()
	sh := NewShared(prometheus.NewRegistry())
	m := sh.Metrics()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(compiled(t, p), map[string]*redisconn.Conn{"main": connTo(t, client)}, sh, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	target, _ := url.Parse(up.srv.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	// The session middleware's stand-in: X-Test-Subject becomes the subject.
	withSubject := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if s := r.Header.Get("X-Test-Subject"); s != "" {
				r = r.WithContext(identity.WithSubject(r.Context(), s))
			}
			next.ServeHTTP(w, r)
		})
	}
	s := &sidecar{c: c, m: m, srv: httptest.NewServer(withSubject(c.Middleware(proxy)))}
	t.Cleanup(s.srv.Close)
	mux := http.NewServeMux()
	c.RegisterAdmin(mux)
	s.admin = httptest.NewServer(mux)
	t.Cleanup(s.admin.Close)
	return s
}

type resp struct {
	status      int
	body        string
	xcache      string
	cacheStatus string
	header      http.Header
}

func (s *sidecar) do(t *testing.T, method, path string, headers ...string) resp {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every replica of an app is addressed by the same Service name.
	req.Host = "shop.test"
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	return resp{status: res.StatusCode, body: string(b), xcache: res.Header.Get("X-Cache"),
		cacheStatus: strings.Join(res.Header.Values("Cache-Status"), ", "), header: res.Header}
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (s *sidecar) get(t *testing.T, path string, headers ...string) resp {
	t.Helper()
	return s.do(t, http.MethodGet, path, headers...)
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// localReady waits until the sidecar's in-process tier is subscribed.
func (s *sidecar) localReady(t *testing.T) {
	t.Helper()
	eventually(t, "in-process tier enabled", func() bool {
		on, _ := s.c.local.snapshot()
		return on
	})
}

func (s *sidecar) localHolds(path string) bool {
	s.c.local.mu.Lock()
	defer s.c.local.mu.Unlock()
	return len(s.c.local.byPath[path]) > 0
}

// keysWithoutTTL scans a node's whole keyspace and returns keys lacking a TTL.
func keysWithoutTTL(t *testing.T, ctx context.Context, c *redis.Client) (all int, bad []string) {
	t.Helper()
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		all++
		ttl, err := c.PTTL(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatalf("PTTL %s: %v", iter.Val(), err)
		}
		if ttl <= 0 {
			bad = append(bad, iter.Val())
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return all, bad
}

func startStandalone(t *testing.T) *redistest.Server { return redistest.StartStandalone(t) }

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
