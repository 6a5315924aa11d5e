package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// A request through session, rate limit and cache waits for Redis in
// phases, one after the other, each bounded by its connection's
// readTimeout (docs/reliability.md#bounds). Each feature here has its own
// redis-server, all three frozen (SIGSTOP: sockets accept, nothing
// answers), and the request's token is one the session's in-process tier
// has not seen: the request's batch (the session lookup and the rate-limit
// decision, on their two connections concurrently) waits one deadline, the
// cache lookup another, and the request is then served by the failure
// modes (anonymous on an optional path, the in-process fallback of an Open
// rule, a cache bypass). The bound of 4 × readTimeout is a subject-keyed
// rule's decision after the session, the lookup succeeding slowly and the
// store waiting too; slack covers the loaded test machine. (With
// the breaker's 100ms shorter than a deadline, a lone client's every
// request probes again: the breaker saves concurrent requests, see
// internal/redisconn's TestFrozenNodeCostsOneDeadlineThenTheBreakerAnswers.)
func TestRequestPhasesAddUpToTheBound(t *testing.T) {
	const deadline = 200 * time.Millisecond
	const slack = time.Second
	servers := []*redistest.Server{redistest.StartStandalone(t), redistest.StartStandalone(t), redistest.StartStandalone(t)}
	conn := func(name string, s *redistest.Server) string {
		return `{"name":"` + name + `","mode":"Standalone","addrs":["` + s.Addr() + `"],"readTimeout":"200ms","dialTimeout":"200ms"}`
	}
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("phases", `"redis":[`+conn("s", servers[0])+`,`+conn("r", servers[1])+`,`+conn("c", servers[2])+`],
		"sessions":[{"namespace":"ns","name":"s","redis":"s","ttl":"1m","requireFor":["/api/"]}],
		"rateLimits":[{"namespace":"ns","name":"rl","redis":"r","rules":[{"name":"g","limit":1000,"window":"1m","failureMode":"Open"}]}],
		"caches":[{"namespace":"ns","name":"c","redis":"c","rules":[{"name":"all","ttl":"1m"}]}]`)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Hash == "phases" })
	// Warm every pool, so the frozen servers hold open connections; the
	// measured request carries another token, which the session tier has
	// not seen, so its lookup waits on the frozen Redis.
	warm := http.Header{"Authorization": {"Bearer " + mint(t, s, "bob", nil)}}
	if resp, _ := get(t, s.data+"/page", warm); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up = %d", resp.StatusCode)
	}
	auth := http.Header{"Authorization": {"Bearer " + mint(t, s, "alice", nil)}}
	for _, srv := range servers {
		if err := srv.Freeze(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Thaw() })
	}
	// Past the breakers' memory of the warm-up, so every phase is a probe.
	time.Sleep(150 * time.Millisecond)

	timed := func(path string) (time.Duration, *http.Response) {
		start := time.Now()
		resp, _ := get(t, s.data+path, auth)
		return time.Since(start), resp
	}
	took, resp := timed("/other")
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Status"), "redis-unavailable") {
		t.Fatalf("with every Redis frozen: %d, Cache-Status %q; want 200 through the failure modes, a bypass", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	if took < 2*deadline {
		t.Errorf("took %v: two phases waiting their %v deadline each take at least %v", took, deadline, 2*deadline)
	}
	if took > 4*deadline+slack {
		t.Errorf("took %v, over the bound of 4 × %v (+%v slack)", took, deadline, slack)
	}
	t.Logf("two frozen phases (the batch, the cache lookup): %v", took)
}
