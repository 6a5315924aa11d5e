package proxy

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// cacheBatchPolicies is make bench's session+ratelimit+cache-miss
// configuration: a sliding session, strict FixedWindow limits per client IP
// and per subject (never reached), and one cache rule varied by subject
// (a shared cache must not give one user's answer to another), in Override
// mode because the test app sends no caching headers.
func cacheBatchPolicies(redisJSON, name string) string {
	return `"redis":[` + redisJSON + `],
		"sessions":[{"namespace":"ns","name":"web-` + name + `","redis":"main","ttl":"1h","sliding":true}],
		"rateLimits":[{"namespace":"ns","name":"rl-` + name + `","redis":"main","rules":[
			{"name":"per-ip","key":{"clientIP":true},"limit":1000000,"window":"1h"},
			{"name":"per-user","key":{"subject":true},"limit":1000000,"window":"1h"}]}],
		"caches":[{"namespace":"ns","name":"cache-` + name + `","redis":"main","rules":[
			{"name":"all","ttl":"60s","mode":"Override","varyBySubject":true}]}]`
}

// countReads runs f and returns how many reads the primaries at addrs made
// meanwhile, per call of f: Redis reads a pipeline in one read, so on one
// node this is the round trips a request cost it. The INFO of each node
// after f, and the close of the connection of the one before, are not
// counted (redistest.Reads' connections are one-shot).
func countReads(t *testing.T, addrs []string, n int, f func(i int)) float64 {
	t.Helper()
	before := sumReads(t, addrs)
	for i := range n {
		f(i)
	}
	return float64(sumReads(t, addrs)-before-2*int64(len(addrs))) / float64(n)
}

// sumReads is the sum of the nodes' total_reads_processed (redistest.Reads).
func sumReads(t testing.TB, addrs []string) int64 {
	t.Helper()
	var sum int64
	for _, a := range addrs {
		n, err := redistest.Reads(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}

// TestCacheLookupJoinsTheRequestBatch: with a session the in-process tier
// holds and strict limits per client IP and per subject, the cache's lookup
// goes out in the request's one batch with the two rate-limit calls, so a
// cache miss costs two round trips (that batch, then the store script) and
// a shared-tier hit one; before, the lookup was a round trip of its own
// after the rate limits had decided (3 and 2). On the cluster the test
// picks a subject and paths whose rate-limit counters and cache bucket
// live on one primary, so that its read count tells a shared pipeline from
// separate round trips (the nodes of a batch are sent to concurrently, so
// spread keys cost one round trip of wall time either way).
func TestCacheLookupJoinsTheRequestBatch(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := redistest.StartStandalone(t)
		a := newApp(t)
		s := newSidecar(t, a.URL, cfgDoc("batch-standalone", cacheBatchPolicies(
			`{"name":"main","mode":"Standalone","addrs":["`+srv.Addr()+`"]}`, "standalone"))).start(t)
		eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
		auth := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
		paths := make([]string, 100)
		for i := range paths {
			paths[i] = "/miss/" + strconv.Itoa(i)
		}
		measureCacheBatch(t, s, []string{srv.Addr()}, auth, paths)
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { _ = cc.Close() })
		addrs := `"` + strings.Join(cl.Addrs(), `","`) + `"`
		a := newApp(t)
		s := newSidecar(t, a.URL, cfgDoc("batch-cluster", cacheBatchPolicies(
			`{"name":"main","mode":"Cluster","addrs":[`+addrs+`]}`, "cluster"))).start(t)
		eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })

		// The per-IP counter's primary, and a subject whose counter is
		// there too (a third of subjects are).
		var auth http.Header
		var node string
		seen := map[string]bool{}
		for i := 0; auth == nil; i++ {
			if i == 40 {
				t.Fatal("no subject's counter shares the per-IP counter's primary")
			}
			h := http.Header{"Authorization": {"Bearer " + mint(t, s, "user-"+strconv.Itoa(i), nil)}}
			if resp, body := get(t, s.data+"/find-node", h); resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			ip := counterTags(t, cc, "rl:{ns/rl-cluster/per-ip/")
			if len(ip) != 1 {
				t.Fatalf("per-IP counters: %v", ip)
			}
			for tag := range ip {
				node = primaryOf(t, cc, tag)
			}
			for tag := range counterTags(t, cc, "rl:{ns/rl-cluster/per-user/") {
				if !seen[tag] {
					seen[tag] = true
					if primaryOf(t, cc, tag) == node {
						auth = h
					}
				}
			}
		}
		// Paths whose cache bucket (docs/caching.md: the first byte of
		// SHA-256 of the path, hex) is on that primary.
		var paths []string
		for i := 0; len(paths) < 100; i++ {
			p := "/miss/" + strconv.Itoa(i)
			sum := sha256.Sum256([]byte(p))
			if primaryOf(t, cc, "{ns/cache-cluster/"+strconv.FormatInt(int64(sum[0]), 16)+"}") == node {
				paths = append(paths, p)
			}
		}
		var primaries []string
		for _, p := range cl.Primaries {
			primaries = append(primaries, p.Addr())
		}
		measureCacheBatch(t, s, primaries, auth, paths)
	})
}

// measureCacheBatch warms s up (the session's tier, the scripts) and then
// counts the reads at addrs of a miss and of a shared-tier hit on each path.
func measureCacheBatch(t *testing.T, s *sidecar, addrs []string, auth http.Header, paths []string) {
	t.Helper()
	for i := range 20 {
		if resp, body := get(t, s.data+"/warm/"+strconv.Itoa(i), auth); resp.StatusCode != http.StatusOK {
			t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	check := func(path, xcache, status string) {
		resp, body := get(t, s.data+path, auth)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != xcache ||
			!strings.Contains(resp.Header.Get("Cache-Status"), status) {
			t.Fatalf("GET %s: %d %s %q %s", path, resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"), body)
		}
	}
	miss := countReads(t, addrs, len(paths), func(i int) { check(paths[i], "MISS", "stored") })
	hit := countReads(t, addrs, len(paths), func(i int) { check(paths[i], "HIT", "detail=redis") })
	t.Logf("Redis reads per request: cache miss %.3f, shared-tier hit %.3f", miss, hit)
	// Slack for the background: replicas' acknowledgements, the
	// revocation subscription's pings.
	if miss > 2.1 {
		t.Errorf("cache miss: %.3f Redis reads per request, want 2 (the request's batch, then the store)", miss)
	}
	if hit > 1.1 {
		t.Errorf("shared-tier hit: %.3f Redis reads per request, want 1 (the lookup in the request's batch)", hit)
	}
}

// counterTags are the hash tags of the keys with prefix on every primary.
func counterTags(t *testing.T, cc *redis.ClusterClient, prefix string) map[string]bool {
	t.Helper()
	tags := map[string]bool{}
	ctx := context.Background()
	var mu sync.Mutex
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, prefix+"*").Result()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if end := strings.IndexByte(k, '}'); end > 0 {
				tags[k[strings.IndexByte(k, '{'):end+1]] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// primaryOf is the address of the primary serving key's slot.
func primaryOf(t *testing.T, cc *redis.ClusterClient, key string) string {
	t.Helper()
	c, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Options().Addr
}

// TestPlannedCacheLookupKeepsTheGuarantees: the cache's lookup is read
// ahead, in the request's batch, before the session step and the rate
// limits decide and before the session step sets the headers the app
// receives. Each case replays what a read-ahead could get wrong.
func TestPlannedCacheLookupKeepsTheGuarantees(t *testing.T) {
	srv := redistest.StartStandalone(t)
	main := `{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}`
	perIP := `{"name":"per-ip","key":{"clientIP":true},"limit":1000000,"window":"1h"}`
	start := func(t *testing.T, name, session, rules, cacheRule string, h http.Handler) (*sidecar, *countingApp) {
		t.Helper()
		a := newCountingApp(t, h)
		s := startWithConfig(t, a.URL, `"redis":[`+main+`],
			"sessions":[{"namespace":"ns","name":"web-`+name+`","redis":"main","ttl":"1h","sliding":true`+session+`}],
			"rateLimits":[{"namespace":"ns","name":"rl-`+name+`","redis":"main","rules":[`+rules+`]}],
			"caches":[{"namespace":"ns","name":"cache-`+name+`","redis":"main","rules":[`+cacheRule+`]}]`)
		return s, a
	}
	overrideBySubject := `{"name":"all","ttl":"60s","mode":"Override","varyBySubject":true}`

	// A limit the request exhausts: the cached answer must not be served
	// past it, the denials must not count as cache requests, and once the
	// deny cache refuses locally the request costs Redis nothing, the
	// cache's lookup included (the limiter's plan is final).
	t.Run("rate limit denies", func(t *testing.T) {
		s, a := start(t, "denied", "", perIP+`,{"name":"per-user","key":{"subject":true},"limit":2,"window":"1h"}`, overrideBySubject, nil)
		auth := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
		wantCache(t, s, "/limited", auth, http.StatusOK, "MISS")
		wantCache(t, s, "/limited", auth, http.StatusOK, "HIT")
		resp, _ := get(t, s.data+"/limited", auth)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Cache") != "" || resp.Header.Get("Cache-Status") != "" {
			t.Fatalf("third request: %d X-Cache %q Cache-Status %q, want 429 from the rate limit, untouched by the cache",
				resp.StatusCode, resp.Header.Get("X-Cache"), resp.Header.Get("Cache-Status"))
		}
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		ipCounter := func() string {
			keys, err := rdb.Keys(context.Background(), "rl:{ns/rl-denied/per-ip/*").Result()
			if err != nil || len(keys) != 1 {
				t.Fatalf("per-IP counters: %v %v", keys, err)
			}
			return rdb.Get(context.Background(), keys[0]).Val()
		}
		ipCount := ipCounter()
		lookups := cacheLookups(t, s)
		perReq := countReads(t, []string{srv.Addr()}, 20, func(int) {
			if resp, _ := get(t, s.data+"/limited", auth); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Cache") != "" {
				t.Fatalf("denied request: %d X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
			}
		})
		if perReq > 0.1 || cacheLookups(t, s) != lookups {
			t.Errorf("a request the deny cache refuses: %.2f Redis reads, %v cache lookups, want none", perReq, cacheLookups(t, s)-lookups)
		}
		if got := ipCounter(); got != ipCount {
			t.Errorf("the per-IP counter went from %s to %s over requests the per-subject limit refused", ipCount, got)
		}
		if hits, misses := metric(t, s, `gatehouse_cache_requests_total{result="hit",rule="all"}`), metric(t, s, `gatehouse_cache_requests_total{result="miss",rule="all"}`); hits != "1" || misses != "1" {
			t.Errorf("cache requests: %s hits, %s misses, want 1 each (denied requests never reach the cache)", hits, misses)
		}
		if n := a.count("/limited"); n != 1 {
			t.Errorf("the app saw /limited %d times, want 1", n)
		}
	})

	// A revoked session: the read-ahead must neither answer it from the
	// cache nor even look up (the subject is pending until Redis answers).
	t.Run("session refuses", func(t *testing.T) {
		s, _ := start(t, "refused", `,"requireFor":["/"]`, perIP, overrideBySubject, nil)
		tok := mint(t, s, "alice", nil)
		auth := http.Header{"Authorization": {"Bearer " + tok}}
		wantCache(t, s, "/private", auth, http.StatusOK, "MISS")
		wantCache(t, s, "/private", auth, http.StatusOK, "HIT")
		req, _ := http.NewRequest(http.MethodDelete, s.admin+"/v1/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("revoke: %v %v", err, resp)
		}
		eventually(t, "the revoked session refused", func() bool {
			resp, _ := get(t, s.data+"/private", auth)
			return resp.StatusCode == http.StatusUnauthorized
		})
		lookups := cacheLookups(t, s)
		for range 5 {
			if resp, _ := get(t, s.data+"/private", auth); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Cache") != "" {
				t.Fatalf("revoked session: %d X-Cache %q, want 401 untouched by the cache", resp.StatusCode, resp.Header.Get("X-Cache"))
			}
		}
		if got := cacheLookups(t, s) - lookups; got != 0 {
			t.Errorf("%v cache lookups for requests the session step refused, want 0", got)
		}
		if hits := metric(t, s, `gatehouse_cache_requests_total{result="hit",rule="all"}`); hits != "1" {
			t.Errorf("cache hits %s, want 1", hits)
		}
	})

	// RFC 9111 5.2.1.4 and 5.2.1.7: the request's own directives are
	// decided on the found entry, planned or not.
	t.Run("request directives", func(t *testing.T) {
		s, a := start(t, "directives", "", perIP, overrideBySubject, nil)
		auth := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
		wantCache(t, s, "/doc", auth, http.StatusOK, "MISS")
		noCache := http.Header{"Authorization": auth["Authorization"], "Cache-Control": {"no-cache"}}
		resp := wantCache(t, s, "/doc", noCache, http.StatusOK, "MISS")
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=request") {
			t.Errorf("no-cache: Cache-Status %q, want fwd=request", cs)
		}
		if n := a.count("/doc"); n != 2 {
			t.Errorf("no-cache: the app saw /doc %d times, want 2", n)
		}
		onlyIfCached := http.Header{"Authorization": auth["Authorization"], "Cache-Control": {"only-if-cached"}}
		wantCache(t, s, "/never-stored", onlyIfCached, http.StatusGatewayTimeout, "MISS")
		if n := a.count("/never-stored"); n != 0 {
			t.Errorf("only-if-cached reached the app %d times", n)
		}
	})

	// RFC 9111 3.5: credentials in a scheme the session step does not read
	// pass it untouched; the response stored for an anonymous request must
	// not answer them.
	t.Run("authorization", func(t *testing.T) {
		s, a := start(t, "authorization", `,"requireFor":["/private/"]`, perIP, overrideBySubject, nil)
		wantCache(t, s, "/shared", nil, http.StatusOK, "MISS")
		wantCache(t, s, "/shared", nil, http.StatusOK, "HIT")
		resp, _ := get(t, s.data+"/shared", http.Header{"Authorization": {"Basic YWxpY2U6c2VjcmV0"}})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") == "HIT" {
			t.Errorf("Basic credentials: %d X-Cache %q, want the origin's answer", resp.StatusCode, resp.Header.Get("X-Cache"))
		}
		if n := a.count("/shared"); n != 2 {
			t.Errorf("the app saw /shared %d times, want 2", n)
		}
	})

	// The origin varies on a claim header the session step sets only after
	// it decided, so the lookup read ahead used a key without it. Another
	// session of the same subject whose claim differs must not get the
	// variant stored for the first.
	t.Run("vary on a forwarded claim", func(t *testing.T) {
		byTenant := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "X-Gatehouse-Claim-Tenant")
			_, _ = w.Write([]byte("tenant=" + r.Header.Get("X-Gatehouse-Claim-Tenant")))
		})
		s, _ := start(t, "vary", `,"forwardClaims":["tenant"]`, perIP, `{"name":"all","ttl":"60s","varyBySubject":true}`, byTenant)
		none := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
		tenantB := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", map[string]string{"tenant": "b"})}}
		for _, tc := range []struct {
			h            http.Header
			xcache, body string
		}{
			{none, "MISS", "tenant="},
			{none, "HIT", "tenant="},
			{tenantB, "MISS", "tenant=b"},
			{tenantB, "HIT", "tenant=b"},
			{none, "HIT", "tenant="},
		} {
			resp, body := get(t, s.data+"/v", tc.h)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != tc.xcache || body != tc.body {
				t.Errorf("GET /v: %d %s %q, want %s %q", resp.StatusCode, resp.Header.Get("X-Cache"), body, tc.xcache, tc.body)
			}
		}
	})
}

// wantCache GETs path and checks the status and X-Cache.
func wantCache(t *testing.T, s *sidecar, path string, h http.Header, status int, xcache string) *http.Response {
	t.Helper()
	resp, body := get(t, s.data+path, h)
	if resp.StatusCode != status || resp.Header.Get("X-Cache") != xcache {
		t.Fatalf("GET %s: %d X-Cache %q (%s), want %d %s", path, resp.StatusCode, resp.Header.Get("X-Cache"), body, status, xcache)
	}
	return resp
}

// cacheLookups is the number of lookup calls the cache made to Redis.
func cacheLookups(t *testing.T, s *sidecar) float64 {
	t.Helper()
	_, body := get(t, s.admin+"/metrics", nil)
	var n float64
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "gatehouse_redis_calls_total{") && strings.Contains(line, `feature="cache"`) && strings.Contains(line, `op="lookup"`) {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64)
			n += v
		}
	}
	return n
}

// countingApp counts the requests for each path; h answers them (nil: a
// short text).
type countingApp struct {
	*httptest.Server
	mu sync.Mutex
	n  map[string]int
}

func newCountingApp(t *testing.T, h http.Handler) *countingApp {
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok " + r.URL.Path)) })
	}
	a := &countingApp{n: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.n[r.URL.Path]++
		a.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *countingApp) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[path]
}
