package cache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// newVersioned is an app whose GET answers the current version of a path
// and whose PUT makes a new one.
func newVersioned(t *testing.T) *upstream {
	var mu sync.Mutex
	versions := map[string]int{}
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut {
			versions[r.URL.Path]++
			w.WriteHeader(http.StatusNoContent)
			return
		}
		text(fmt.Sprintf("%s v%d", r.URL.Path, versions[r.URL.Path]))(w, r)
	})
}

func writablePolicy(inProcess bool) config.CachePolicy {
	p := policy([]config.CacheRule{cacheRule("items", time.Minute)},
		[]config.InvalidateRule{{Name: "writes", Match: config.Match{PathPrefix: "/items/"}, RequestPath: true}})
	if inProcess {
		p.InProcess = &config.InProcessTier{MaxEntries: 100, MaxBytes: 1 << 20}
	}
	return p
}

// The race the review found on the writing sidecar: the in-process tier was
// evicted before Redis, so a reader between the two steps fetched the old
// entry from Redis, stored it in the in-process tier with a current epoch,
// and served it until its TTL after the write had succeeded. The hook runs
// a reader at exactly that point of the invalidation. (Fails on fdded49
// with the hook placed between its in-process and Redis evictions.)
func TestWriterCannotRestoreAnEntryOlderThanItsInvalidation(t *testing.T) {
	srv := startStandalone(t)
	up := newVersioned(t)
	s := newSidecar(t, writablePolicy(true), standaloneClient(t, srv.Addr()), up)
	s.localReady(t)
	if r := s.get(t, "/items/1"); r.body != "/items/1 v0" {
		t.Fatalf("first GET: %q", r.body)
	}
	if r := s.get(t, "/items/1"); !strings.Contains(r.cacheStatus, "detail=inprocess") {
		t.Fatalf("second GET not from the in-process tier: %s %q", r.xcache, r.cacheStatus)
	}
	var during resp
	testHookRedisEvict = func() { during = s.get(t, "/items/1") }
	t.Cleanup(func() { testHookRedisEvict = nil })
	if r := s.do(t, http.MethodPut, "/items/1"); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d", r.status)
	}
	testHookRedisEvict = nil
	t.Logf("reader during the invalidation: %s %q %q", during.xcache, during.body, during.cacheStatus)
	for i := range 3 {
		if r := s.get(t, "/items/1"); r.body != "/items/1 v1" {
			t.Fatalf("GET %d after the write returned: %s %q (%q), want v1", i, r.xcache, r.body, r.cacheStatus)
		}
	}
}

// An eviction Redis does not accept within the request deadline neither
// holds the write back nor is lost: the PUT answers within the deadline,
// the path bypasses the cache while the eviction is pending, the eviction is
// retried until Redis accepts it, and caching resumes. A frozen Redis
// (SIGSTOP) is the worst case: it keeps the entry and answers nothing.
func TestFailedInvalidationIsRetriedAndBypassesMeanwhile(t *testing.T) {
	srv := startStandalone(t)
	up := newVersioned(t)
	client := standaloneClient(t, srv.Addr())
	s := newSidecar(t, writablePolicy(true), client, up)
	s.localReady(t)
	s.get(t, "/items/2")
	if r := s.get(t, "/items/2"); r.xcache != "HIT" {
		t.Fatalf("not cached: %s", r.xcache)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if r := s.do(t, http.MethodPut, "/items/2"); r.status != http.StatusNoContent {
		t.Fatalf("PUT with Redis frozen: %d", r.status)
	}
	// The deadline (300ms in these tests) plus a second of slack.
	if took := time.Since(start); took > 300*time.Millisecond+time.Second {
		t.Errorf("PUT with Redis frozen took %v; the invalidation must give up at the deadline", took)
	}
	if got := testutil.ToFloat64(s.m.pending); got != 1 {
		t.Errorf("pending invalidations = %v, want 1", got)
	}
	if r := s.get(t, "/items/2"); r.body != "/items/2 v1" || r.xcache != "BYPASS" {
		t.Errorf("GET while Redis is frozen: %s %q, want the new body, bypassed", r.xcache, r.body)
	}
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	// Redis still holds the old entry until the retry evicts it: no GET may
	// ever see it.
	for deadline := time.Now().Add(15 * time.Second); ; {
		r := s.get(t, "/items/2")
		if r.body != "/items/2 v1" {
			t.Fatalf("GET after the thaw: %s %q (%q), want v1", r.xcache, r.body, r.cacheStatus)
		}
		if r.xcache == "HIT" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caching did not resume: %s %q", r.xcache, r.cacheStatus)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.m.invRetries.WithLabelValues("ok")); got != 1 {
		t.Errorf("successful retries = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.m.pending); got != 0 {
		t.Errorf("pending invalidations after the retry = %v, want 0", got)
	}
	if gen := client.HGet(context.Background(), s.c.ks.meta("/items/2"), "gen").Val(); gen == "" {
		t.Error("/items/2 has no generation: the retry did not invalidate it")
	}
	if got := testutil.ToFloat64(s.m.evictions.WithLabelValues("redis", "invalidation")); got != 1 {
		t.Errorf("Redis invalidations = %v, want 1: the retry invalidated /items/2 once", got)
	}
}

// A pending invalidation survives a config reload: the next Cache of the
// policy, built on the same Shared, retries it.
func TestPendingInvalidationOutlivesAReload(t *testing.T) {
	srv := startStandalone(t)
	up := newVersioned(t)
	client := standaloneClient(t, srv.Addr())
	sh := NewShared(prometheus.NewRegistry())
	conns := map[string]*redisconn.Conn{"main": connTo(t, client)}
	p := writablePolicy(false)
	old, err := New(compiled(t, p), conns, sh, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	// Store v0 in Redis through the old instance.
	h := old.Middleware(reverseProxy(t, up))
	if r := serveLocal(h, http.MethodGet, "/items/3"); r.Header().Get("X-Cache") != "MISS" {
		t.Fatalf("fill: %s", r.Header().Get("X-Cache"))
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	if r := serveLocal(h, http.MethodPut, "/items/3"); r.Code != http.StatusNoContent {
		t.Fatalf("PUT: %d", r.Code)
	}
	_ = old.Close()
	next, err := New(compiled(t, p), conns, sh, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close() })
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new Cache retries the old one's invalidation", func() bool {
		return testutil.ToFloat64(sh.m.pending) == 0
	})
	if gen := client.HGet(context.Background(), next.ks.meta("/items/3"), "gen").Val(); gen == "" {
		t.Error("/items/3 has no generation: the new Cache did not retry the invalidation")
	}
	if r := serveLocal(next.Middleware(reverseProxy(t, up)), http.MethodGet, "/items/3"); r.Body.String() != "/items/3 v1" {
		t.Errorf("after the retry: %q, want v1", r.Body.String())
	}
}

// The writer's eviction can fail on the entry's shard while the broadcast
// still reaches the other replicas (the channel lives on another shard).
// They evict their in-process copies and bypass the path until the writer's
// retry completes: the primary of the entry's shard is killed and B never
// serves the old body after A's write, neither from its in-process tier
// nor, once the replica took over, from the Redis entry the writer could
// not evict.
func TestPendingInvalidationReachesOtherReplicas(t *testing.T) {
	cl := redistest.StartCluster(t, "cluster-require-full-coverage no")
	up := newVersioned(t)
	p := writablePolicy(true)
	cc := clusterClient(t, cl.Addrs())
	ks := newKeyspace(config.DefaultCachePrefix, p.Namespace, p.Name)
	ctx := context.Background()
	owner := func(key string) string {
		n, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return n.Options().Addr
	}
	channelNode := owner(ks.channel())
	path := ""
	for i := range 100 {
		if c := fmt.Sprintf("/items/p%d", i); owner(ks.meta(c)) != channelNode {
			path = c
			break
		}
	}
	var victim *redistest.Server
	for _, s := range cl.Primaries {
		if s.Addr() == owner(ks.meta(path)) {
			victim = s
		}
	}
	a := newSidecar(t, p, clusterClient(t, cl.Addrs()), up)
	b := newSidecar(t, p, clusterClient(t, cl.Addrs()), up)
	a.localReady(t)
	b.localReady(t)
	b.get(t, path)
	if r := b.get(t, path); !strings.Contains(r.cacheStatus, "inprocess") {
		t.Fatalf("B does not hold %s in-process: %s %q", path, r.xcache, r.cacheStatus)
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if r := a.do(t, http.MethodPut, path); r.status != http.StatusNoContent {
		t.Fatalf("PUT: %d", r.status)
	}
	if got := testutil.ToFloat64(a.m.pending); got != 1 {
		t.Fatalf("A's pending invalidations = %v, want 1 (the entry's shard is down)", got)
	}
	eventually(t, "B learns of the pending invalidation", func() bool { return testutil.ToFloat64(b.m.pending) == 1 })
	want := path + " v1"
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := b.get(t, path)
		if r.body != want {
			t.Fatalf("GET through B after A's write: %s %q (%q), want %q", r.xcache, r.body, r.cacheStatus, want)
		}
		if r.xcache == "HIT" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never caches %s again: %s %q", path, r.xcache, r.cacheStatus)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(b.m.pending); got != 0 {
		t.Errorf("B's pending invalidations after the completion = %v, want 0", got)
	}
}

// Another replica whose subscription stops delivering (its channel's node
// frozen) stops using its in-process tier within the subscription lease,
// before it even notices the subscription is gone.
func TestSilentSubscriptionStopsTheInProcessTier(t *testing.T) {
	srv := startStandalone(t)
	up := newVersioned(t)
	s := newSidecar(t, writablePolicy(true), standaloneClient(t, srv.Addr()), up)
	s.localReady(t)
	s.get(t, "/items/4")
	if r := s.get(t, "/items/4"); !strings.Contains(r.cacheStatus, "inprocess") {
		t.Fatalf("not in-process: %q", r.cacheStatus)
	}
	if !s.c.localUsable(time.Now()) {
		t.Fatal("tier unusable with a live subscription")
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Thaw() })
	frozen := time.Now()
	eventually(t, "the tier stops being used", func() bool { return !s.c.localUsable(time.Now()) })
	t.Logf("in-process tier unusable %v after the freeze (lease %v)", time.Since(frozen).Round(time.Millisecond), subscriptionLease)
	if r := s.get(t, "/items/4"); strings.Contains(r.cacheStatus, "inprocess") {
		t.Errorf("served in-process with the subscription silent: %q", r.cacheStatus)
	}
}

// serveLocal sends one request through h without a network.
func serveLocal(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, "http://shop.test"+path, nil))
	return w
}

func reverseProxy(t *testing.T, up *upstream) http.Handler {
	t.Helper()
	target, err := url.Parse(up.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return httputil.NewSingleHostReverseProxy(target)
}
