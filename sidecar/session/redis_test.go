package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// A frozen Redis (SIGSTOP: connections accepted, nothing answered) is the
// worst case for a lookup. The in-process tier serves the session it
// resolved until its revocation subscription has been silent for its lease
// (no sidecar can revoke through a frozen Redis meanwhile); then a
// protected path answers 503 within the connection's read timeout (the
// request deadline), and while the node's breaker is open the next lookups
// do not wait for Redis at all.
func TestLookupIsBoundedWhenRedisFreezes(t *testing.T) {
	srv := redistest.StartStandalone(t)
	b := &backend{name: "standalone", conn: conn(t, redisconn.Standalone, srv.Addr())}
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Minute), Sliding: true})
	tok := h.create("ivan", nil, 0)
	if w := h.get("/api", tok); w.Code != http.StatusOK {
		t.Fatalf("lookup: %d %s", w.Code, w.Body)
	}
	if err := srv.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Thaw() })
	frozen := time.Now()
	var code int
	for {
		start := time.Now()
		code = h.get("/api", tok).Code
		// The deadline plus a second of slack for a loaded machine.
		if took := time.Since(start); took > shortTimeout+time.Second {
			t.Fatalf("lookup with Redis frozen took %v, deadline %v", took, shortTimeout)
		}
		if code != http.StatusOK {
			break
		}
		// The lease (750ms) and the subscription's ping and read, with slack.
		if time.Since(frozen) > 5*time.Second {
			t.Fatal("the tier still serves 5s after Redis froze")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("lookup with Redis frozen: %d, want 503", code)
	}
	errorsBefore := h.lookups(resultError)
	start := time.Now()
	for range 10 {
		if w := h.get("/api", tok); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("lookup during the breaker's cooldown: %d, want 503", w.Code)
		}
	}
	if got := h.lookups(resultError) - errorsBefore; got != 10 {
		t.Errorf("error lookups = %v, want 10", got)
	}
	// Ten lookups in the cooldown wait at most one probe's deadline.
	if took := time.Since(start); took > 2*shortTimeout+time.Second {
		t.Errorf("10 lookups during the cooldown took %v", took)
	}
	if err := srv.Thaw(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "lookups succeed after the thaw", func() bool { return h.get("/api", tok).Code == http.StatusOK })
}

// subjectsOn finds n subjects whose sessions live on the primary victim.
func subjectsOn(t *testing.T, h *harness, rdb *redis.ClusterClient, victim *redistest.Server, n int) []string {
	t.Helper()
	var subjects []string
	for i := 0; len(subjects) < n && i < 2000; i++ {
		subject := fmt.Sprintf("user-%d", i)
		node, err := rdb.MasterForKey(context.Background(), h.m.indexKey(subject))
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == victim.Addr() {
			subjects = append(subjects, subject)
		}
	}
	if len(subjects) < n {
		t.Fatalf("found %d subjects on the victim, want %d", len(subjects), n)
	}
	return subjects
}

// Sessions whose create returned were acknowledged by a replica (WAIT), so
// killing their primary loses none of them: after the failover every one
// resolves through the promoted replica.
func TestSessionsSurviveTheirPrimarysFailover(t *testing.T) {
	cl := redistest.StartCluster(t)
	b := &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...)}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Hour), Sliding: true})
	victim := cl.Primaries[0]
	var toks []string
	for _, subject := range subjectsOn(t, h, rdb, victim, 20) {
		toks = append(toks, h.create(subject, nil, 0))
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the first session resolves after the failover", func() bool {
		return h.get("/api", toks[0]).Code == http.StatusOK
	})
	for i, tok := range toks {
		if w := h.get("/api", tok); w.Code != http.StatusOK {
			t.Errorf("session %d after its primary failed over: %d", i, w.Code)
		}
	}
}

// Revocations wait for a replica (WAIT) like creates, so a failover does
// not bring a revoked session back: one revoked by token and every session
// of a subject revoked together, all on the primary that is then killed,
// stay revoked on the promoted replica, while the others still resolve.
// (Replication is asynchronous: without WAIT the promoted replica could
// hold a session whose DEL its primary had acknowledged. On loopback the
// replica usually keeps up without it too, so this pins the outcome, not
// the race.)
func TestRevocationsSurviveTheirPrimarysFailover(t *testing.T) {
	cl := redistest.StartCluster(t)
	b := &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...)}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Hour), Sliding: true})
	victim := cl.Primaries[0]
	subjects := subjectsOn(t, h, rdb, victim, 3)
	kept := h.create(subjects[0], nil, 0)
	revoked := h.create(subjects[0], nil, 0)
	all := []string{h.create(subjects[1], nil, 0), h.create(subjects[1], nil, 0)}
	other := h.create(subjects[2], nil, 0)
	if w := h.adminDo(http.MethodDelete, "/v1/sessions", revoked, nil); w.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	if w := h.adminDo(http.MethodDelete, "/v1/subjects/"+subjects[1]+"/sessions", "", nil); w.Code != http.StatusOK {
		t.Fatalf("revoke-all: %d %s", w.Code, w.Body)
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a kept session resolves after the failover", func() bool {
		return h.get("/api", kept).Code == http.StatusOK
	})
	if w := h.get("/api", other); w.Code != http.StatusOK {
		t.Errorf("a session never revoked: %d after the failover, want 200", w.Code)
	}
	for i, tok := range append([]string{revoked}, all...) {
		if w := h.get("/api", tok); w.Code != http.StatusUnauthorized {
			t.Errorf("revoked session %d: %d after the failover, want 401", i, w.Code)
		}
	}
}

// The race the review found: revoke-all running between a create's index
// write and its session write left a live session no later revoke-all could
// find. Creates and revoke-alls of one subject race on the 3+3 cluster, 10k
// iterations; afterwards (1) every session whose create returned before a
// revoke-all began is gone, and (2) one more revoke-all leaves no session
// alive: none was ever missing from the index.
func TestRevokeAllRacesCreates(t *testing.T) {
	cl := redistest.StartCluster(t)
	b := &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...)}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	p := config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "race", Name: "revoke", Redis: "main"}, TTL: config.Duration(time.Hour)}
	m, err := New(mustCompile(t, p), map[string]*redisconn.Conn{"main": b.conn}, NewMetrics(reg), nil)
	if err != nil {
		t.Fatal(err)
	}
	const (
		iterations = 10000
		creators   = 8
		revokers   = 2
		subject    = "racer"
	)
	type created struct {
		key      string
		returned time.Time
	}
	var (
		mu        sync.Mutex
		sessions  []created
		revStarts []time.Time // revoke-alls that completed, by start time
		next      atomic.Int64
		failures  atomic.Int64
	)
	ctx := context.Background()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range creators {
		wg.Go(func() {
			for next.Add(1) <= iterations {
				tok, _, err := m.create(ctx, subject, nil, 0)
				returned := time.Now()
				if err != nil {
					failures.Add(1)
					continue
				}
				pt, _ := parseToken(tok)
				mu.Lock()
				sessions = append(sessions, created{key: m.keyFor(pt), returned: returned})
				mu.Unlock()
			}
		})
	}
	var rwg sync.WaitGroup
	for range revokers {
		rwg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				if _, err := m.revokeAll(ctx, subject); err != nil {
					failures.Add(1)
					continue
				}
				mu.Lock()
				revStarts = append(revStarts, start)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	if n := failures.Load(); n > iterations/100 {
		t.Fatalf("%d Redis calls failed; the race was not exercised", n)
	}
	var lastRevoke time.Time
	for _, s := range revStarts {
		lastRevoke = maxTime(lastRevoke, s)
	}
	alive := func() (map[string]bool, error) {
		live := map[string]bool{}
		cmds := make([]*redis.IntCmd, len(sessions))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range sessions {
				cmds[i] = p.Exists(ctx, s.key)
			}
			return nil
		})
		for i, c := range cmds {
			if c.Val() == 1 {
				live[sessions[i].key] = true
			}
		}
		return live, err
	}
	live, err := alive()
	if err != nil {
		t.Fatal(err)
	}
	survivors := 0
	for _, s := range sessions {
		if live[s.key] && s.returned.Before(lastRevoke) {
			survivors++
		}
	}
	t.Logf("%d creates, %d revoke-alls; %d sessions alive at the end, %d of them created before the last revoke-all began",
		len(sessions), len(revStarts), len(live), survivors)
	if len(revStarts) < 20 {
		t.Errorf("only %d revoke-alls ran", len(revStarts))
	}
	if survivors != 0 {
		t.Errorf("%d sessions survived a revoke-all that began after their create returned", survivors)
	}
	if _, err := m.revokeAll(ctx, subject); err != nil {
		t.Fatal(err)
	}
	if live, err = alive(); err != nil {
		t.Fatal(err)
	}
	if len(live) != 0 {
		t.Errorf("%d sessions survived a final revoke-all: missing from the subject index", len(live))
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// gh1 tokens, issued before sessions moved into their subject's slot, keep
// working until they expire: lookup, revoke and revoke-all find them at
// their old keys. The old layout is written here as the previous version
// wrote it (index entry, then session).
func TestLegacyTokensResolveUntilTheyExpire(t *testing.T) {
	for _, start := range []func(*testing.T) *backend{startStandalone, startCluster} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Hour), Sliding: true})
			ctx := context.Background()
			legacy := func(subject string) string {
				t.Helper()
				tok, err := newToken(0)
				if err != nil {
					t.Fatal(err)
				}
				tok.legacy = true
				key := h.m.keyFor(tok)
				now := time.Now()
				pt, _ := json.Marshal(Context{Subject: subject, CreatedMs: now.UnixMilli(), ExpiresMs: now.Add(time.Hour).UnixMilli()})
				val, err := tok.seal(key, pt)
				if err != nil {
					t.Fatal(err)
				}
				idx := h.m.legacyIndexKey(subject)
				if err := b.rdb.ZAdd(ctx, idx, redis.Z{Score: float64(now.Add(time.Hour).UnixMilli()), Member: tok.idHash()}).Err(); err != nil {
					t.Fatal(err)
				}
				if err := b.rdb.Set(ctx, key, val, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
				return tok.String()
			}
			old1, old2, old3 := legacy("gina"), legacy("gina"), legacy("hank")
			current := h.create("gina", nil, 0)
			for _, tok := range []string{old1, old2, old3, current} {
				if w := h.get("/api", tok); w.Code != http.StatusOK {
					t.Fatalf("lookup of %s: %d", tok[:4], w.Code)
				}
			}
			if w := h.adminDo(http.MethodDelete, "/v1/sessions", old3, nil); w.Code != http.StatusNoContent {
				t.Fatalf("revoke gh1: %d %s", w.Code, w.Body)
			}
			if w := h.get("/api", old3); w.Code != http.StatusUnauthorized {
				t.Errorf("revoked gh1 session: %d", w.Code)
			}
			if n := b.rdb.ZCard(ctx, h.m.legacyIndexKey("hank")).Val(); n != 0 {
				t.Errorf("gh1 index still lists the revoked session (%d entries)", n)
			}
			w := h.adminDo(http.MethodDelete, "/v1/subjects/gina/sessions", "", nil)
			var resp RevokeAllResponse
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Revoked != 3 {
				t.Fatalf("revoke-all over both layouts: %d %s", w.Code, w.Body)
			}
			for _, tok := range []string{old1, old2, current} {
				if w := h.get("/api", tok); w.Code != http.StatusUnauthorized {
					t.Errorf("%s after revoke-all: %d", tok[:4], w.Code)
				}
			}
		})
	}
}

// Only a token the sidecar issued resolves: a stored value copied under a
// session key of the other layout does not decrypt there.
func TestLayoutsDoNotShareValues(t *testing.T) {
	b := startStandalone(t)
	h := newHarness(t, b, config.SessionPolicy{TTL: config.Duration(time.Hour)})
	ctx := context.Background()
	tok := h.create("ivy", nil, 0)
	pt, _ := parseToken(tok)
	val, err := b.rdb.Get(ctx, h.m.keyFor(pt)).Result()
	if err != nil {
		t.Fatal(err)
	}
	old := pt
	old.legacy = true
	if err := b.rdb.Set(ctx, h.m.keyFor(old), val, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if w := h.get("/api", old.String()); w.Code != http.StatusUnauthorized {
		t.Errorf("value copied to the gh1 key: %d, want 401", w.Code)
	}
	if _, err := h.m.lookup(ctx, old); !errors.Is(err, errNotFound) {
		t.Errorf("lookup of the copy: %v, want not found", err)
	}
}
