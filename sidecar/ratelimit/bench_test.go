package ratelimit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the limiter rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkDecision measures one request through the middleware against a
// real Redis: key building, one pipelined script call, headers.
//
//	go test ./sidecar/ratelimit -run '^$' -bench Decision -benchmem
func BenchmarkDecision(b *testing.B) {
	s := redistest.StartStandalone(b)
	c := redis.NewClient(clientOptions(s.Addr()))
	b.Cleanup(func() { _ = c.Close() })
	for _, alg := range []config.Algorithm{config.FixedWindow, config.SlidingWindow, config.TokenBucket} {
		b.Run(string(alg), func(b *testing.B) {
			r := newRule("bench", alg, 1<<40, time.Minute)
			if alg == config.TokenBucket {
				r.Limit, r.Burst = 1_000_000, 1<<40
			}
			r.Key.ClientIP = true
			h := newLimiter(b, one(b, c), nil, testPolicy("ns", "bench", "main", r)).Middleware(okHandler)
			rq := req("GET", "/", "10.30.0.1", "")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, rq)
			}
			if w.h.Get("RateLimit") == "" {
				b.Fatal("no RateLimit headers: the decision did not reach Redis")
			}
		})
	}
	b.Run("FixedWindow/parallel", func(b *testing.B) {
		r := newRule("bench-par", config.FixedWindow, 1<<40, time.Minute)
		r.Key.ClientIP = true
		h := newLimiter(b, one(b, c), nil, testPolicy("ns", "bench", "main", r)).Middleware(okHandler)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rq := req("GET", "/", "10.30.0.2", "")
			w := &discardWriter{h: http.Header{}}
			for pb.Next() {
				clear(w.h)
				h.ServeHTTP(w, rq)
			}
		})
	})
}

// BenchmarkProxy compares, in one run, a plain httputil.ReverseProxy in front
// of an upstream with the same proxy behind one rate-limit rule.
//
//	go test ./sidecar/ratelimit -run '^$' -bench Proxy -benchmem
func BenchmarkProxy(b *testing.B) {
	s := redistest.StartStandalone(b)
	c := redis.NewClient(clientOptions(s.Addr()))
	b.Cleanup(func() { _ = c.Close() })
	upstream := httptest.NewServer(okHandler)
	b.Cleanup(upstream.Close)
	target, err := url.Parse(upstream.URL)
	if err != nil {
		b.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	r := newRule("per-ip", config.FixedWindow, 1<<40, time.Minute)
	r.Key.ClientIP = true
	limited := newLimiter(b, one(b, c), nil, testPolicy("ns", "proxy", "main", r)).Middleware(proxy)

	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"plain", proxy}, {"ratelimited", limited}} {
		b.Run(tc.name, func(b *testing.B) {
			front := httptest.NewServer(tc.h)
			defer front.Close()
			client := front.Client()
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(front.URL)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
