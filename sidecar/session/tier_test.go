package session

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// TestRevocationReachesOtherSidecars: sidecar B serves a session from its
// in-process tier; the app revokes all of the subject's sessions through
// sidecar A; B must answer 401 as soon as A's broadcast arrives. 1000
// trials per backend; the delay from A's answer to B's first 401 is
// printed (target: 5ms p99 on loopback) and bounded generously here, since
// this machine is shared.
func TestRevocationReachesOtherSidecars(t *testing.T) {
	for _, start := range []func(*testing.T) *backend{startStandalone, startCluster} {
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			policy := config.SessionPolicy{TTL: config.Duration(time.Hour), Sliding: true, RefreshBelow: config.Duration(30 * time.Minute)}
			policy.Namespace, policy.Name = "team-a", "revocation"
			a, bh := twoSidecars(t, b, policy)
			const trials = 1000
			delays := make([]time.Duration, 0, trials)
			for i := range trials {
				subject := fmt.Sprintf("user-%d", i)
				tok := a.create(subject, nil, 0)
				parsed, err := parseToken(tok)
				if err != nil {
					t.Fatal(err)
				}
				key := bh.m.keyFor(parsed)
				for range 2 {
					if w := bh.get("/api", tok); w.Code != http.StatusOK {
						t.Fatalf("trial %d: B before the revocation: %d %s", i, w.Code, w.Body)
					}
				}
				if e, _ := bh.m.tier.get(key, &parsed.secret, time.Now()); e == nil {
					t.Fatalf("trial %d: B's tier does not hold the session it served", i)
				}
				if w := a.adminDo(http.MethodDelete, "/v1/subjects/"+subject+"/sessions", "", nil); w.Code != http.StatusOK {
					t.Fatalf("trial %d: revoke-all on A: %d %s", i, w.Code, w.Body)
				}
				revoked := time.Now()
				for bh.get("/api", tok).Code != http.StatusUnauthorized {
					runtime.Gosched()
					if time.Since(revoked) > 5*time.Second {
						t.Fatalf("trial %d: B still admits the revoked session 5s after A revoked it", i)
					}
				}
				delays = append(delays, time.Since(revoked))
			}
			slices.Sort(delays)
			p50, p99, worst := delays[trials/2], delays[trials*99/100], delays[trials-1]
			t.Logf("revocation delay A→B over %d trials (%s): p50 %v, p99 %v, max %v", trials, b.name, p50, p99, worst)
			// 20× the 5ms target: only a broken broadcast (B waiting for
			// its entry to age out, 10s) fails this on a busy machine.
			if p99 > 100*time.Millisecond {
				t.Errorf("revocation delay p99 %v", p99)
			}
		})
	}
}

// TestTierRefusesFillsAcrossAnEviction replays the race of a lookup that
// read the session from Redis just before a revocation was applied: the
// stale read must not put the revoked session back into the tier.
func TestTierRefusesFillsAcrossAnEviction(t *testing.T) {
	tr := newTier()
	var secret [secretLen]byte
	now := time.Now()
	_, epoch := tr.get("k", &secret, now)
	tr.receive(`{"s":"k"}`)
	tr.put("k", &tierEntry{secret: secret, sc: &Context{Subject: "x"}, until: now.Add(time.Minute)}, epoch)
	if e, _ := tr.get("k", &secret, now); e != nil {
		t.Fatal("a fill planned before an eviction was stored")
	}
	_, epoch = tr.get("k", &secret, now)
	tr.put("k", &tierEntry{secret: secret, sc: &Context{Subject: "x"}, until: now.Add(time.Minute)}, epoch)
	if e, _ := tr.get("k", &secret, now); e == nil {
		t.Fatal("a fill without an eviction in between was not stored")
	}
	var other [secretLen]byte
	other[0] = 1
	if e, _ := tr.get("k", &other, now); e != nil {
		t.Fatal("the tier served a session to a token with another secret")
	}
}

// TestFailedRevocationBroadcastIsRepublished replays a revocation on the
// 3+3 cluster while the revocation channel's primary (another primary
// than the session's) stalls for a moment (a GC pause, an fsync, a slow
// network path): A's DEL succeeds, its SPUBLISH runs into the deadline and
// the app gets 503. Sidecar B's subscription rides out the short stall and
// never lapses, so B hears nothing it could act on; before, B kept serving
// the revoked session from its tier until the entry aged out (10s), and
// an app retry, finding no session, answered 204 without broadcasting.
// Now A republishes the revocation in the background: B answers 401 soon
// after the primary answers again, with no retry at all; and the app's
// retry answers 204 and broadcasts too.
func TestFailedRevocationBroadcastIsRepublished(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	policy := config.SessionPolicy{TTL: config.Duration(time.Hour)}
	policy.Namespace, policy.Name = "team-a", "republish"
	a, b := twoSidecars(t, &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...), mode: redisconn.Cluster, addrs: cl.Addrs()}, policy)
	ctx := context.Background()
	chServer := primaryFor(t, cl, rdb, a.m.channel)
	subject := ""
	for i := range 1000 {
		if s := fmt.Sprintf("user-%d", i); primaryFor(t, cl, rdb, a.m.indexKey(s)) != chServer {
			subject = s
			break
		}
	}
	tok := a.create(subject, nil, 0)
	for range 2 {
		if w := b.get("/api", tok); w.Code != http.StatusOK {
			t.Fatalf("B before the revocation: %d %s", w.Code, w.Body)
		}
	}

	// The channel's primary stalls for 400ms: longer than A's 300ms
	// deadline, shorter than B's 750ms subscription lease.
	if err := chServer.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chServer.Thaw() })
	thawAt := time.Now().Add(400 * time.Millisecond)
	first := a.adminDo(http.MethodDelete, "/v1/sessions", tok, nil)
	time.Sleep(time.Until(thawAt))
	if err := chServer.Thaw(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	if first.Code != http.StatusServiceUnavailable {
		t.Fatalf("revoke while the channel's primary is frozen: %d %s, want 503 (the broadcast cannot be published)", first.Code, first.Body)
	}
	if n, _ := rdb.Exists(ctx, a.m.keyFor(mustParse(t, tok))).Result(); n != 0 {
		t.Fatal("the session still exists in Redis after the revoke that answered 503")
	}
	if !b.m.watch.Usable(time.Now()) {
		t.Log("B's subscription lapsed during the stall (machine too slow); its tier is off, which is also safe")
	}
	// No retry from the app: A's background republishing must reach B,
	// every 100ms once the primary answers. One second of slack for this
	// shared machine, far below the 10s an entry takes to age out.
	for b.get("/api", tok).Code != http.StatusUnauthorized {
		if time.Since(thawed) > time.Second {
			t.Fatalf("B still serves the revoked session from its tier %v after the channel's primary answered again; the failed broadcast was not republished", time.Since(thawed).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("B answered 401 %v after the channel's primary answered again, without a retry", time.Since(thawed).Round(time.Millisecond))
	if w := a.adminDo(http.MethodDelete, "/v1/sessions", tok, nil); w.Code != http.StatusNoContent {
		t.Fatalf("the app's retry of the revoke: %d %s, want 204", w.Code, w.Body)
	}
}

// TestRetriedRevocationBroadcasts: the app retries a revocation that
// answered 503, through whichever sidecar; the first attempt deleted the
// session (or the sessions) and its broadcast never got out, and the
// sidecar that made it is gone with its republishing (a restart, a
// reload). The retry finds nothing to delete and must broadcast anyway:
// before, revoke answered 204 without a broadcast, and B served the
// revoked session from its tier for up to 10s.
func TestRetriedRevocationBroadcasts(t *testing.T) {
	for _, start := range []func(*testing.T) *backend{startStandalone, startCluster} {
		bk := start(t)
		t.Run(bk.name, func(t *testing.T) {
			policy := config.SessionPolicy{TTL: config.Duration(time.Hour)}
			policy.Namespace, policy.Name = "team-a", "retried"
			a, b := twoSidecars(t, bk, policy)
			ctx := context.Background()
			for _, tc := range []struct {
				name   string
				revoke func(tok, subject string) *httptest.ResponseRecorder
				status int
			}{
				{"revoke", func(tok, _ string) *httptest.ResponseRecorder {
					return a.adminDo(http.MethodDelete, "/v1/sessions", tok, nil)
				}, http.StatusNoContent},
				{"revoke-all", func(_, subject string) *httptest.ResponseRecorder {
					return a.adminDo(http.MethodDelete, "/v1/subjects/"+subject+"/sessions", "", nil)
				}, http.StatusOK},
			} {
				subject := "retry-" + tc.name
				tok := a.create(subject, nil, 0)
				if w := b.get("/api", tok); w.Code != http.StatusOK {
					t.Fatalf("%s: B before the revocation: %d %s", tc.name, w.Code, w.Body)
				}
				// What the first attempt did before its broadcast failed.
				if err := bk.rdb.Del(ctx, a.m.keyFor(mustParse(t, tok)), a.m.indexKey(subject)).Err(); err != nil {
					t.Fatal(err)
				}
				if w := tc.revoke(tok, subject); w.Code != tc.status {
					t.Fatalf("%s retried: %d %s, want %d", tc.name, w.Code, w.Body, tc.status)
				}
				retried := time.Now()
				for b.get("/api", tok).Code != http.StatusUnauthorized {
					if time.Since(retried) > 2*time.Second {
						t.Fatalf("%s: B still serves the session %v after the app's retried revocation succeeded", tc.name, time.Since(retried).Round(time.Millisecond))
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}

// twoSidecars are sidecars A (on bk's connection) and B (on a connection
// of its own) with policy, both subscribed to its revocations.
func twoSidecars(t *testing.T, bk *backend, policy config.SessionPolicy) (a, b *harness) {
	t.Helper()
	a = newHarness(t, bk, policy)
	other := *bk
	other.conn = conn(t, bk.mode, bk.addrs...)
	b = newHarness(t, &other, policy)
	eventually(t, 10*time.Second, "both sidecars subscribed", func() bool {
		return a.m.watch.Usable(time.Now()) && b.m.watch.Usable(time.Now())
	})
	return a, b
}

// primaryFor is the cluster primary serving key.
func primaryFor(t *testing.T, cl *redistest.Cluster, rdb *redis.ClusterClient, key string) *redistest.Server {
	t.Helper()
	n, err := rdb.MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range cl.Primaries {
		if p.Addr() == n.Options().Addr {
			return p
		}
	}
	t.Fatalf("no primary serves %s at %s", key, n.Options().Addr)
	return nil
}

func mustParse(t *testing.T, tok string) token {
	t.Helper()
	p, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
