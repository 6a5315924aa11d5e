package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// clientOptions mirror the sidecar's defaults for a Redis connection, so the
// failure-mode tests see the timeouts production would.
func clientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		DialTimeout:  time.Second,
		ReadTimeout:  200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond,
		MaxRetries:   1,
	}
}

func startRedis(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	s := redistest.StartStandalone(t)
	c := redis.NewClient(clientOptions(s.Addr()))
	t.Cleanup(func() { _ = c.Close() })
	return s, c
}

func newLimiter(t testing.TB, clients map[string]redis.UniversalClient, m *Metrics, ps ...config.RateLimitPolicy) *Limiter {
	t.Helper()
	if m == nil {
		m = NewMetrics(nil)
	}
	l, err := New(ps, clients, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("new limiter: %v", err)
	}
	return l
}

func one(c redis.UniversalClient) map[string]redis.UniversalClient {
	return map[string]redis.UniversalClient{"main": c}
}

func newRule(name string, alg config.Algorithm, limit int64, window time.Duration) config.RateLimitRule {
	return config.RateLimitRule{Name: name, Algorithm: alg, Limit: limit, Window: config.Duration(window)}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = w.Write([]byte("ok"))
})

// serve sends r through h and returns the recorded response.
func serve(h http.Handler, r *http.Request) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Result()
}

func headerInt(t testing.TB, resp *http.Response, name string) int64 {
	t.Helper()
	v := resp.Header.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q: %v", name, v, err)
	}
	return n
}

// serverTime reads the Redis server clock, the clock the scripts use.
func serverTime(t testing.TB, c redis.UniversalClient) time.Time {
	t.Helper()
	tm, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("redis TIME: %v", err)
	}
	return tm
}
