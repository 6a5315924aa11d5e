package session

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

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
			a := newHarness(t, b, policy)
			other := *b
			other.conn = conn(t, b.mode, b.addrs...)
			bh := newHarness(t, &other, policy)
			eventually(t, 10*time.Second, "both sidecars subscribed", func() bool {
				return a.m.watch.Usable(time.Now()) && bh.m.watch.Usable(time.Now())
			})
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
