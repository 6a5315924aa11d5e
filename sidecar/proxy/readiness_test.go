package proxy

import (
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// A feature whose failure mode admits traffic (the cache bypasses, an Open
// rate limit falls back) must not take the pod out of its Service when
// Redis is down: /readyz stays 200 and shows the trouble in its detail. A
// session policy, which answers 503 on required paths, makes it unready.
func TestReadyzFlipsOnlyForFeaturesThatRefuseTraffic(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newApp(t)
	redisConn := `"redis":[{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"],"readTimeout":"200ms","dialTimeout":"200ms"}]`
	tests := []struct {
		name       string
		policies   string
		path       string
		wantReady  bool
		wantHealth []string // feature/state after a request with Redis down
	}{
		{"cache only", `"caches":[{"namespace":"ns","name":"c","redis":"main","rules":[{"name":"all","ttl":"1m"}]}]`, "/x", true, []string{"cache/unavailable"}},
		{"open rate limit only", `"rateLimits":[{"namespace":"ns","name":"rl","redis":"main","rules":[{"name":"r","limit":100,"window":"1m","key":{},"failureMode":"Open"}]}]`, "/x", true, []string{"ratelimit/unavailable"}},
		{"closed rate limit", `"rateLimits":[{"namespace":"ns","name":"rl","redis":"main","rules":[{"name":"r","limit":100,"window":"1m","key":{},"failureMode":"Closed"}]}]`, "/x", false, []string{"ratelimit/unavailable"}},
		// The request carries no token, so no lookup; the session's
		// revocation subscription (its in-process tier) sees Redis down.
		{"session", `"sessions":[{"namespace":"ns","name":"s","redis":"main","ttl":"1m"}]`, "/x", false, []string{"session/unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !srv.Running() {
				srv.Start(t)
			}
			s := newSidecar(t, a.URL, cfgDoc("r", redisConn+","+tt.policies)).start(t)
			eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			get(t, s.data+tt.path, nil)
			health := func(rd Readiness) []string {
				var got []string
				for _, h := range rd.Redis {
					got = append(got, h.Feature+"/"+h.State)
				}
				return got
			}
			// A subscription notices the stop on its own goroutine.
			eventually(t, "feature health settles", func() bool {
				_, rd := readyz(t, s)
				return cmp.Equal(tt.wantHealth, health(rd))
			})
			code, rd := readyz(t, s)
			if rd.Ready != tt.wantReady || (code == http.StatusOK) != tt.wantReady {
				t.Errorf("with Redis down: ready %v (status %d), want %v; checks %+v", rd.Ready, code, tt.wantReady, rd.Checks)
			}
			i := slices.IndexFunc(rd.Checks, func(c Check) bool { return c.Name == "redis/main" })
			if i < 0 || rd.Checks[i].OK || rd.Checks[i].Error == "" || rd.Checks[i].Advisory != tt.wantReady {
				t.Errorf("redis/main check = %+v", rd.Checks)
			}
			if diff := cmp.Diff(tt.wantHealth, health(rd)); diff != "" {
				t.Errorf("feature health (-want +got):\n%s", diff)
			}
		})
	}
}
