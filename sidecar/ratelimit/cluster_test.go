package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

func clusterClient(t *testing.T, cl *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:       cl.Addrs(),
		DialTimeout: time.Second,
		// Generous: 50 goroutines share two busy cores, and a timeout here
		// would show up as a 503, not as a wrong count.
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		MaxRetries:   1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clientsOnShards returns n client addresses whose counter keys for ru live
// on n different primaries, with those keys.
func clientsOnShards(t *testing.T, c *redis.ClusterClient, ru *rule, n int) (ips, keys, masters []string) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; len(ips) < n && i < 1000; i++ {
		ip := fmt.Sprintf("10.20.%d.%d", i/250, i%250+1)
		key := ru.counterKey(req("GET", "/", ip, ""))
		node, err := c.MasterForKey(context.Background(), key)
		if err != nil {
			t.Fatalf("master for %s: %v", key, err)
		}
		if addr := node.Options().Addr; !seen[addr] {
			seen[addr] = true
			ips, keys, masters = append(ips, ip), append(keys, key), append(masters, addr)
		}
	}
	if len(ips) < n {
		t.Fatalf("found keys on only %d primaries", len(ips))
	}
	return ips, keys, masters
}

// TestClusterAtomicity: two sidecars (two Limiters with their own
// ClusterClients) race 50 goroutines of requests for several clients whose
// counters live on different shards; each client gets exactly the limit.
// The cluster starts without the scripts, so the EVAL fallback runs too.
func TestClusterAtomicity(t *testing.T) {
	cl := redistest.StartCluster(t)
	sidecars := []*redis.ClusterClient{clusterClient(t, cl), clusterClient(t, cl)}
	const limit, perClient, goroutines = 100, 500, 50

	for _, alg := range []config.Algorithm{config.FixedWindow, config.SlidingWindow} {
		t.Run(string(alg), func(t *testing.T) {
			r := newRule("per-ip", alg, limit, time.Minute)
			r.Key.ClientIP = true
			r.FailureMode = config.FailClosed // a Redis error must not look like an admission
			p := testPolicy("ns", "atomic-"+string(alg), "main", r)
			var handlers []http.Handler
			for _, c := range sidecars {
				handlers = append(handlers, newLimiter(t, one(t, c), nil, p).Middleware(okHandler))
			}
			ru := mustCompile(t, p, r)
			ips, keys, masters := clientsOnShards(t, sidecars[0], ru, 3)

			var admitted, denied, other [3]atomic.Int64
			start := make(chan struct{})
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					<-start
					for i := range perClient / goroutines {
						for k, ip := range ips {
							h := handlers[(g+i+k)%len(handlers)]
							switch serve(h, req("GET", "/", ip, "")).StatusCode {
							case http.StatusOK:
								admitted[k].Add(1)
							case http.StatusTooManyRequests:
								denied[k].Add(1)
							default:
								other[k].Add(1)
							}
						}
					}
				})
			}
			close(start)
			wg.Wait()
			for k := range ips {
				if a, d, o := admitted[k].Load(), denied[k].Load(), other[k].Load(); a != limit || d != perClient-limit || o != 0 {
					t.Errorf("client %s (shard %s): admitted %d, denied %d, other %d; want %d, %d, 0", ips[k], masters[k], a, d, o, limit, perClient-limit)
				}
				// The counter really lives on the primary the cluster maps it
				// to (a FixedWindow counts in one key per window, key:<index>).
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				node := redis.NewClient(&redis.Options{Addr: masters[k]})
				found, err := node.Keys(ctx, keys[k]+"*").Result()
				_ = node.Close()
				cancel()
				if err != nil || len(found) != 1 {
					t.Errorf("key %s on %s: KEYS = %q, %v", keys[k], masters[k], found, err)
				}
			}
		})
	}
}

// TestClusterPrimaryDown kills the primary holding one client's counter: that
// client's Closed rule answers 503 while a client on another shard is still
// enforced through Redis, and after the replica takes over the same Limiter
// enforces again. The cluster serves the slots it still covers
// (cluster-require-full-coverage no): with Redis' default, every node answers
// CLUSTERDOWN until the failover and every rule applies its failure mode.
func TestClusterPrimaryDown(t *testing.T) {
	cl := redistest.StartCluster(t, "cluster-require-full-coverage no")
	c := clusterClient(t, cl)
	r := newRule("per-ip", config.FixedWindow, 1000, time.Minute)
	r.Key.ClientIP = true
	r.FailureMode = config.FailClosed
	p := testPolicy("ns", "failover", "main", r)
	h := newLimiter(t, one(t, c), nil, p).Middleware(okHandler)
	ips, _, masters := clientsOnShards(t, c, mustCompile(t, p, r), 2)
	for _, ip := range ips {
		if resp := serve(h, req("GET", "/", ip, "")); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s before the outage: status %d", ip, resp.StatusCode)
		}
	}

	var victim *redistest.Server
	for _, s := range cl.Primaries {
		if s.Addr() == masters[0] {
			victim = s
		}
	}
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if resp := serve(h, req("GET", "/", ips[0], "")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("client on the dead shard: status %d, want 503", resp.StatusCode)
	}
	for range 5 {
		resp := serve(h, req("GET", "/", ips[1], ""))
		if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit") == "" {
			t.Fatalf("client on a healthy shard during the outage: status %d, RateLimit %q; want enforcement through Redis",
				resp.StatusCode, resp.Header.Get("RateLimit"))
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := serve(h, req("GET", "/", ips[0], ""))
		if resp.StatusCode == http.StatusOK && resp.Header.Get("RateLimit") != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client on the failed-over shard still gets %d 30s after the kill", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
