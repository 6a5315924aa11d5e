package cache

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// BenchmarkHit compares one 1 KiB GET answered by: the app handler called
// directly; a bare httputil.ReverseProxy to the app over loopback; and the
// cache middleware (in front of that proxy) hitting its in-process tier or
// Redis. Run with:
//
//	go test ./sidecar/cache -run '^$' -bench BenchmarkHit -benchtime 2000x
func BenchmarkHit(b *testing.B) {
	srv := redistest.StartStandalone(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = client.Close() })
	app := text(strings.Repeat("x", 1024), "Cache-Control", "max-age=60")
	upstream := httptest.NewServer(app)
	b.Cleanup(upstream.Close)
	target, _ := url.Parse(upstream.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{MaxIdleConnsPerHost: 64}

	sh := NewShared(prometheus.NewRegistry())
	conns := map[string]*redisconn.Conn{"main": connTo(b, client)}
	newCache := func(name string, inProcess bool) *Cache {
		p := policy([]config.CacheRule{cacheRule("products", time.Hour)}, nil)
		p.Name = name
		if inProcess {
			p.InProcess = &config.InProcessTier{MaxEntries: 1000, MaxBytes: 64 << 20}
		}
		c, err := New(compiled(b, p), conns, sh, discardLog())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	redisTier := newCache("redis-tier", false)
	localTier := newCache("local-tier", true)
	for !func() bool { on, _ := localTier.local.snapshot(); return on }() {
		time.Sleep(10 * time.Millisecond)
	}

	cases := []struct {
		name   string
		h      http.Handler
		xcache string
		detail string
		// miss: every iteration asks for a new path.
		miss bool
	}{
		{"upstream-handler", app, "", "", false},
		{"reverseproxy", proxy, "", "", false},
		{"cache-hit-inprocess", localTier.Middleware(proxy), "HIT", "detail=inprocess", false},
		{"cache-hit-redis", redisTier.Middleware(proxy), "HIT", "detail=redis", false},
		{"cache-miss", redisTier.Middleware(proxy), "MISS", "stored", true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			n := 0
			serve := func() *httptest.ResponseRecorder {
				target := "http://shop.test/products/42?b=1&a=2"
				if tc.miss {
					n++
					target = "http://shop.test/products/" + strconv.Itoa(n)
				}
				req := httptest.NewRequest(http.MethodGet, target, nil)
				rec := httptest.NewRecorder()
				tc.h.ServeHTTP(rec, req)
				return rec
			}
			// Warm the cache (and the in-process tier from Redis).
			for range 2 {
				serve()
			}
			if rec := serve(); rec.Code != 200 || rec.Header().Get("X-Cache") != tc.xcache ||
				!strings.Contains(rec.Header().Get("Cache-Status"), tc.detail) {
				b.Fatalf("warm-up: %d %q %q", rec.Code, rec.Header().Get("X-Cache"), rec.Header().Get("Cache-Status"))
			}
			lat := make([]time.Duration, 0, b.N)
			reads0 := redisReads(b, client)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				rec := serve()
				lat = append(lat, time.Since(t0))
				if rec.Code != 200 {
					b.Fatalf("status %d", rec.Code)
				}
			}
			b.StopTimer()
			// A pipelined call arrives in one read: reads per op are the
			// Redis round trips a request costs (the INFO call itself adds 1).
			b.ReportMetric(float64(redisReads(b, client)-reads0-1)/float64(len(lat)), "redis-trips/op")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			}
		})
	}
}

// redisReads is the server's total_reads_processed.
func redisReads(b *testing.B, c *redis.Client) int64 {
	b.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no total_reads_processed")
	return 0
}

// BenchmarkPrefixInvalidation is one prefix invalidation (Redis records in
// every bucket and both broadcasts) with 0 and with 50k paths cached under
// the prefix: the figures must match.
//
//	go test ./sidecar/cache -run '^$' -bench BenchmarkPrefixInvalidation -benchtime 200x
func BenchmarkPrefixInvalidation(b *testing.B) {
	srv := redistest.StartStandalone(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	b.Cleanup(func() { _ = client.Close() })
	sh := NewShared(prometheus.NewRegistry())
	c, err := New(compiled(b, policy([]config.CacheRule{cacheRule("all", time.Hour)}, nil)), map[string]*redisconn.Conn{"main": connTo(b, client)}, sh, discardLog())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	for _, paths := range []int{0, 50_000} {
		b.Run(strconv.Itoa(paths)+"-paths", func(b *testing.B) {
			for i := 0; i < paths; i += 5000 {
				p := client.Pipeline()
				for j := i; j < i+5000; j++ {
					path := "/p/item-" + strconv.Itoa(j)
					p.HSet(ctx, c.ks.meta(path), "gen", "0")
					p.Set(ctx, c.ks.variant(path, "0"), "x", time.Hour)
				}
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.invalidate(ctx, targets{PathPrefixes: []string{"/p/"}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
