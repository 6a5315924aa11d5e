package cache

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
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
		c, err := New(p, conns, sh, discardLog())
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
	}{
		{"upstream-handler", app, "", ""},
		{"reverseproxy", proxy, "", ""},
		{"cache-hit-inprocess", localTier.Middleware(proxy), "HIT", "detail=inprocess"},
		{"cache-hit-redis", redisTier.Middleware(proxy), "HIT", "detail=redis"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			serve := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodGet, "http://shop.test/products/42?b=1&a=2", nil)
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
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			}
		})
	}
}
