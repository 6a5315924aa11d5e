package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// TestSessionFeatureWiredThroughReload proves the real session feature sits
// in the chain and its admin routes on the admin listener: a reload that adds
// a session policy makes /api need a token (no restart), a token minted on
// the admin API lets the request through with the subject the sidecar set,
// and a forged subject header is replaced, never forwarded.
func TestSessionFeatureWiredThroughReload(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newApp(t)
	redis := `"redis":[{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}]`
	s := newSidecar(t, a.URL, cfgDoc("open", redis)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })

	forged := http.Header{"X-Gatehouse-Subject": {"admin"}}
	if resp, _ := get(t, s.data+"/api/orders", forged); resp.StatusCode != http.StatusOK {
		t.Fatalf("without a session policy /api = %d, want 200", resp.StatusCode)
	}

	writeFile(t, s.cfgPath, cfgDoc("sessions", redis+`,
		"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1m","sliding":true,"requireFor":["/api/"]}]`))
	eventually(t, "session required after reload", func() bool {
		resp, _ := get(t, s.data+"/api/orders", forged)
		return resp.StatusCode == http.StatusUnauthorized
	})

	resp, err := http.Post(s.admin+"/v1/sessions", "application/json", strings.NewReader(`{"subject":"alice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated || created.Token == "" {
		t.Fatalf("create session = %d %+v %v", resp.StatusCode, created, err)
	}
	resp.Body.Close()

	resp, _ = get(t, s.data+"/api/orders", http.Header{
		"Authorization":       {"Bearer " + created.Token},
		"X-Gatehouse-Subject": {"admin"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with a session /api = %d", resp.StatusCode)
	}
	a.mu.Lock()
	subjects := a.last.Values("X-Gatehouse-Subject")
	a.mu.Unlock()
	if len(subjects) != 1 || subjects[0] != "alice" {
		t.Errorf("app saw X-Gatehouse-Subject %q, want exactly [alice]", subjects)
	}
}

// TestRateLimitAndCacheWired checks that the rate-limit and cache features
// are in the chain when their policies select the pod: the cache answers the
// app's response with X-Cache, and a global limit of 2 per minute refuses the
// third request with 429.
func TestRateLimitAndCacheWired(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("rl", `"redis":[{"name":"main","mode":"Standalone","addrs":["`+srv.Addr()+`"]}],
		"rateLimits":[{"namespace":"ns","name":"rl","redis":"main","rules":[{"name":"global","limit":2,"window":"1m"}]}],
		"caches":[{"namespace":"ns","name":"c","redis":"main","rules":[{"name":"all","ttl":"1m"}]}]`)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	resp, _ := get(t, s.data+"/cached", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") == "" {
		t.Errorf("first request = %d X-Cache %q, want 200 with an X-Cache header", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	_, _ = get(t, s.data+"/other", nil)
	if resp, _ := get(t, s.data+"/third", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third request = %d, want 429", resp.StatusCode)
	}
}
