package redistest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

func TestStandalone(t *testing.T) {
	s := redistest.StartStandalone(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded against a stopped server")
	}
	s.Start(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

// TestCluster proves the helper forms a real 3+3 cluster that routes keys
// across all shards through a go-redis ClusterClient.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	info, err := redistest.Do(ctx, c.Primaries[0].Addr(), "CLUSTER", "INFO")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_size:3", "cluster_known_nodes:6"} {
		if !strings.Contains(info, want) {
			t.Errorf("CLUSTER INFO lacks %q:\n%s", want, info)
		}
	}
	for i, r := range c.Replicas {
		role, err := redistest.Do(ctx, r.Addr(), "ROLE")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(role, "slave") {
			t.Errorf("replica %d has role %q", i, role)
		}
	}

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer rdb.Close()
	const n = 300
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("key:%d", i), i, time.Minute).Err(); err != nil {
			t.Fatalf("set key:%d: %v", i, err)
		}
	}
	// Every primary must own some of the keys: routing really spans shards.
	for _, p := range c.Primaries {
		size, err := redistest.Do(ctx, p.Addr(), "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		if size == "0" {
			t.Errorf("primary %s holds no keys; keys were not routed across slots", p.Addr())
		}
	}
	for i := range n {
		v, err := rdb.Get(ctx, fmt.Sprintf("key:%d", i)).Int()
		if err != nil || v != i {
			t.Fatalf("get key:%d = %d, %v", i, v, err)
		}
	}
}

func TestKillAndRestartNode(t *testing.T) {
	c := redistest.StartCluster(t)
	victim := c.Replicas[0]
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if victim.Running() {
		t.Fatal("killed node still reported running")
	}
	victim.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("cluster not healthy after restarting a replica: %v", err)
	}
}

// StartCluster returns only once replicas hold their primaries' data, so a
// failover right away loses nothing written before it.
func TestClusterReplicasAreInSync(t *testing.T) {
	c := redistest.StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range c.Replicas {
		info, err := redistest.Do(ctx, r.Addr(), "INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, "master_link_status:up") {
			t.Errorf("replica %s not in sync when StartCluster returned:\n%s", r.Addr(), info)
		}
	}
}

// TestRestartKeepsIdentityAndPassword: a node restarted by Restart (as an
// operator's restart hook does) comes back on its port with its cluster
// identity (nodes.conf in Dir) and a requirepass from its directives.
func TestRestartKeepsIdentityAndPassword(t *testing.T) {
	n := redistest.StartNode(t, "requirepass secret", "masterauth secret")
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: n.Addr(), Password: "secret", MaxRetries: -1})
	defer rdb.Close()
	id, err := rdb.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := rdb.Info(ctx, "server").Result()
	if err := n.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	after, err := rdb.ClusterMyID(ctx).Result()
	if err != nil || after != id {
		t.Fatalf("node ID after restart = %q, %v; want %q", after, err, id)
	}
	info, _ := rdb.Info(ctx, "server").Result()
	runID := func(s string) string { _, v, _ := strings.Cut(s, "run_id:"); return strings.Fields(v)[0] }
	if runID(info) == runID(before) {
		t.Error("run_id unchanged: the process did not restart")
	}
	if err := redis.NewClient(&redis.Options{Addr: n.Addr()}).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("ping without the password: %v, want NOAUTH", err)
	}
}
