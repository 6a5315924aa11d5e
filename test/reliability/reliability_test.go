package reliability

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

const (
	// limitN per limitWindow is the FixedWindow rule whose bound the suite
	// checks window by window; the load asks for about five times as much.
	limitN      = 40
	limitWindow = 2 * time.Second
	// hangBound is the longest any request may take while Redis is failing,
	// from the configured timeouts (dialTimeout 250ms, readTimeout 200ms,
	// maxRetries 1). The session lookup has no deadline of its own: on a
	// cluster go-redis tries up to 4 nodes (MaxRedirects 3, its default),
	// each twice, with at most 7 backoffs of 64ms. The rate limiter calls
	// Redis under a readTimeout deadline, the cache under a 1s deadline. One
	// request may meet all three, plus a second of scheduling slack on a
	// busy machine. A hang shows as the 15s client timeout.
	hangBound = 4*2*(250+200)*time.Millisecond + 7*64*time.Millisecond + // session
		200*time.Millisecond + // rate limit
		time.Second + // cache
		time.Second // slack
	// recoverWithin is the generous deadline for "recovers within seconds";
	// the measured time is printed.
	recoverWithin = 30 * time.Second
)

func sidecarConfig(addrs []string) []byte {
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = strconv.Quote(a)
	}
	return []byte(fmt.Sprintf(`{
  "apiVersion": "sidecar.gatehouse.dev/v1alpha1",
  "kind": "SidecarConfig",
  "redis": [{"name": "main", "mode": "Cluster", "addrs": [%s], "dialTimeout": "250ms", "readTimeout": "200ms", "writeTimeout": "200ms", "maxRetries": 1}],
  "sessions": [{"namespace": "reliability", "name": "sessions", "redis": "main", "ttl": "1h", "sliding": true, "requireFor": ["/app/"]}],
  "rateLimits": [{"namespace": "reliability", "name": "limits", "redis": "main", "rules": [
    {"name": "fixed", "match": {"pathPrefix": "/limited/"}, "key": {}, "limit": %d, "window": %q, "algorithm": "FixedWindow", "failureMode": "Closed"},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "key": {"clientIP": true}, "limit": 1000000, "window": "1m", "algorithm": "FixedWindow", "failureMode": "Open"}
  ]}],
  "caches": [{"namespace": "reliability", "name": "cache", "redis": "main", "rules": [
    {"name": "cached", "match": {"pathPrefix": "/cached/"}, "ttl": "30s", "varyBySubject": true}
  ]}]
}`, strings.Join(quoted, ", "), limitN, limitWindow.String()))
}

// allowed says whether a request's outcome is one its policy's failure mode
// permits: degraded is true while Redis is (partly) unavailable.
func allowed(r record, degraded bool) bool {
	if r.err != nil {
		return false
	}
	ok := map[string][]int{
		"/plain/x":   {200},
		"/app/x":     {200},
		"/limited/x": {200, 429},
		"/open/x":    {200},
		"/cached/x":  {200},
	}
	if degraded {
		ok["/app/x"] = append(ok["/app/x"], 503)         // session required, Redis unreachable
		ok["/limited/x"] = append(ok["/limited/x"], 503) // failureMode Closed
		ok["/open/x"] = append(ok["/open/x"], 429)       // failureMode Open: the local fallback limiter
	}
	return slices.Contains(ok[r.path], r.status)
}

// row is one line of the printed table.
type row struct {
	scenario string
	records  []record
	lost     []record
	observed string
}

func TestReliability(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// AOF keeps sessions and counters across the full stop below, as the
	// Durable profile of a managed RedisCluster does.
	// repl-diskless-sync-delay 0: replicas otherwise wait 5s for their first
	// full sync, and a failover before it would lose everything, not just
	// the last unreplicated writes.
	cluster := redistest.StartCluster(t, "appendonly yes", "appendfsync everysec", "repl-diskless-sync-delay 0")
	waitReplicated(ctx, t, cluster)
	application := startApp(t)
	cfg := sidecarConfig(cluster.Addrs())
	a := startSidecar(t, "A", application.addr, cfg)
	b := startSidecar(t, "B", application.addr, cfg)
	sidecars := []*sidecar{a, b}

	l := &load{token: a.createSession(t, "reliability-user")}
	l.setPhase("steady")
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	l.run(loadCtx, sidecars)

	var (
		rows       []row
		phaseStart = map[string]time.Time{}
		degraded   = map[string]bool{}
		notes      = map[string]string{}
		order      []string
	)
	phase := func(name string, isDegraded bool) {
		phaseStart[name] = time.Now()
		degraded[name] = isDegraded
		order = append(order, name)
		l.setPhase(name)
	}
	probe := func() error {
		for _, s := range sidecars {
			if s.terminated.Load() {
				continue
			}
			for _, p := range paths {
				if err := probeOne(ctx, s, p, l.token); err != nil {
					return fmt.Errorf("sidecar %s %s: %w", s.name, p, err)
				}
			}
		}
		return nil
	}
	eventually(t, recoverWithin, "every path normal before the first fault", probe)
	time.Sleep(2 * time.Second) // steady load before the first fault

	// 1. Kill the primary that holds the FixedWindow counter.
	var killAt, failoverRecovered time.Time
	t.Run("kill primary", func(t *testing.T) {
		victim, replica := primaryHolding(ctx, t, cluster, "rl:{reliability/limits/fixed/*")
		phase("kill primary", true)
		killAt = time.Now()
		if err := victim.Kill(); err != nil {
			t.Fatalf("kill primary: %v", err)
		}
		promoted := eventually(t, recoverWithin, "the replica is promoted", func() error {
			cl := redis.NewClient(&redis.Options{Addr: replica.Addr(), MaxRetries: -1})
			defer cl.Close()
			role, err := cl.Do(ctx, "ROLE").Slice()
			if err != nil {
				return err
			}
			if len(role) == 0 || role[0] != "master" {
				return fmt.Errorf("role %v", role)
			}
			return nil
		})
		wctx, wcancel := context.WithTimeout(ctx, recoverWithin)
		defer wcancel()
		if err := cluster.WaitHealthy(wctx); err != nil {
			t.Fatalf("cluster after failover: %v", err)
		}
		eventually(t, recoverWithin, "every path normal after the failover", probe)
		failoverRecovered = time.Now()
		notes["kill primary"] = fmt.Sprintf("killed %s (held the counter); replica promoted after %.1fs; all paths normal %.1fs after the kill",
			victim.Addr(), promoted.Seconds(), failoverRecovered.Sub(killAt).Seconds())
		phase("steady after failover", false)
		time.Sleep(2 * time.Second)
	})

	// 2. Stop every Redis node for 5 seconds.
	t.Run("stop all Redis", func(t *testing.T) {
		phase("stop all Redis 5s", true)
		var wg sync.WaitGroup
		for _, n := range cluster.Nodes() {
			if n.Running() {
				wg.Go(func() { _ = n.Stop() })
			}
		}
		wg.Wait()
		time.Sleep(5 * time.Second) // the outage itself
		for _, n := range cluster.Nodes() {
			n.Start(t)
		}
		took := eventually(t, recoverWithin, "every path normal after Redis returned", probe)
		notes["stop all Redis 5s"] = fmt.Sprintf("all paths normal %.1fs after redis-server restarted, no sidecar restarted", took.Seconds())
		phase("steady after outage", false)
		time.Sleep(time.Second)
	})

	// 3. Corrupt sidecar A's config mid-load, twice: unparsable, then invalid.
	t.Run("corrupt config", func(t *testing.T) {
		phase("corrupt config", false)
		before, err := a.readiness()
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{
			`{"apiVersion": "sidecar.gatehouse.dev/v1alpha1", "kind": "SidecarConfig", "redis": [`,
			strings.Replace(string(cfg), `"redis": "main", "rules"`, `"redis": "missing", "rules"`, 1),
		} {
			if err := os.WriteFile(a.configPath, []byte(bad), 0o644); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "the bad config is reported", func() error {
				r, err := a.readiness()
				if err != nil {
					return err
				}
				if r.Config.LastError == "" {
					return fmt.Errorf("no lastError yet")
				}
				return nil
			})
			time.Sleep(time.Second) // load runs on the kept config
			r, err := a.readiness()
			if err != nil {
				t.Fatal(err)
			}
			if r.Config.Generation != before.Config.Generation || !slices.Equal(r.Policies, before.Policies) {
				t.Errorf("bad config changed what is in force: generation %d→%d, policies %v→%v",
					before.Config.Generation, r.Config.Generation, before.Policies, r.Policies)
			}
		}
		if err := os.WriteFile(a.configPath, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the good config is accepted again", func() error {
			r, err := a.readiness()
			if err != nil {
				return err
			}
			if r.Config.LastError != "" || r.Config.Generation != before.Config.Generation+1 {
				return fmt.Errorf("generation %d, lastError %q", r.Config.Generation, r.Config.LastError)
			}
			return nil
		})
		notes["corrupt config"] = fmt.Sprintf("truncated JSON, then an unknown redis reference: both rejected, generation %d and policies %v kept", before.Config.Generation, before.Policies)
	})

	// 4. Slow upstream, clients that hang up: nothing may stay behind.
	t.Run("client disconnects", func(t *testing.T) {
		phase("client disconnects", false)
		notes["client disconnects"] = disconnects(ctx, t, a, application)
	})

	// 5. SIGTERM sidecar B with requests in flight.
	t.Run("SIGTERM", func(t *testing.T) {
		phase("SIGTERM sidecar B", false)
		notes["SIGTERM sidecar B"] = sigterm(ctx, t, b, application)
		time.Sleep(time.Second) // A keeps serving
	})

	stopLoad()
	l.wg.Wait()
	records := l.snapshot()

	// Outcomes by scenario, and what no failure mode allows.
	byPhase := map[string][]record{}
	for _, r := range records {
		byPhase[r.phase] = append(byPhase[r.phase], r)
	}
	phases := append([]string{"steady"}, order...)
	for _, p := range phases {
		rw := row{scenario: p, records: byPhase[p], observed: notes[p]}
		for _, r := range byPhase[p] {
			lost := !allowed(r, degraded[p])
			if r.refused && r.sidecar == "B" && b.terminated.Load() && p == "SIGTERM sidecar B" {
				lost = false // connections refused after the listener closed: never accepted
			}
			if d := r.end.Sub(r.start); d > hangBound {
				lost = true
			}
			if lost {
				rw.lost = append(rw.lost, r)
			}
		}
		if degraded[p] {
			worst := map[string]time.Duration{}
			for _, r := range byPhase[p] {
				worst[r.path] = max(worst[r.path], r.end.Sub(r.start))
			}
			var slowest []string
			for _, path := range paths {
				slowest = append(slowest, fmt.Sprintf("%s %v", path, worst[path].Round(time.Millisecond)))
			}
			rw.observed = strings.TrimPrefix(rw.observed+fmt.Sprintf("; slowest (bound %v): %s", hangBound, strings.Join(slowest, ", ")), "; ")
		}
		rows = append(rows, rw)
	}
	limitRow := checkWindows(t, records, killAt, failoverRecovered)

	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-26s | %8s | %-44s | %4s | %s\n", "scenario", "requests", "outcomes (both sidecars, all paths)", "lost", "observed")
	fmt.Fprintf(&sb, "%s\n", strings.Repeat("-", 140))
	for _, rw := range rows {
		fmt.Fprintf(&sb, "%-26s | %8d | %-44s | %4d | %s\n", rw.scenario, len(rw.records), outcomes(rw.records), len(rw.lost), rw.observed)
	}
	fmt.Fprintf(&sb, "%-26s | %8d | %-44s | %4d | %s\n", limitRow.scenario, len(limitRow.records), outcomes(limitRow.records), len(limitRow.lost), limitRow.observed)
	t.Log(sb.String())
	for _, rw := range append(rows, limitRow) {
		for i, r := range rw.lost {
			if i == 5 {
				t.Errorf("%s: … %d more", rw.scenario, len(rw.lost)-5)
				break
			}
			t.Errorf("%s: not allowed: sidecar %s %s → %s (err %v) after %v", rw.scenario, r.sidecar, r.path, r.outcome(), r.err, r.end.Sub(r.start))
		}
	}
}

func outcomes(rs []record) string {
	n := map[string]int{}
	for _, r := range rs {
		n[r.outcome()]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}

// probeOne checks that one path answers as it does with Redis healthy: a
// session is accepted, limits are counted in Redis (RateLimit headers come
// only from Redis answers), the cache does not bypass.
func probeOne(ctx context.Context, s *sidecar, path, token string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.data+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case path == "/limited/x" && (resp.StatusCode == 200 || resp.StatusCode == 429):
		return nil
	case resp.StatusCode != 200:
		return fmt.Errorf("status %d", resp.StatusCode)
	case path == "/open/x" && resp.Header.Get("RateLimit-Remaining") == "":
		return fmt.Errorf("no RateLimit headers: the fallback limiter answered")
	case path == "/cached/x" && resp.Header.Get("X-Cache") == "BYPASS":
		return fmt.Errorf("cache bypassed: %s", resp.Header.Get("Cache-Status"))
	}
	return nil
}

// primaryHolding returns the primary that holds a key matching pattern, and
// its replica.
func primaryHolding(ctx context.Context, t *testing.T, c *redistest.Cluster, pattern string) (primary, replica *redistest.Server) {
	t.Helper()
	eventually(t, 10*time.Second, "find the counter key", func() error {
		for i, p := range c.Primaries {
			cl := redis.NewClient(&redis.Options{Addr: p.Addr()})
			keys, err := cl.Keys(ctx, pattern).Result()
			cl.Close()
			if err == nil && len(keys) > 0 {
				primary, replica = p, c.Replicas[i]
				return nil
			}
		}
		return fmt.Errorf("no key matches %s", pattern)
	})
	return primary, replica
}

// checkWindows attributes every admitted /limited request to its fixed
// window and checks that no window admitted more than limitN, and that no
// count was handed out twice (a reset to zero or a double count would repeat
// one). The window comes from RateLimit-Reset: the window end E is the
// multiple of the window length in (start+(k-1)s, end+k·s], where k is the
// header's rounded-up seconds and start/end bracket the moment Redis (same
// host, same clock) ran the script. The window in which the counter's
// primary died may exceed the limit by the increments it had acknowledged
// but not yet replicated; that excess is reported, and bounded by limitN
// (the promoted replica can only count from what it has, down to zero).
func checkWindows(t *testing.T, records []record, killAt, recovered time.Time) row {
	win := limitWindow.Milliseconds()
	type window struct {
		admitted int
		counts   map[int]int
	}
	windows := map[int64]*window{}
	rw := row{scenario: fmt.Sprintf("FixedWindow %d per %v", limitN, limitWindow)}
	var ambiguous int
	for _, r := range records {
		if r.path != "/limited/x" || r.status != 200 {
			continue
		}
		rw.records = append(rw.records, r)
		if r.reset < 1 || r.remaining < 0 {
			rw.lost = append(rw.lost, r) // admitted without being counted in Redis
			continue
		}
		lo := r.start.UnixMilli() + int64(r.reset-1)*1000
		hi := r.end.UnixMilli() + int64(r.reset)*1000
		e := (lo/win + 1) * win
		if e > hi || e+win <= hi {
			ambiguous++
			continue
		}
		w := windows[e]
		if w == nil {
			w = &window{counts: map[int]int{}}
			windows[e] = w
		}
		w.admitted++
		w.counts[limitN-1-r.remaining]++
	}
	var worst, failoverExcess, overWindows int
	for e, w := range windows {
		start := time.UnixMilli(e - win)
		end := time.UnixMilli(e)
		duringFailover := !killAt.IsZero() && start.Before(recovered) && end.After(killAt)
		worst = max(worst, w.admitted)
		if duringFailover {
			failoverExcess = max(failoverExcess, w.admitted-limitN)
			if w.admitted > 2*limitN {
				overWindows++
			}
			continue
		}
		dup := 0
		for _, n := range w.counts {
			dup += n - 1
		}
		if w.admitted > limitN || dup > 0 {
			overWindows++
			t.Errorf("window ending %s admitted %d (limit %d), %d counts handed out twice", end.Format("15:04:05.000"), w.admitted, limitN, dup)
		}
	}
	if overWindows > 0 {
		t.Errorf("%d windows broke the limit", overWindows)
	}
	if len(windows) < 4 {
		t.Errorf("only %d windows had admissions: the load did not exercise the limit", len(windows))
	}
	rw.observed = fmt.Sprintf("%d windows checked (%d requests too slow to attribute); most admitted in one window %d; failover window excess %d (unreplicated increments; bound %d)",
		len(windows), ambiguous, worst, max(0, failoverExcess), limitN)
	return rw
}

// disconnects sends requests to a slow app and hangs up, then checks that the
// sidecar cancels them upstream and returns to its goroutine and descriptor
// counts.
func disconnects(ctx context.Context, t *testing.T, s *sidecar, application *app) string {
	t.Helper()
	const slow, drip = 30, 30
	g0, err := s.goroutines()
	if err != nil {
		t.Fatal(err)
	}
	f0, err := s.fds()
	if err != nil {
		t.Fatal(err)
	}
	hangUp, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// A client of its own: hanging up closes these connections, not the load's.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	for i := range slow + drip {
		wg.Go(func() {
			path := "/plain/slow?ms=20000"
			if i >= slow {
				path = "/plain/drip"
			}
			req, _ := http.NewRequestWithContext(hangUp, http.MethodGet, "http://"+s.data+path, nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			_, _ = resp.Body.Read(make([]byte, 1))
			<-hangUp.Done()
		})
	}
	eventually(t, 20*time.Second, "every slow request reached the app", func() error {
		if n := application.inflight.Load(); n < slow+drip {
			return fmt.Errorf("%d in the app", n)
		}
		return nil
	})
	gPeak, _ := s.goroutines()
	fPeak, _ := s.fds()
	cancel()
	wg.Wait()
	client.CloseIdleConnections()
	eventually(t, 20*time.Second, "the sidecar cancels abandoned upstream requests", func() error {
		if n := application.inflight.Load(); n != 0 {
			return fmt.Errorf("%d still running in the app", n)
		}
		return nil
	})
	// The load keeps running through this sidecar: a few of its requests
	// may be in flight at either count; a leak would be one per hang-up.
	const slack = 15
	var g1, f1 int
	eventually(t, 20*time.Second, "goroutines and descriptors back to their level", func() error {
		var err error
		if g1, err = s.goroutines(); err != nil {
			return err
		}
		if f1, err = s.fds(); err != nil {
			return err
		}
		if g1 > g0+slack || f1 > f0+slack {
			return fmt.Errorf("goroutines %d (before %d), fds %d (before %d)", g1, g0, f1, f0)
		}
		return nil
	})
	if gPeak < g0+slow+drip {
		t.Errorf("goroutines peaked at %d from %d: the hung-up requests were not all in the sidecar", gPeak, g0)
	}
	return fmt.Sprintf("%d slow + %d dripping responses abandoned: app handlers cancelled; goroutines %d→%d→%d, fds %d→%d→%d",
		slow, drip, g0, gPeak, g1, f0, fPeak, f1)
}

// sigterm terminates s while requests are in flight: each must complete.
func sigterm(ctx context.Context, t *testing.T, s *sidecar, application *app) string {
	t.Helper()
	const inflight = 20
	base := application.inflight.Load()
	results := make(chan int, inflight)
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 30 * time.Second}
	for range inflight {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.data+"/plain/slow?ms=1500", nil)
			resp, err := client.Do(req)
			if err != nil {
				results <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	eventually(t, 20*time.Second, "the requests reached the app", func() error {
		if n := application.inflight.Load() - base; n < inflight {
			return fmt.Errorf("%d in the app", n)
		}
		return nil
	})
	s.terminated.Store(true)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	completed := 0
	for range inflight {
		if <-results == http.StatusOK {
			completed++
		}
	}
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("sidecar B did not exit after SIGTERM")
	}
	if completed != inflight {
		t.Errorf("%d of %d in-flight requests completed after SIGTERM", completed, inflight)
	}
	exit := "exit 0"
	if s.exitErr != nil {
		exit = s.exitErr.Error()
		t.Errorf("sidecar B after SIGTERM: %v (want exit 0)", s.exitErr)
	}
	return fmt.Sprintf("%d/%d in-flight 1.5s requests completed with 200; %s; later connections refused (not accepted)", completed, inflight, exit)
}

// waitReplicated waits until every replica's link to its primary is up, so
// a failover promotes a replica that holds the data.
func waitReplicated(ctx context.Context, t *testing.T, c *redistest.Cluster) {
	t.Helper()
	for _, r := range c.Replicas {
		eventually(t, recoverWithin, "replica "+r.Addr()+" in sync", func() error {
			cl := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
			defer cl.Close()
			info, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("replication link down")
			}
			return nil
		})
	}
}
