package session

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// TestRetriedRevokeStillReachesOtherTiers replays the failure the docs
// describe for a revocation ("the admin API answers the revocation only
// once the broadcast was published; if it could not be, it answers 503 and
// the app retries") on the 3+3 cluster, where the session's slot and the
// revocation channel's slot live on different primaries. The channel's
// primary stalls for a moment (GC pause, fsync, a slow network path): A's
// DEL succeeds, its SPUBLISH times out, the app gets 503 and, as told,
// retries. The retry finds no session in Redis and answers 204 without
// broadcasting anything, so sidecar B — whose subscription rode out the
// short stall and never lapsed — keeps serving the revoked session from its
// tier until the entry ages out (10 s), far beyond the documented 750 ms
// for a broadcast a sidecar could not receive.
func TestRetriedRevokeStillReachesOtherTiers(t *testing.T) {
	cl := redistest.StartCluster(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })
	policy := config.SessionPolicy{TTL: config.Duration(time.Hour)}
	policy.Namespace, policy.Name = "team-a", "retry"
	a := newHarness(t, &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...)}, policy)
	b := newHarness(t, &backend{name: "cluster", conn: conn(t, redisconn.Cluster, cl.Addrs()...)}, policy)
	eventually(t, 10*time.Second, "both sidecars subscribed", func() bool {
		return a.m.watch.Usable(time.Now()) && b.m.watch.Usable(time.Now())
	})
	ctx := context.Background()
	chNode, err := rdb.MasterForKey(ctx, a.m.channel)
	if err != nil {
		t.Fatal(err)
	}
	var chServer *redistest.Server
	for _, p := range cl.Primaries {
		if p.Addr() == chNode.Options().Addr {
			chServer = p
		}
	}
	if chServer == nil {
		t.Fatalf("no primary serves the channel at %s", chNode.Options().Addr)
	}
	subject := ""
	for i := range 1000 {
		s := fmt.Sprintf("user-%d", i)
		n, err := rdb.MasterForKey(ctx, a.m.indexKey(s))
		if err != nil {
			t.Fatal(err)
		}
		if n.Options().Addr != chServer.Addr() {
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

	// The channel's primary stalls for 400 ms: longer than A's 300 ms
	// deadline, shorter than B's 750 ms subscription lease.
	if err := chServer.Freeze(); err != nil {
		t.Fatal(err)
	}
	thawed := make(chan struct{})
	go func() {
		time.Sleep(400 * time.Millisecond)
		_ = chServer.Thaw()
		close(thawed)
	}()
	t.Cleanup(func() { _ = chServer.Thaw() })
	first := a.adminDo(http.MethodDelete, "/v1/sessions", tok, nil)
	<-thawed
	if first.Code != http.StatusServiceUnavailable {
		t.Logf("first revoke answered %d (the stall did not hit the broadcast); the race is not replayed", first.Code)
	}
	// The app retries, as the docs tell it to.
	var retry int
	for range 20 {
		if retry = a.adminDo(http.MethodDelete, "/v1/sessions", tok, nil).Code; retry == http.StatusNoContent {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if retry != http.StatusNoContent {
		t.Fatalf("retried revoke: %d", retry)
	}
	revoked := time.Now()
	if n, _ := rdb.Exists(ctx, a.m.keyFor(mustParse(t, tok))).Result(); n != 0 {
		t.Fatalf("the session still exists in Redis after the revoke")
	}
	for b.get("/api", tok).Code != http.StatusUnauthorized {
		if time.Since(revoked) > 2*time.Second {
			t.Fatalf("first revoke %d, retry %d: B still serves the revoked session from its tier %v after the app's retried revoke succeeded (documented worst case: 750 ms)",
				first.Code, retry, time.Since(revoked).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first revoke %d; B answered 401 %v after the retry", first.Code, time.Since(revoked))
}

func mustParse(t *testing.T, tok string) token {
	t.Helper()
	p, err := parseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
