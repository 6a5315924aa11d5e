package cache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// slow holds every upstream answer back a little, so concurrent misses
// really overlap (the assertion is on call counts, not on time).
func slow(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		text(body)(w, r)
	}
}

func concurrentGets(t *testing.T, n int, sidecars ...*sidecar) []resp {
	t.Helper()
	out := make([]resp, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = sidecars[i%len(sidecars)].get(t, "/products/cold")
		})
	}
	close(start)
	wg.Wait()
	return out
}

func TestConcurrentMissesOneUpstreamCall(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, slow("cold"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("products", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	for i, r := range concurrentGets(t, 100, s) {
		if r.status != 200 || r.body != "cold" {
			t.Fatalf("response %d: %d %q", i, r.status, r.body)
		}
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls = %d, want exactly 1 for 100 concurrent misses", got)
	}
	if saved := testutil.ToFloat64(s.m.upstreamSaved.WithLabelValues("products")); saved != 99 {
		t.Errorf("upstream calls saved = %v, want 99", saved)
	}
}

func TestConcurrentMissesTwoSidecars(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, slow("cold"))
	p := policy([]config.CacheRule{cacheRule("products", time.Minute)}, nil)
	a := newSidecar(t, p, standaloneClient(t, srv.Addr()), up)
	b := newSidecar(t, p, standaloneClient(t, srv.Addr()), up)
	for i, r := range concurrentGets(t, 100, a, b) {
		if r.status != 200 || r.body != "cold" {
			t.Fatalf("response %d: %d %q", i, r.status, r.body)
		}
	}
	if got := up.calls.Load(); got < 1 || got > 2 {
		t.Errorf("upstream calls = %d, want at most 2 (one per sidecar)", got)
	}
}

func TestWriteEvictsOtherSidecarsInProcessTier(t *testing.T) {
	cluster := redistest.StartCluster(t)
	up := newUpstream(t, nil)
	version := "v1"
	var mu sync.Mutex
	up.set(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut {
			version = "v2"
			w.WriteHeader(http.StatusNoContent)
			return
		}
		text("product 42 "+version)(w, r)
	})
	p := policy([]config.CacheRule{cacheRule("products", time.Minute)},
		[]config.InvalidateRule{{Name: "writes", Match: config.Match{PathPrefix: "/products/"}, RequestPath: true}})
	p.InProcess = &config.InProcessTier{MaxEntries: 100, MaxBytes: 1 << 20}
	a := newSidecar(t, p, clusterClient(t, cluster.Addrs()), up)
	b := newSidecar(t, p, clusterClient(t, cluster.Addrs()), up)
	a.localReady(t)
	b.localReady(t)

	if r := b.get(t, "/products/42"); r.xcache != "MISS" || r.body != "product 42 v1" {
		t.Fatalf("first GET through B: %s %q", r.xcache, r.body)
	}
	if r := b.get(t, "/products/42"); r.xcache != "HIT" || !strings.Contains(r.cacheStatus, "detail=inprocess") {
		t.Fatalf("second GET through B must hit its in-process tier: %s %q", r.xcache, r.cacheStatus)
	}
	if r := a.get(t, "/products/42"); r.xcache != "HIT" || !strings.Contains(r.cacheStatus, "detail=redis") {
		t.Fatalf("GET through A must hit the shared Redis tier: %s %q", r.xcache, r.cacheStatus)
	}

	sent := time.Now()
	if r := a.do(t, http.MethodPut, "/products/42"); r.status != http.StatusNoContent {
		t.Fatalf("PUT through A: %d", r.status)
	}
	answered := time.Since(sent)
	eventually(t, "B's in-process tier to drop /products/42", func() bool { return !b.localHolds("/products/42") })
	delay := time.Duration(b.c.lastReceived.Load() - a.c.lastSent.Load())
	t.Logf("eviction delay: B dropped its in-process copy %v after A broadcast the eviction (the whole PUT took %v)", delay, answered)
	if delay <= 0 {
		t.Errorf("B applied the eviction (%d) before A broadcast it (%d)", b.c.lastReceived.Load(), a.c.lastSent.Load())
	}

	r := b.get(t, "/products/42")
	if r.xcache != "MISS" || r.body != "product 42 v2" {
		t.Errorf("GET through B after the write: %s %q, want MISS with the new body", r.xcache, r.body)
	}
	// One write is two broadcasts: the announcement, sent while Redis
	// evicts, and the completion.
	if got := testutil.ToFloat64(b.m.invReceived); got != 2 {
		t.Errorf("B received %v invalidation broadcasts, want 2", got)
	}

	// Every key the cache wrote on any primary carries a TTL.
	ctx := context.Background()
	var total atomic.Int64
	err := clusterClient(t, cluster.Addrs()).ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		n, bad := keysWithoutTTL(t, ctx, c)
		total.Add(int64(n))
		if len(bad) > 0 {
			return fmt.Errorf("keys without TTL on %s: %v", c.Options().Addr, bad)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if total.Load() == 0 {
		t.Error("the cache wrote no keys at all")
	}
}

func TestVaryAcceptLanguage(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		text("hello in "+r.Header.Get("Accept-Language"), "Vary", "Accept-Language")(w, r)
	})
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("pages", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	for _, step := range []struct{ lang, xcache string }{
		{"en", "MISS"}, {"de", "MISS"}, {"en", "HIT"}, {"de", "HIT"}, {"de", "HIT"}, {"en", "HIT"},
	} {
		r := s.get(t, "/greeting", "Accept-Language", step.lang)
		if r.xcache != step.xcache || r.body != "hello in "+step.lang {
			t.Errorf("Accept-Language %s: %s %q, want %s %q", step.lang, r.xcache, r.body, step.xcache, "hello in "+step.lang)
		}
	}
	if got := up.calls.Load(); got != 2 {
		t.Errorf("upstream calls = %d, want 2 (one per language)", got)
	}
}

func TestResponsesNotStored(t *testing.T) {
	srv := startStandalone(t)
	client := standaloneClient(t, srv.Addr())
	tests := []struct {
		name   string
		h      http.HandlerFunc
		detail string
	}{
		{"no-store", text("x", "Cache-Control", "no-store"), "detail=no-store"},
		{"private", text("x", "Cache-Control", "private, max-age=60"), "detail=private"},
		{"set-cookie", text("x", "Set-Cookie", "sid=1"), "detail=set-cookie"},
		{"5xx", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }, "detail=status"},
		{"vary star", text("x", "Vary", "*"), "detail=vary-star"},
		{"max-age=0", text("x", "Cache-Control", "max-age=0"), "detail=expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.h)
			s := newSidecar(t, policy([]config.CacheRule{cacheRule("all", time.Minute)}, nil), client, up)
			for i := range 2 {
				r := s.get(t, "/"+tt.name)
				if r.xcache != "MISS" || !strings.Contains(r.cacheStatus, tt.detail) {
					t.Errorf("GET %d: X-Cache %s, Cache-Status %q; want MISS with %s", i, r.xcache, r.cacheStatus, tt.detail)
				}
			}
			if got := up.calls.Load(); got != 2 {
				t.Errorf("upstream calls = %d, want 2 (nothing stored)", got)
			}
		})
	}
}

func TestLargeBodyPassesThroughUncached(t *testing.T) {
	srv := startStandalone(t)
	big := strings.Repeat("x", 5000)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: the cache only learns the size by reading.
		w.Header().Set("Cache-Control", "max-age=60")
		for range 5 {
			_, _ = w.Write([]byte(big[:1000]))
			w.(http.Flusher).Flush()
		}
	})
	r := cacheRule("small", time.Minute)
	r.MaxBodyBytes = new(int64(1024))
	s := newSidecar(t, policy([]config.CacheRule{r}, nil), standaloneClient(t, srv.Addr()), up)
	for i := range 2 {
		got := s.get(t, "/big")
		if got.body != big || got.xcache != "MISS" || !strings.Contains(got.cacheStatus, "detail=too-large") {
			t.Errorf("GET %d: %d bytes, %s %q", i, len(got.body), got.xcache, got.cacheStatus)
		}
	}
	if got := up.calls.Load(); got != 2 {
		t.Errorf("upstream calls = %d, want 2", got)
	}
}

func TestEntriesExpireAtTTL(t *testing.T) {
	srv := startStandalone(t)
	client := standaloneClient(t, srv.Addr())
	up := newUpstream(t, text("short-lived"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("short", 2*time.Second)}, nil), client, up)
	stored := time.Now()
	if r := s.get(t, "/short"); r.xcache != "MISS" {
		t.Fatalf("first GET: %s", r.xcache)
	}
	if r := s.get(t, "/short"); r.xcache != "HIT" || !strings.Contains(r.cacheStatus, "ttl=") {
		t.Fatalf("second GET: %s %q", r.xcache, r.cacheStatus)
	}
	var r resp
	eventually(t, "the entry to expire", func() bool {
		r = s.get(t, "/short")
		return r.xcache == "MISS"
	})
	// The age counts from the origin's Date (RFC 9111 4.2.3), which has a
	// resolution of one second: the entry may go up to 1s early.
	if lived := time.Since(stored); lived < time.Second {
		t.Errorf("entry expired after %v, before its 2s TTL less Date's resolution", lived)
	}
	if !strings.Contains(r.cacheStatus, "stored") {
		t.Errorf("expired entry not refilled: %q", r.cacheStatus)
	}
	n, bad := keysWithoutTTL(t, context.Background(), client.(*redis.Client))
	if n == 0 || len(bad) > 0 {
		t.Errorf("%d keys, without TTL: %v", n, bad)
	}
}

func TestEveryKeyHasTTL(t *testing.T) {
	srv := startStandalone(t)
	client := standaloneClient(t, srv.Addr())
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			return
		}
		text("x", "Vary", "Accept-Language")(w, r)
	})
	r := cacheRule("catalog", time.Hour)
	r.Tags = []string{"catalog"}
	r.StaleIfError = new(config.Duration(time.Hour))
	p := policy([]config.CacheRule{r}, []config.InvalidateRule{
		{Name: "one", Match: config.Match{PathPrefix: "/p/1"}, RequestPath: true},
		{Name: "tag", Match: config.Match{PathPrefix: "/tag"}, Tags: []string{"catalog"}},
	})
	p.InProcess = &config.InProcessTier{MaxEntries: 10, MaxBytes: 1 << 20}
	s := newSidecar(t, p, client, up)
	for i := range 5 {
		s.get(t, fmt.Sprintf("/p/%d?b=1&a=2", i), "Accept-Language", "en")
		s.get(t, fmt.Sprintf("/p/%d", i), "Accept-Language", "de")
	}
	s.do(t, http.MethodPost, "/p/1")
	s.do(t, http.MethodPost, "/tag")
	s.get(t, "/p/2")
	n, bad := keysWithoutTTL(t, context.Background(), client.(*redis.Client))
	if n < 5 {
		t.Errorf("only %d keys written", n)
	}
	if len(bad) > 0 {
		t.Errorf("keys without TTL: %v", bad)
	}
}

func TestRedisDownBypassesAndRecovers(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("ok"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	if r := s.get(t, "/x"); r.xcache != "MISS" {
		t.Fatalf("first GET: %s", r.xcache)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r := s.get(t, "/x")
		if r.status != 200 || r.body != "ok" || r.xcache != "BYPASS" {
			t.Errorf("GET %d with Redis down: %d %q %s, want 200 from the upstream, BYPASS", i, r.status, r.body, r.xcache)
		}
	}
	srv.Start(t)
	eventually(t, "caching to resume", func() bool {
		return strings.Contains(s.get(t, "/x").cacheStatus, "stored")
	})
	if r := s.get(t, "/x"); r.xcache != "HIT" {
		t.Errorf("after recovery: %s, want HIT", r.xcache)
	}
}

func TestInvalidationByPrefixAndTag(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			text("x")(w, r)
		}
	})
	products := cacheRule("products", time.Minute)
	products.Match = config.Match{PathPrefix: "/products/"}
	products.Tags = []string{"catalog"}
	other := cacheRule("other", time.Minute)
	p := policy([]config.CacheRule{products, other}, []config.InvalidateRule{
		{Name: "reindex", Match: config.Match{PathPrefix: "/reindex"}, PathPrefixes: []string{"/products/"}},
		{Name: "retag", Match: config.Match{PathPrefix: "/retag", Methods: []string{"DELETE"}}, Tags: []string{"catalog"}},
	})
	p.InProcess = &config.InProcessTier{MaxEntries: 100, MaxBytes: 1 << 20}
	s := newSidecar(t, p, standaloneClient(t, srv.Addr()), up)
	s.localReady(t)
	paths := []string{"/products/1", "/products/2?x=1", "/other"}
	fill := func() {
		for _, path := range paths {
			s.get(t, path)
			if r := s.get(t, path); r.xcache != "HIT" {
				t.Fatalf("%s not cached: %s", path, r.xcache)
			}
		}
	}
	check := func(how string) {
		t.Helper()
		want := map[string]string{"/products/1": "MISS", "/products/2?x=1": "MISS", "/other": "HIT"}
		for _, path := range paths {
			if r := s.get(t, path); r.xcache != want[path] {
				t.Errorf("after %s: %s is %s, want %s", how, path, r.xcache, want[path])
			}
		}
	}
	fill()
	if r := s.do(t, http.MethodPost, "/reindex"); r.status != 200 {
		t.Fatalf("POST /reindex: %d", r.status)
	}
	check("prefix invalidation")
	fill()
	// A method the rule does not name evicts nothing.
	s.do(t, http.MethodPost, "/retag")
	if r := s.get(t, "/products/1"); r.xcache != "HIT" {
		t.Errorf("POST /retag must not match a DELETE-only rule: %s", r.xcache)
	}
	s.do(t, http.MethodDelete, "/retag")
	check("tag invalidation")
}

func TestFailedWriteEvictsNothing(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusConflict)
			return
		}
		text("x")(w, r)
	})
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)},
		[]config.InvalidateRule{{Name: "w", RequestPath: true}}), standaloneClient(t, srv.Addr()), up)
	s.get(t, "/a")
	s.do(t, http.MethodPut, "/a")
	if r := s.get(t, "/a"); r.xcache != "HIT" {
		t.Errorf("after a 409 write: %s, want HIT", r.xcache)
	}
}

func TestPurgeEndpoint(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("x"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	s.get(t, "/a")
	s.get(t, "/b")
	res, err := http.Post(s.admin.URL+"/v1/cache/purge", "application/json", strings.NewReader(`{"paths":["/a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("purge: %d", res.StatusCode)
	}
	if r := s.get(t, "/a"); r.xcache != "MISS" {
		t.Errorf("/a after purge: %s", r.xcache)
	}
	if r := s.get(t, "/b"); r.xcache != "HIT" {
		t.Errorf("/b after purging /a: %s", r.xcache)
	}
	for _, body := range []string{`{}`, `{"paths":`, `{"unknown":1}`} {
		res, err := http.Post(s.admin.URL+"/v1/cache/purge", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("purge %s: %d %s, want 400 problem+json", body, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
}

func TestConditionalAndHead(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("tagged", "ETag", `"v1"`))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	if r := s.get(t, "/e", "If-None-Match", `"v1"`); r.status != 304 || r.xcache != "MISS" {
		t.Errorf("conditional miss: %d %s, want 304 answered by the cache from the stored fill", r.status, r.xcache)
	}
	if r := s.get(t, "/e", "If-None-Match", `"v1"`); r.status != 304 || r.xcache != "HIT" || r.body != "" || r.header.Get("ETag") != `"v1"` {
		t.Errorf("conditional hit: %d %s %q", r.status, r.xcache, r.body)
	}
	if r := s.get(t, "/e", "If-None-Match", `"v0"`); r.status != 200 || r.body != "tagged" {
		t.Errorf("mismatching etag: %d %q", r.status, r.body)
	}
	r := s.do(t, http.MethodHead, "/e")
	if r.status != 200 || r.xcache != "HIT" || r.body != "" || r.header.Get("Content-Length") != "6" || r.header.Get("Age") == "" {
		t.Errorf("HEAD: %d %s body=%q Content-Length=%q Age=%q", r.status, r.xcache, r.body, r.header.Get("Content-Length"), r.header.Get("Age"))
	}
	if got := up.calls.Load(); got != 1 {
		t.Errorf("upstream calls = %d, want 1", got)
	}
	if r := s.do(t, http.MethodHead, "/cold"); r.xcache != "MISS" || up.calls.Load() != 2 {
		t.Errorf("HEAD miss: %s", r.xcache)
	}
	if r := s.get(t, "/cold"); r.xcache != "MISS" {
		t.Errorf("a HEAD miss must not fill: %s", r.xcache)
	}
}

func TestSessionDependentResponses(t *testing.T) {
	srv := startStandalone(t)
	client := standaloneClient(t, srv.Addr())
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		text("for "+r.Header.Get("X-Test-Subject"))(w, r)
	})
	shared := newSidecar(t, policy([]config.CacheRule{cacheRule("shared", time.Minute)}, nil), client, up)
	for range 2 {
		if r := shared.get(t, "/me", "X-Test-Subject", "alice"); r.xcache != "BYPASS" {
			t.Errorf("request with a subject on a shared rule: %s, want BYPASS", r.xcache)
		}
		// RFC 9111 3.5: fetched, but not stored without public, s-maxage
		// or must-revalidate.
		if r := shared.get(t, "/me", "Authorization", "Bearer x"); r.xcache != "MISS" || !strings.Contains(r.cacheStatus, "detail=authorization") {
			t.Errorf("request with Authorization on a shared rule: %s %q, want MISS, not stored", r.xcache, r.cacheStatus)
		}
	}
	per := cacheRule("per", time.Minute)
	per.VaryBySubject = true
	p := policy([]config.CacheRule{per}, nil)
	p.Name = "per-subject"
	s := newSidecar(t, p, client, up)
	for _, step := range []struct{ who, xcache string }{{"alice", "MISS"}, {"bob", "MISS"}, {"alice", "HIT"}, {"bob", "HIT"}} {
		if r := s.get(t, "/me", "X-Test-Subject", step.who); r.xcache != step.xcache || r.body != "for "+step.who {
			t.Errorf("%s: %s %q, want %s", step.who, r.xcache, r.body, step.xcache)
		}
	}
}

func TestStaleWhileRevalidateAndStaleIfError(t *testing.T) {
	srv := startStandalone(t)
	client := standaloneClient(t, srv.Addr())
	t.Run("stale-while-revalidate", func(t *testing.T) {
		up := newUpstream(t, text("old", "Cache-Control", "max-age=1, stale-while-revalidate=3600"))
		r := cacheRule("swr", time.Minute)
		r.StaleWhileRevalidate = new(config.Duration(time.Hour))
		s := newSidecar(t, policy([]config.CacheRule{r}, nil), client, up)
		s.get(t, "/swr")
		up.set(text("new", "Cache-Control", "max-age=1, stale-while-revalidate=3600"))
		var got resp
		eventually(t, "a stale answer", func() bool { got = s.get(t, "/swr"); return got.xcache == "STALE" })
		if got.body != "old" || !strings.Contains(got.cacheStatus, "stale-while-revalidate") {
			t.Errorf("stale answer: %q %q", got.body, got.cacheStatus)
		}
		eventually(t, "the background refresh", func() bool { got = s.get(t, "/swr"); return got.body == "new" })
		if got.xcache != "HIT" {
			t.Errorf("refreshed entry served as %s, want HIT", got.xcache)
		}
	})
	t.Run("stale-if-error", func(t *testing.T) {
		up := newUpstream(t, text("good", "Cache-Control", "max-age=1, stale-if-error=3600"))
		r := cacheRule("sie", time.Minute)
		r.StaleIfError = new(config.Duration(time.Hour))
		s := newSidecar(t, policy([]config.CacheRule{r}, nil), client, up)
		s.get(t, "/sie")
		up.set(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
		var got resp
		eventually(t, "the entry to go stale", func() bool { got = s.get(t, "/sie"); return got.xcache != "HIT" })
		if got.status != 200 || got.body != "good" || got.xcache != "STALE" || !strings.Contains(got.cacheStatus, "fwd-status=502") {
			t.Errorf("upstream failing: %d %q %s %q, want the stale 200", got.status, got.body, got.xcache, got.cacheStatus)
		}
	})
}

func TestSubscriptionLossDisablesInProcessTier(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("x"))
	p := policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil)
	p.InProcess = &config.InProcessTier{MaxEntries: 10, MaxBytes: 1 << 20}
	s := newSidecar(t, p, standaloneClient(t, srv.Addr()), up)
	s.localReady(t)
	s.get(t, "/a")
	if r := s.get(t, "/a"); !strings.Contains(r.cacheStatus, "detail=inprocess") {
		t.Fatalf("not served in-process: %q", r.cacheStatus)
	}
	// Cut the subscriber's connection, as a failover or network blip would.
	if _, err := redistest.Do(context.Background(), srv.Addr(), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the in-process tier to be dropped", func() bool { return !s.localHolds("/a") })
	s.localReady(t)
	if r := s.get(t, "/a"); r.xcache != "HIT" || !strings.Contains(r.cacheStatus, "detail=redis") {
		t.Errorf("after resubscribing: %s %q, want a Redis hit (the tier was emptied)", r.xcache, r.cacheStatus)
	}
	if got := testutil.ToFloat64(s.m.evictions.WithLabelValues("inprocess", "subscription-lost")); got < 1 {
		t.Errorf("subscription-lost evictions = %v", got)
	}
}

func TestInProcessTierBounds(t *testing.T) {
	m := NewMetrics(nil)
	l := newLocal(3, 1000, m)
	l.enable()
	_, epoch := l.snapshot()
	for i := range 5 {
		l.put(&item{key: fmt.Sprint(i), path: "/p", e: &entry{}, size: 100, expires: time.Now().Add(time.Hour)}, epoch)
	}
	if got := l.ll.Len(); got != 3 {
		t.Errorf("entries = %d, want the cap of 3", got)
	}
	if l.get("0", time.Now()) != nil || l.get("4", time.Now()) == nil {
		t.Error("least recently used entries must go first")
	}
	l.put(&item{key: "big", path: "/q", e: &entry{}, size: 900, expires: time.Now().Add(time.Hour)}, epoch)
	if l.bytes > 1000 {
		t.Errorf("bytes = %d, over the cap", l.bytes)
	}
	if l.put(&item{key: "late", path: "/q", size: 1, expires: time.Now().Add(time.Hour)}, epoch-1) {
		t.Error("a fill from before an eviction must be refused")
	}
	l.disable()
	if l.put(&item{key: "off", path: "/q", size: 1, expires: time.Now().Add(time.Hour)}, epoch) || l.ll.Len() != 0 {
		t.Error("a disabled tier must be empty and refuse fills")
	}
}

func TestNewRejectsAMissingConnection(t *testing.T) {
	clients := map[string]*redisconn.Conn{"main": connTo(t, redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}))}
	p := policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil)
	p.Redis = "nope"
	if c, err := New(compiled(t, p), clients, NewShared(nil), discardLog()); err == nil {
		_ = c.Close()
		t.Error("New accepted a policy naming an unknown connection")
	}
}

// A fill that was in flight while a write invalidated its path must not be
// stored: it may carry the pre-write state.
func TestFillRacingWriteIsNotStored(t *testing.T) {
	srv := startStandalone(t)
	release := make(chan struct{})
	fetching := make(chan struct{}, 1)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			select {
			case fetching <- struct{}{}:
				<-release
			default:
			}
			text("old")(w, r)
		}
	})
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)},
		[]config.InvalidateRule{{Name: "w", RequestPath: true}}), standaloneClient(t, srv.Addr()), up)
	done := make(chan resp)
	go func() { done <- s.get(t, "/item") }()
	<-fetching
	if r := s.do(t, http.MethodPut, "/item"); r.status != 200 {
		t.Fatalf("PUT: %d", r.status)
	}
	close(release)
	if r := <-done; r.body != "old" || strings.Contains(r.cacheStatus, "stored") {
		t.Errorf("racing fill: %q %q, must not be stored", r.body, r.cacheStatus)
	}
	if r := s.get(t, "/item"); r.xcache != "MISS" {
		t.Errorf("GET after the racing fill: %s, want MISS", r.xcache)
	}
}

func TestBypassedRequests(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("x"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("r", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	for _, h := range [][2]string{{"Upgrade", "websocket"}, {"If-Match", `"a"`}} {
		if r := s.get(t, "/b", h[0], h[1]); r.xcache != "BYPASS" || r.status != 200 {
			t.Errorf("%s: %d %s, want BYPASS", h[0], r.status, r.xcache)
		}
	}
	// A request's no-store: fetched, and nothing stored (RFC 9111 5.2.1.5).
	if r := s.get(t, "/b", "Cache-Control", "no-store"); r.xcache != "MISS" || !strings.Contains(r.cacheStatus, "detail=request-no-store") {
		t.Errorf("no-store request: %s %q", r.xcache, r.cacheStatus)
	}
	if r := s.get(t, "/b"); r.xcache != "MISS" {
		t.Errorf("bypassed and no-store requests must not fill: %s", r.xcache)
	}
	// Requests no rule matches are not touched at all.
	if r := s.do(t, http.MethodOptions, "/b"); r.xcache != "" || r.cacheStatus != "" {
		t.Errorf("unmatched request got cache headers: %q %q", r.xcache, r.cacheStatus)
	}
}

// A client that hangs up mid-lookup is not a Redis failure: the next
// request is still served from the cache, not bypassed.
func TestClientCancellationDoesNotDisableTheCache(t *testing.T) {
	srv := startStandalone(t)
	up := newUpstream(t, text("fresh"))
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("all", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	if r := s.get(t, "/cancel"); r.xcache != "MISS" {
		t.Fatalf("first GET: %s, want MISS", r.xcache)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://shop.test/cancel", nil)
	s.c.Middleware(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), req)

	if r := s.get(t, "/cancel"); r.xcache != "HIT" {
		t.Errorf("GET after another client hung up: %s, want HIT (the cache must not mark Redis down)", r.xcache)
	}
}
