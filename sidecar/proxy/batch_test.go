package proxy

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// TestOneRoundTripPerRequest counts the reads Redis makes (INFO stats
// total_reads_processed: a pipelined batch arrives in one read) while a
// sidecar serves sequential requests through a session policy and two
// strict rate limits, one per client IP and one per subject. The session's
// in-process tier resolves the token, so both scripts go out in one
// pipeline: one round trip per request, where a round trip per feature
// was two. With the rules leased, requests cost almost none.
func TestOneRoundTripPerRequest(t *testing.T) {
	srv := redistest.StartStandalone(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	a := newApp(t)
	for _, tt := range []struct {
		quota    string
		min, max float64
	}{
		{"Strict", 0.9, 1.1},
		{"Leased", 0, 0.05}, // issue 18: ≤ 0.05 round trips per request in steady state
	} {
		t.Run(tt.quota, func(t *testing.T) {
			policies := `"redis":[{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}],
				"sessions":[{"namespace":"ns","name":"web-` + tt.quota + `","redis":"main","ttl":"1h","sliding":true}],
				"rateLimits":[{"namespace":"ns","name":"rl-` + tt.quota + `","redis":"main","rules":[
					{"name":"per-ip","key":{"clientIP":true},"limit":1000000,"window":"1h","quota":"` + tt.quota + `"},
					{"name":"per-user","key":{"subject":true},"limit":1000000,"window":"1h","quota":"` + tt.quota + `"}]}]`
			s := newSidecar(t, a.URL, cfgDoc(tt.quota, policies)).start(t)
			eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
			auth := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
			// Warm up: the revocation subscription confirms, the tier fills,
			// the scripts are cached, leases taken.
			for range 20 {
				if resp, body := get(t, s.data+"/api", auth); resp.StatusCode != http.StatusOK {
					t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Then at the measured pace, so that leased slices are sized
			// from the rate being measured (steady state), not from the
			// paced warm-up's 50 requests per second.
			const n = 200
			for range n {
				if resp, body := get(t, s.data+"/api", auth); resp.StatusCode != http.StatusOK {
					t.Fatalf("warm-up: %d %s", resp.StatusCode, body)
				}
			}
			before := reads(t, rdb)
			for range n {
				if resp, body := get(t, s.data+"/api", auth); resp.StatusCode != http.StatusOK {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
			}
			perReq := float64(reads(t, rdb)-before) / n
			t.Logf("%s: %.3f Redis reads per request", tt.quota, perReq)
			if perReq < tt.min || perReq > tt.max {
				t.Errorf("%s: %.3f Redis reads per request, want %.2f–%.2f", tt.quota, perReq, tt.min, tt.max)
			}
		})
	}
}

// TestLookupAndScriptsShareARoundTrip: a token the sidecar has not seen
// yet needs a Redis lookup; the per-IP rule's script goes in the same
// pipeline, so the request costs one round trip, not one per feature.
func TestLookupAndScriptsShareARoundTrip(t *testing.T) {
	srv := redistest.StartStandalone(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	a := newApp(t)
	policies := `"redis":[{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}],
		"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1h","sliding":true}],
		"rateLimits":[{"namespace":"ns","name":"rl","redis":"main","rules":[
			{"name":"per-ip","key":{"clientIP":true},"limit":1000000,"window":"1h"}]}]`
	s := newSidecar(t, a.URL, cfgDoc("miss", policies)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	const n = 100
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = mint(t, s, "u"+strconv.Itoa(i), nil)
	}
	if resp, _ := get(t, s.data+"/api", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	before := reads(t, rdb)
	for _, tok := range tokens {
		if resp, body := get(t, s.data+"/api", http.Header{"Authorization": {"Bearer " + tok}}); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	perReq := float64(reads(t, rdb)-before) / n
	t.Logf("first use of a token: %.3f Redis reads per request", perReq)
	if perReq > 1.1 {
		t.Errorf("%.3f Redis reads per request, want 1 (lookup and script in one pipeline)", perReq)
	}
}

// reads is the server's total_reads_processed (redistest.Reads).
func reads(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	n, err := redistest.Reads(context.Background(), rdb.Options().Addr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
