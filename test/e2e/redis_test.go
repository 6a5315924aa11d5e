package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
)

// clusterResolver resolves names through the cluster's DNS (the kube-dns
// Service, through kube-proxy) the way a pod does: a name under .svc gets
// the cluster domain appended, as a pod's search path would.
func clusterResolver(ctx context.Context) *net.Resolver {
	GinkgoHelper()
	var svc corev1.Service
	Expect(k8s.Get(ctx, objectKey("kube-system", "kube-dns"), &svc)).To(Succeed())
	dns := net.JoinHostPort(svc.Spec.ClusterIP, "53")
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dns)
	}}
}

func clusterName(host string) string {
	if strings.HasSuffix(host, ".svc") {
		return host + ".cluster.local."
	}
	return host
}

// redisPassword reads the password the operator generated.
func redisPassword(ctx context.Context) string {
	GinkgoHelper()
	var s corev1.Secret
	Expect(k8s.Get(ctx, objectKey(shop, redisName+"-password"), &s)).To(Succeed())
	Expect(s.Data).To(HaveKey("password"))
	return string(s.Data["password"])
}

// redisCluster is a cluster client seeded, as the sidecars are, with the
// client Service; every node it is redirected to is dialled by the name the
// node announces, resolved by CoreDNS.
func redisCluster(ctx context.Context) *redis.ClusterClient {
	GinkgoHelper()
	res := clusterResolver(ctx)
	return redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:    []string{redisName + "-client." + shop + ".svc:6379"},
		Password: redisPassword(ctx),
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := res.LookupHost(ctx, clusterName(host))
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(ips[0], port))
		},
		DialTimeout: 3 * time.Second,
		ReadTimeout: 3 * time.Second,
		MaxRetries:  5,
	})
}

// redisNode is one line of CLUSTER NODES.
type redisNode struct {
	ID, IP, Hostname, Master string
	Flags                    []string
	Slots                    int
}

func (n redisNode) has(flag string) bool {
	return slices.Contains(n.Flags, flag)
}

// primary reports a node that serves slots.
func (n redisNode) primary() bool { return n.has("master") && !n.has("fail") && n.Slots > 0 }

// clusterNodes asks one node of the cluster for its view (CLUSTER NODES).
func clusterNodes(ctx context.Context, rc *redis.ClusterClient) ([]redisNode, error) {
	var text string
	err := rc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
		if text != "" {
			return nil
		}
		t, err := c.ClusterNodes(ctx).Result()
		text = t
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseClusterNodes(text)
}

// parseClusterNodes reads `<id> <ip:port@cport[,hostname]> <flags> <master>
// <ping> <pong> <epoch> <link> <slot>…`.
func parseClusterNodes(text string) ([]redisNode, error) {
	var nodes []redisNode
	for line := range strings.Lines(strings.TrimSpace(text)) {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q", line)
		}
		n := redisNode{ID: f[0], Flags: strings.Split(f[2], ","), Master: f[3]}
		addr, hostname, _ := strings.Cut(f[1], ",")
		n.Hostname = hostname
		if hp, _, ok := strings.Cut(addr, "@"); ok {
			n.IP, _, _ = net.SplitHostPort(hp)
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("slot %q: %w", r, err)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("slot %q: %w", r, err)
				}
			}
			n.Slots += b - a + 1
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// testKeys is how many keys the suite writes and later checks for loss.
const testKeys = 2000

func testKey(i int) string   { return fmt.Sprintf("e2e:key:%d", i) }
func testValue(i int) string { return fmt.Sprintf("value-%d", i) }

// writeKeys writes testKeys keys spread over every slot range.
func writeKeys(ctx context.Context, rc *redis.ClusterClient) {
	GinkgoHelper()
	for i := 0; i < testKeys; i += 100 {
		_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < i+100; j++ {
				p.Set(ctx, testKey(j), testValue(j), 0)
			}
			return nil
		})
		Expect(err).NotTo(HaveOccurred())
	}
}

// keysIntact checks that every key writeKeys wrote is there, unchanged.
func keysIntact(g Gomega, ctx context.Context, rc *redis.ClusterClient) {
	var missing []string
	for i := 0; i < testKeys; i += 100 {
		cmds, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j := i; j < i+100; j++ {
				p.Get(ctx, testKey(j))
			}
			return nil
		})
		g.Expect(err).To(Or(Not(HaveOccurred()), MatchError(redis.Nil)))
		for j, c := range cmds {
			if v, err := c.(*redis.StringCmd).Result(); err != nil || v != testValue(i+j) {
				missing = append(missing, fmt.Sprintf("%s=%q (%v)", testKey(i+j), v, err))
			}
		}
	}
	g.Expect(missing).To(BeEmpty(), "keys lost or changed")
}
