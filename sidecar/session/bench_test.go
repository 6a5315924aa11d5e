package session

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// BenchmarkMiddleware measures one protected request through the session
// middleware against a real standalone Redis: token parsing, the Redis round
// trip, decryption and header forwarding. allocs/op is the per-request
// allocation count of the feature plus go-redis.
func BenchmarkMiddleware(b *testing.B) {
	s := redistest.StartStandalone(b)
	clients := map[string]*redisconn.Conn{"main": conn(b, redisconn.Standalone, s.Addr())}
	metrics := NewMetrics(prometheus.NewRegistry())
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})

	for _, bc := range []struct {
		name string
		p    config.SessionPolicy
		path string
	}{
		{"sliding-GETEX", config.SessionPolicy{Sliding: true}, "/api"},
		{"fixed-GET", config.SessionPolicy{}, "/api"},
		{"refreshBelow-GET+PTTL", config.SessionPolicy{Sliding: true, RefreshBelow: config.Duration(time.Minute)}, "/api"},
		{"public-path", config.SessionPolicy{PublicPaths: []string{"/public"}}, "/public/x"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := bc.p
			p.Namespace, p.Name, p.Redis = "bench", bc.name, "main"
			p.TTL = config.Duration(time.Hour)
			p.ForwardClaims = []string{"role"}
			m, err := New(mustCompile(b, p), clients, metrics, nil)
			if err != nil {
				b.Fatal(err)
			}
			tok, _, err := m.create(context.Background(), "bench-user", map[string]string{"role": "admin"}, 0)
			if err != nil {
				b.Fatal(err)
			}
			h := m.Middleware(ok)
			r := httptest.NewRequest(http.MethodGet, bc.path, nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				r.Header = http.Header{"Authorization": {"Bearer " + tok}}
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
