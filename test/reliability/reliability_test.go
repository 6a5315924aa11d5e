package reliability

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
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
	// readTimeout is every sidecar's Redis readTimeout: the request
	// deadline of the access layer.
	readTimeout = 200 * time.Millisecond
	// requestBound is the documented bound (docs/reliability.md) on how
	// long one request waits for Redis, whatever Redis does: one deadline
	// for each phase a request can have, the session lookup, the rate-limit
	// decision, the cache lookup and the cache store (or its invalidation).
	requestBound = 4 * readTimeout
	// slack is what a loaded two-core machine adds to a request (the app
	// answers at once); a hang shows as the 15 s client timeout.
	slack = time.Second
	// promotionBound is the acceptance bound: every sidecar serves normally
	// again within 1 s of the replica's promotion.
	promotionBound = time.Second
	// settle is how long a failover scenario lasts after every sidecar
	// answered normally again.
	settle = 1500 * time.Millisecond
	// recoverWithin is the generous deadline for waits; measured times are
	// printed.
	recoverWithin = 30 * time.Second
)

func redisJSON(addrs []string) string {
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf(`"redis": [{"name": "main", "mode": "Cluster", "addrs": [%s], "dialTimeout": "250ms", "readTimeout": %q, "writeTimeout": "200ms", "maxRetries": 1}]`,
		strings.Join(quoted, ", "), readTimeout.String())
}

func doc(addrs []string, policies string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion": "sidecar.gatehouse.dev/v1alpha1", "kind": "SidecarConfig", %s, %s}`, redisJSON(addrs), policies))
}

// allConfig is the config of sidecars A and B: all three features.
func allConfig(addrs []string) []byte {
	return doc(addrs, fmt.Sprintf(`
  "sessions": [{"namespace": "reliability", "name": "sessions", "redis": "main", "ttl": "1h", "sliding": true, "requireFor": ["/app/"]}],
  "rateLimits": [{"namespace": "reliability", "name": "limits", "redis": "main", "rules": [
    {"name": "fixed", "match": {"pathPrefix": "/limited/"}, "key": {}, "limit": %d, "window": %q, "algorithm": "FixedWindow", "failureMode": "Closed"},
    {"name": "open", "match": {"pathPrefix": "/open/"}, "key": {"clientIP": true}, "limit": 1000000, "window": "1m", "algorithm": "FixedWindow", "failureMode": "Open"}
  ]}],
  "caches": [{"namespace": "reliability", "name": "cache", "redis": "main", "rules": [
    {"name": "cached", "match": {"pathPrefix": "/cached/"}, "mode": "Override", "ttl": "30s", "varyBySubject": true}
  ]}]`, limitN, limitWindow.String()))
}

// sessionOnly (sidecar S), rateLimitOnly (R) and cacheOnly (C1, C2) each
// run one feature.
func sessionOnly(addrs []string) []byte {
	return doc(addrs, `"sessions": [{"namespace": "reliability", "name": "s-only", "redis": "main", "ttl": "1h", "sliding": true, "requireFor": ["/app/"]}]`)
}

func rateLimitOnly(addrs []string) []byte {
	return doc(addrs, `"rateLimits": [{"namespace": "reliability", "name": "r-only", "redis": "main", "rules": [
    {"name": "tenant", "match": {"pathPrefix": "/limited/"}, "key": {"header": "X-Tenant"}, "limit": 1000000, "window": "1m", "algorithm": "FixedWindow", "failureMode": "Closed"}]}]`)
}

func cacheOnly(addrs []string) []byte {
	return doc(addrs, `"caches": [{"namespace": "reliability", "name": "pages", "redis": "main",
    "rules": [{"name": "pages", "match": {"pathPrefix": "/pages/"}, "mode": "Override", "ttl": "30s"}],
    "invalidate": [{"name": "writes", "match": {"pathPrefix": "/pages/"}, "requestPath": true}],
    "inProcess": {"maxEntries": 100, "maxBytes": 1048576}}]`)
}

// kinds are the sidecar kinds of the table, by sidecar name.
var kinds = map[string]string{"A": "all three", "B": "all three", "S": "session only", "R": "rate limit only", "C1": "cache only", "C2": "cache only"}

var kindOrder = []string{"all three", "session only", "rate limit only", "cache only"}

// normal says whether a record is what its sidecar answers with Redis
// healthy: a session accepted, a limit counted in Redis (RateLimit headers
// come only from Redis answers), a cache answer that did not bypass.
func normal(r record) bool {
	if r.err != nil {
		return false
	}
	switch {
	case r.path == "/v1/sessions":
		return r.status == http.StatusCreated
	case r.method == http.MethodPut:
		return r.status == http.StatusOK
	case r.sidecar == "S" || r.path == "/app/x":
		return r.status == http.StatusOK
	case r.sidecar == "R":
		return r.status == http.StatusOK && r.remaining >= 0
	case strings.HasPrefix(r.path, "/pages/"), r.path == "/cached/x":
		return r.status == http.StatusOK && r.xcache != "BYPASS"
	case r.path == "/limited/x":
		return (r.status == http.StatusOK || r.status == http.StatusTooManyRequests) && r.remaining >= 0
	case r.path == "/open/x":
		return r.status == http.StatusOK && r.remaining >= 0
	}
	return r.status == http.StatusOK
}

// allowed says whether a record's outcome is one its policy's failure mode
// permits: degraded is true while Redis is (partly) unavailable.
func allowed(r record, degraded bool) bool {
	if r.err != nil {
		return false
	}
	ok := []int{http.StatusOK}
	switch {
	case r.path == "/v1/sessions":
		ok = []int{http.StatusCreated}
	case r.path == "/limited/x" && r.sidecar != "R":
		ok = append(ok, http.StatusTooManyRequests)
	}
	if degraded {
		switch r.path {
		case "/v1/sessions", "/app/x", "/limited/x":
			ok = append(ok, http.StatusServiceUnavailable) // session required, or failureMode Closed
		case "/open/x":
			ok = append(ok, http.StatusTooManyRequests) // failureMode Open: the local fallback limiter
		}
	}
	return slices.Contains(ok, r.status)
}

// row is one line of the printed table.
type row struct {
	scenario string
	kind     string
	records  []record
	lost     []record
	observed string
	// recovered is the time from the promotion to the last answer that was
	// not normal (negative: none after the promotion); unset without one.
	recovered *time.Duration
	bounded   bool
	slowest   time.Duration
	stale     int
}

// fault is a scenario that ends with Redis serving again: a replica
// promoted (bounded: promotionBound) or every node restarted (not bounded:
// the cluster itself needs about two seconds to agree it is healthy).
type fault struct {
	name                   string
	start, promoted, ended time.Time
	bounded                bool
}

func TestReliability(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// AOF keeps sessions and counters across the full stop below, as the
	// Durable profile of a managed RedisCluster does.
	// repl-diskless-sync-delay 0: replicas otherwise wait 5s for their first
	// full sync, and a failover before it would lose everything, not just
	// the last unreplicated writes.
	cluster := redistest.StartCluster(t, "appendonly yes", "appendfsync everysec", "repl-diskless-sync-delay 0")
	waitReplicated(ctx, t, cluster)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	defer cc.Close()
	application := startApp(t)
	addrs := cluster.Addrs()
	a := startSidecar(t, "A", application.addr, allConfig(addrs))
	b := startSidecar(t, "B", application.addr, allConfig(addrs))
	so := startSidecar(t, "S", application.addr, sessionOnly(addrs))
	ro := startSidecar(t, "R", application.addr, rateLimitOnly(addrs))
	c1 := startSidecar(t, "C1", application.addr, cacheOnly(addrs))
	c2 := startSidecar(t, "C2", application.addr, cacheOnly(addrs))

	// The victim is the primary holding A and B's FixedWindow counter; the
	// single-feature sidecars get keys on it too, so each of them depends
	// on the shard that fails.
	touch := worker{s: a, method: http.MethodGet, path: "/limited/x"}
	l := &load{}
	l.setPhase("setup")
	l.one(ctx, touch)
	victim, replica := primaryHolding(ctx, t, cluster, "rl:{reliability/limits/fixed/*")
	onVictim := func(key string) bool {
		n, err := cc.MasterForKey(ctx, key)
		return err == nil && n.Options().Addr == victim.Addr()
	}
	sessionToken := sessionOn(t, so, onVictim)
	tenant := tenantOn(ctx, t, l, ro, victim)
	page := ""
	for i := 0; page == "" && i < 1000; i++ {
		if p := fmt.Sprintf("/pages/item-%d", i); onVictim(cacheTag("reliability", "pages", p)) {
			page = p
		}
	}
	channelOnVictim := onVictim("cache:{reliability/pages}:inv")
	tokenAB := a.createSession(t, "reliability-user")

	var workers []worker
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	for _, s := range []*sidecar{a, b} {
		for _, p := range []string{"/plain/x", "/app/x", "/limited/x", "/open/x", "/cached/x"} {
			workers = append(workers, worker{s: s, method: http.MethodGet, path: p, header: bearer(tokenAB)})
		}
	}
	probes := append([]worker{}, workers...)
	single := []worker{
		{s: so, method: http.MethodGet, path: "/app/x", header: bearer(sessionToken)},
		{s: ro, method: http.MethodGet, path: "/limited/x", header: http.Header{"X-Tenant": {tenant}}},
		{s: c1, method: http.MethodGet, path: page},
		{s: c2, method: http.MethodGet, path: page},
	}
	probes = append(probes, single...)
	workers = append(workers, single...)
	// Writes during every scenario: sessions created on S (subjects spread
	// over the shards), a page rewritten through C1 and C2 in turn.
	workers = append(workers,
		worker{s: so, method: http.MethodPost, path: "/v1/sessions", admin: true, body: `{"subject": "writer-%d", "ttl": "1h"}`, every: 50 * time.Millisecond},
		worker{s: c1, method: http.MethodPut, path: page, every: 400 * time.Millisecond},
		worker{s: c2, method: http.MethodPut, path: page, every: 400 * time.Millisecond},
	)
	probe := func() error {
		for _, w := range probes {
			if w.s.terminated.Load() {
				continue
			}
			if r := l.one(ctx, w); !normal(r) {
				return fmt.Errorf("sidecar %s %s %s: %s (X-Cache %q, RateLimit-Remaining %d)", w.s.name, w.method, w.path, r.outcome(), r.xcache, r.remaining)
			}
		}
		return nil
	}
	eventually(t, recoverWithin, "every sidecar normal before the first fault", probe)

	l.setPhase("steady")
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	l.run(loadCtx, workers)

	var (
		degraded = map[string]bool{}
		notes    = map[string]string{}
		order    []string
		faults   []fault
	)
	phase := func(name string, isDegraded bool) {
		degraded[name] = isDegraded
		order = append(order, name)
		l.setPhase(name)
	}
	// failover runs one promotion scenario: fail the node, wait for the
	// replica's promotion and for every sidecar to be normal again.
	failover := func(name string, fail func() error, primary, replica *redistest.Server) fault {
		t.Helper()
		phase(name, true)
		f := fault{name: name, start: time.Now(), bounded: true}
		if err := fail(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f.promoted = f.start.Add(eventually(t, recoverWithin, "the replica is promoted", func() error { return isPrimary(ctx, replica) }))
		eventually(t, recoverWithin, "every sidecar normal after the promotion", probe)
		// The scenario goes on a little after the probes passed, so a
		// hiccup of the freshly promoted node counts against the recovery
		// time rather than against the steady phase that follows.
		time.Sleep(settle)
		f.ended = time.Now()
		notes[name] = fmt.Sprintf("%s failed; replica %s promoted after %.1fs", primary.Addr(), replica.Addr(), f.promoted.Sub(f.start).Seconds())
		return f
	}

	time.Sleep(2 * time.Second) // steady load before the first fault

	// 1. Kill the primary that holds the keys of every sidecar.
	t.Run("kill primary", func(t *testing.T) {
		faults = append(faults, failover("kill primary", victim.Kill, victim, replica))
		phase("steady after the kill", false)
		time.Sleep(2 * time.Second)
	})

	// 2. Freeze (SIGSTOP) the promoted replica once the killed node is back
	// as its replica: the frozen node keeps its connections open and answers
	// nothing, until the cluster fails it over too.
	t.Run("freeze primary", func(t *testing.T) {
		// The killed node's return is a disturbance of its own: it loads
		// its AOF and takes a full sync from the promoted replica, whose
		// fork can stall it on a loaded machine. Requests may apply their
		// failure mode meanwhile, within the bound.
		phase("killed node rejoins", true)
		victim.Start(t)
		wctx, wcancel := context.WithTimeout(ctx, recoverWithin)
		defer wcancel()
		if err := cluster.WaitHealthy(wctx); err != nil {
			t.Fatalf("cluster after the killed node restarted: %v", err)
		}
		waitReplica(ctx, t, victim)
		notes["killed node rejoins"] = victim.Addr() + " restarted from its AOF; rejoined as a replica"
		phase("steady after the rejoin", false)
		time.Sleep(2 * time.Second)
		f := failover("freeze primary", replica.Freeze, replica, victim)
		time.Sleep(time.Second) // the frozen node stays frozen after its failover
		faults = append(faults, f)
		// Like the killed node's return, the thaw is a disturbance of its
		// own: the old primary learns it was replaced and resyncs.
		phase("frozen node thawed", true)
		if err := replica.Thaw(); err != nil {
			t.Fatal(err)
		}
		if err := cluster.WaitHealthy(wctx); err != nil {
			t.Fatalf("cluster after the thaw: %v", err)
		}
		waitReplica(ctx, t, replica)
		notes["frozen node thawed"] = replica.Addr() + " thawed after its failover; rejoined as a replica"
		phase("steady after the freeze", false)
		time.Sleep(2 * time.Second)
	})

	// 3. Stop every Redis node for 5 seconds, then start them again.
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
		restarted := time.Now()
		took := eventually(t, recoverWithin, "every sidecar normal after Redis returned", probe)
		faults = append(faults, fault{name: "stop all Redis 5s", start: restarted.Add(-5 * time.Second), promoted: restarted, ended: time.Now()})
		notes["stop all Redis 5s"] = fmt.Sprintf("every sidecar normal %.1fs after redis-server restarted, no sidecar restarted", took.Seconds())
		phase("steady after the outage", false)
		time.Sleep(time.Second)
	})

	// 4. Corrupt sidecar A's config mid-load, twice: unparsable, then invalid.
	t.Run("corrupt config", func(t *testing.T) {
		phase("corrupt config", false)
		notes["corrupt config"] = corruptConfig(t, a, allConfig(addrs))
	})

	// 5. Slow upstream, clients that hang up: nothing may stay behind.
	t.Run("client disconnects", func(t *testing.T) {
		phase("client disconnects", false)
		notes["client disconnects"] = disconnects(ctx, t, a, application)
	})

	// 6. SIGTERM sidecar B with requests in flight.
	t.Run("SIGTERM", func(t *testing.T) {
		phase("SIGTERM sidecar B", false)
		notes["SIGTERM sidecar B"] = sigterm(ctx, t, b, application)
		time.Sleep(time.Second) // A keeps serving
	})

	stopLoad()
	l.wg.Wait()
	records := l.snapshot()

	rows := tabulate(records, append([]string{"steady"}, order...), degraded, notes, faults, b)
	limitRow := checkWindows(t, records, faults)
	sessionRow := checkSessions(ctx, t, so, records)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nvictim shard %s (A/B's counter, S's session, R's tenant, page %s; the pages' broadcast channel %s)\n",
		victim.Addr(), page, map[bool]string{true: "on it too", false: "on another shard"}[channelOnVictim])
	fmt.Fprintf(&sb, "%-24s | %-15s | %8s | %-36s | %4s | %-22s | %-17s | %5s | %s\n", "scenario", "sidecar", "requests", "outcomes", "lost",
		"normal again", "max latency", "stale", "observed")
	fmt.Fprintf(&sb, "%s\n", strings.Repeat("-", 170))
	for _, rw := range append(rows, limitRow, sessionRow) {
		rec := ""
		switch {
		case rw.recovered != nil && rw.bounded:
			rec = fmt.Sprintf("%v (bound %v)", max(*rw.recovered, 0).Round(time.Millisecond), promotionBound)
		case rw.recovered != nil:
			rec = fmt.Sprintf("%v after restart", max(*rw.recovered, 0).Round(time.Millisecond))
		}
		lat := ""
		if rw.slowest > 0 {
			lat = fmt.Sprintf("%v / %v", rw.slowest.Round(time.Millisecond), requestBound)
		}
		fmt.Fprintf(&sb, "%-24s | %-15s | %8d | %-36s | %4d | %-22s | %-17s | %5d | %s\n",
			rw.scenario, rw.kind, len(rw.records), outcomes(rw.records), len(rw.lost), rec, lat, rw.stale, rw.observed)
	}
	t.Log(sb.String())
	for _, rw := range append(rows, limitRow, sessionRow) {
		for i, r := range rw.lost {
			if i == 5 {
				t.Errorf("%s %s: … %d more", rw.scenario, rw.kind, len(rw.lost)-5)
				break
			}
			t.Errorf("%s %s: not allowed: sidecar %s %s %s → %s (err %v) after %v", rw.scenario, rw.kind, r.sidecar, r.method, r.path, r.outcome(), r.err, r.end.Sub(r.start))
		}
		if rw.recovered != nil && rw.bounded && *rw.recovered > promotionBound {
			t.Errorf("%s %s: normal %v after the promotion, bound %v", rw.scenario, rw.kind, rw.recovered.Round(time.Millisecond), promotionBound)
		}
		if rw.stale > 0 {
			t.Errorf("%s %s: %d stale reads after a write had returned", rw.scenario, rw.kind, rw.stale)
		}
	}
}

// describe names what a record got, for the table.
func (r record) describe() string {
	d := fmt.Sprintf("sidecar %s %s %s → %s", r.sidecar, r.method, r.path, r.outcome())
	if r.cacheStatus != "" {
		d += " (" + r.cacheStatus + ")"
	}
	return d
}

// recordKey identifies a record.
type recordKey struct {
	sidecar, method, path string
	start                 int64
}

func (r record) key() recordKey { return recordKey{r.sidecar, r.method, r.path, r.start.UnixNano()} }

// tabulate groups the records by scenario and sidecar kind and judges them.
func tabulate(records []record, phases []string, degraded map[string]bool, notes map[string]string, faults []fault, b *sidecar) []row {
	type cell struct{ phase, kind string }
	by := map[cell][]record{}
	for _, r := range records {
		by[cell{r.phase, kinds[r.sidecar]}] = append(by[cell{r.phase, kinds[r.sidecar]}], r)
	}
	promotedAt := map[string]fault{}
	for _, f := range faults {
		promotedAt[f.name] = f
	}
	stale := staleReads(records)
	var writes []record
	for _, r := range records {
		if r.method == http.MethodPut {
			writes = append(writes, r)
		}
	}
	var rows []row
	for _, p := range phases {
		for i, k := range kindOrder {
			rs := by[cell{p, k}]
			rw := row{scenario: p, kind: k, records: rs}
			if i == 0 {
				rw.observed = notes[p]
			}
			lastAbnormal := time.Time{}
			var last record
			for _, r := range rs {
				d := r.end.Sub(r.start)
				rw.slowest = max(rw.slowest, d)
				lost := !allowed(r, degraded[p] || degraded[r.endPhase]) || d > requestBound+slack
				if r.refused && r.sidecar == "B" && b.terminated.Load() && p == "SIGTERM sidecar B" {
					lost = false // connections refused after the listener closed: never accepted
				}
				if lost {
					rw.lost = append(rw.lost, r)
				}
				if !normal(r) && !duringWrite(r, writes) && r.end.After(lastAbnormal) {
					lastAbnormal, last = r.end, r
				}
				if stale[r.key()] {
					rw.stale++
				}
			}
			f, ok := promotedAt[p]
			rw.bounded = f.bounded
			if ok && !lastAbnormal.IsZero() {
				d := lastAbnormal.Sub(f.promoted)
				rw.recovered = &d
				if d > 0 {
					rw.observed = strings.TrimPrefix(rw.observed+"; last degraded answer: "+last.describe(), "; ")
				}
			} else if ok {
				d := time.Duration(-1)
				rw.recovered = &d
			}
			rows = append(rows, rw)
		}
	}
	return rows
}

// duringWrite reports whether r bypassed the cache only because a write of
// its path was being invalidated at the same moment: that is the cache
// working, not degraded. The window is widened by 10 ms for the other
// replica, which bypasses from the announcement to the completion.
func duringWrite(r record, writes []record) bool {
	if !strings.Contains(r.cacheStatus, "invalidation-pending") {
		return false
	}
	for _, w := range writes {
		if w.path == r.path && w.start.Before(r.end) && w.end.Add(10*time.Millisecond).After(r.start) {
			return true
		}
	}
	return false
}

// staleReads finds the page reads that answered an older version than a
// write that had returned before the read was sent.
func staleReads(records []record) map[recordKey]bool {
	type write struct {
		end     time.Time
		version int
	}
	var writes []write
	for _, r := range records {
		if r.method == http.MethodPut && r.status == http.StatusOK {
			writes = append(writes, write{r.end, r.version})
		}
	}
	slices.SortFunc(writes, func(a, b write) int { return a.end.Compare(b.end) })
	out := map[recordKey]bool{}
	for _, r := range records {
		if r.method != http.MethodGet || r.version < 0 {
			continue
		}
		newest := -1
		for _, w := range writes {
			if !w.end.Before(r.start) {
				break
			}
			newest = max(newest, w.version)
		}
		if r.version < newest {
			out[r.key()] = true
		}
	}
	return out
}

// sessionOn creates sessions on s until one lives on the shard onVictim
// names; the session key's hash tag is the subject's bucket, the first two
// bytes of the token id (docs/sessions.md).
func sessionOn(t *testing.T, s *sidecar, onVictim func(string) bool) string {
	t.Helper()
	for i := range 2000 {
		tok := s.createSession(t, fmt.Sprintf("victim-%d", i))
		id, _, _ := strings.Cut(strings.TrimPrefix(tok, "gh2."), ".")
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(raw) != 16 {
			t.Fatalf("token %q: id %v", tok, err)
		}
		if onVictim(fmt.Sprintf("{%04x}", binary.BigEndian.Uint16(raw[:2]))) {
			return tok
		}
	}
	t.Fatal("no session landed on the victim")
	return ""
}

// tenantOn finds an X-Tenant value whose counter R keeps on the victim, by
// asking R and looking for the new key there.
func tenantOn(ctx context.Context, t *testing.T, l *load, r *sidecar, victim *redistest.Server) string {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: victim.Addr()})
	defer cl.Close()
	const pattern = "rl:{reliability/r-only/tenant/*"
	for i := range 200 {
		before, _ := cl.Keys(ctx, pattern).Result()
		tenant := fmt.Sprintf("tenant-%d", i)
		l.one(ctx, worker{s: r, method: http.MethodGet, path: "/limited/x", header: http.Header{"X-Tenant": {tenant}}})
		if after, _ := cl.Keys(ctx, pattern).Result(); len(after) > len(before) {
			return tenant
		}
	}
	t.Fatal("no tenant counter landed on the victim")
	return ""
}

// cacheTag is the key a cache policy keeps a path's generation under
// (docs/caching.md): its slot is the slot of every key of the path.
func cacheTag(ns, policy, path string) string {
	sum := sha256.Sum256([]byte(path))
	return "cache:{" + ns + "/" + policy + "/" + strconv.FormatInt(int64(sum[0]), 16) + "}:p:" + hex.EncodeToString(sum[:8])
}

func isPrimary(ctx context.Context, s *redistest.Server) error {
	cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer cl.Close()
	role, err := cl.Do(ctx, "ROLE").Slice()
	if err != nil {
		return err
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("role %v", role)
	}
	return nil
}

// checkSessions checks that every session whose create answered 201 — on
// a healthy cluster, or during a fault — still resolves after all of them:
// acknowledged by a replica before the kill and the freeze, kept by the AOF
// across the full stop.
func checkSessions(ctx context.Context, t *testing.T, s *sidecar, records []record) row {
	rw := row{scenario: "sessions created", kind: "session only"}
	check := &load{}
	check.setPhase("check")
	for _, r := range records {
		if r.token == "" {
			continue
		}
		rw.records = append(rw.records, r)
		if got := check.one(ctx, worker{s: s, method: http.MethodGet, path: "/app/x", header: http.Header{"Authorization": {"Bearer " + r.token}}}); got.status != http.StatusOK {
			rw.lost = append(rw.lost, r)
		}
	}
	if len(rw.records) < 100 {
		t.Errorf("only %d sessions were created", len(rw.records))
	}
	rw.observed = fmt.Sprintf("%d sessions created during the run (every scenario), %d of them not found at the end", len(rw.records), len(rw.lost))
	return rw
}

// corruptConfig overwrites s's config with truncated JSON, then with a
// document that parses but fails validation; each must be reported and
// leave the config in force. Then the good file is written back.
func corruptConfig(t *testing.T, s *sidecar, good []byte) string {
	before, err := s.readiness()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"apiVersion": "sidecar.gatehouse.dev/v1alpha1", "kind": "SidecarConfig", "redis": [`,
		strings.Replace(string(good), `"redis": "main", "rules"`, `"redis": "missing", "rules"`, 1),
	} {
		if err := os.WriteFile(s.configPath, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the bad config is reported", func() error {
			r, err := s.readiness()
			if err != nil {
				return err
			}
			if r.Config.LastError == "" {
				return fmt.Errorf("no lastError yet")
			}
			return nil
		})
		time.Sleep(time.Second) // load runs on the kept config
		r, err := s.readiness()
		if err != nil {
			t.Fatal(err)
		}
		if r.Config.Generation != before.Config.Generation || !slices.Equal(r.Policies, before.Policies) {
			t.Errorf("bad config changed what is in force: generation %d→%d, policies %v→%v",
				before.Config.Generation, r.Config.Generation, before.Policies, r.Policies)
		}
	}
	if err := os.WriteFile(s.configPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the good config is accepted again", func() error {
		r, err := s.readiness()
		if err != nil {
			return err
		}
		if r.Config.LastError != "" || r.Config.Generation != before.Config.Generation+1 {
			return fmt.Errorf("generation %d, lastError %q", r.Config.Generation, r.Config.LastError)
		}
		return nil
	})
	return fmt.Sprintf("truncated JSON, then an unknown redis reference: both rejected, generation %d and policies %v kept", before.Config.Generation, before.Policies)
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
func checkWindows(t *testing.T, records []record, faults []fault) row {
	win := limitWindow.Milliseconds()
	type window struct {
		admitted int
		counts   map[int]int
	}
	windows := map[int64]*window{}
	rw := row{scenario: fmt.Sprintf("FixedWindow %d per %v", limitN, limitWindow), kind: "all three"}
	var ambiguous int
	for _, r := range records {
		if r.path != "/limited/x" || r.status != 200 || (r.sidecar != "A" && r.sidecar != "B") {
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
		duringFailover := false
		for _, f := range faults {
			duringFailover = duringFailover || (start.Before(f.ended) && end.After(f.start))
		}
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

// waitReplica waits until a node that came back reports itself a replica
// with its link to the primary up: a node that rejoins first claims its old
// role, and only the resync afterwards ends its return.
func waitReplica(ctx context.Context, t *testing.T, s *redistest.Server) {
	t.Helper()
	eventually(t, recoverWithin, s.Addr()+" back as a replica", func() error {
		info, err := redistest.Do(ctx, s.Addr(), "INFO", "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("not a synced replica yet")
		}
		return nil
	})
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
