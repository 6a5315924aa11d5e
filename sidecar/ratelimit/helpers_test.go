package ratelimit

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

func newLimiter(t testing.TB, clients map[string]*redisconn.Conn, m *Metrics, ps ...config.RateLimitPolicy) *Limiter {
	t.Helper()
	if m == nil {
		m = NewMetrics(nil)
	}
	compiled := make([]*Policy, 0, len(ps))
	for _, p := range ps {
		c, err := Compile(p)
		if err != nil {
			t.Fatalf("compile %s/%s: %v", p.Namespace, p.Name, err)
		}
		compiled = append(compiled, c)
	}
	l, err := New(compiled, clients, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("new limiter: %v", err)
	}
	return l
}

// one is the access layer's connection "main" to the server c talks to,
// with the same timeouts; tests keep c to look at Redis behind the limiter.
func one(t testing.TB, c redis.UniversalClient) map[string]*redisconn.Conn {
	t.Helper()
	conns, _ := oneWithMetrics(t, c)
	return conns
}

// oneWithMetrics is one, with the registry of the access layer's metrics.
func oneWithMetrics(t testing.TB, c redis.UniversalClient) (map[string]*redisconn.Conn, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return map[string]*redisconn.Conn{"main": connFor(t, c, reg)}, reg
}

func connFor(t testing.TB, c redis.UniversalClient, reg *prometheus.Registry) *redisconn.Conn {
	t.Helper()
	var o redisconn.Options
	switch c := c.(type) {
	case *redis.Client:
		ro := c.Options()
		o = redisconn.Options{Mode: redisconn.Standalone, Addrs: []string{ro.Addr},
			DialTimeout: ro.DialTimeout, ReadTimeout: ro.ReadTimeout, WriteTimeout: ro.WriteTimeout, MaxRetries: ro.MaxRetries}
	case *redis.ClusterClient:
		co := c.Options()
		o = redisconn.Options{Mode: redisconn.Cluster, Addrs: co.Addrs,
			DialTimeout: co.DialTimeout, ReadTimeout: co.ReadTimeout, WriteTimeout: co.WriteTimeout, MaxRetries: co.MaxRetries}
	default:
		t.Fatalf("unexpected client %T", c)
	}
	o.Name = "main"
	var m *redisconn.Metrics
	if reg != nil {
		m = redisconn.NewMetrics(reg)
	}
	rc, err := redisconn.New(o, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// redisCalls sums gatehouse_redis_calls_total{result=result} in reg.
func redisCalls(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "gatehouse_redis_calls_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
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

// sfList parses a Structured Field List of strings with integer
// parameters (RFC 9651 §3.1), the shape of the draft's RateLimit and
// RateLimit-Policy fields: member name → parameter → value.
func sfList(t testing.TB, field string) map[string]map[string]int64 {
	t.Helper()
	out := map[string]map[string]int64{}
	for member := range strings.SplitSeq(field, ",") {
		member = strings.Trim(member, " \t")
		if member == "" {
			t.Fatalf("field %q: empty list member", field)
		}
		parts := strings.Split(member, ";")
		name, err := strconv.Unquote(parts[0])
		if err != nil || !strings.HasPrefix(parts[0], `"`) {
			t.Fatalf("field %q: member %q is not a String", field, parts[0])
		}
		params := map[string]int64{}
		for _, p := range parts[1:] {
			k, v, ok := strings.Cut(p, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if !ok || err != nil {
				t.Fatalf("field %q: parameter %q is not key=integer", field, p)
			}
			params[k] = n
		}
		out[name] = params
	}
	return out
}

// remaining is the r of rule (named "<policy>/<rule>") in the RateLimit field.
func remaining(t testing.TB, resp *http.Response, rule string) int64 {
	t.Helper()
	m, ok := sfList(t, resp.Header.Get("RateLimit"))[rule]
	if !ok {
		t.Fatalf("RateLimit %q has no member %q", resp.Header.Get("RateLimit"), rule)
	}
	return m["r"]
}
