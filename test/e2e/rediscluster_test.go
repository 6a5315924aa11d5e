package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
)

var redisLabels = map[string]string{"app.kubernetes.io/name": "gatehouse-redis", "app.kubernetes.io/instance": redisName}

// redisHostname is the name a node announces (docs/redis-cluster.md).
func redisHostname(pod string) string { return pod + "." + redisName + "-nodes." + shop + ".svc" }

// clusterHealthy checks what the RedisCluster reports and what the nodes
// themselves say: Ready, every slot served by `shards` primaries, each node
// a pod of the StatefulSet announcing its stable DNS name at its pod IP.
// gone are node IDs the cluster may still list, failed and without slots:
// identities lost with a volume, until the operator forgets them.
func clusterHealthy(g Gomega, ctx context.Context, shards int, gone ...string) []redisNode {
	var rc gatehousev1alpha1.RedisCluster
	g.Expect(k8s.Get(ctx, objectKey(shop, redisName), &rc)).To(Succeed())
	ready := meta.FindStatusCondition(rc.Status.Conditions, "Ready")
	g.Expect(ready).NotTo(BeNil(), "Ready condition")
	g.Expect(ready.Status).To(BeEquivalentTo("True"), "Ready: %s: %s", ready.Reason, ready.Message)
	g.Expect(ready.ObservedGeneration).To(Equal(rc.Generation), "Ready for the current spec")
	g.Expect(rc.Status.ClusterState).To(Equal("ok"))
	g.Expect(rc.Status.SlotsAssigned).To(BeEquivalentTo(16384))
	g.Expect(rc.Status.Shards).To(BeEquivalentTo(shards))
	g.Expect(rc.Status.ReadyNodes).To(BeEquivalentTo(2 * shards))

	var sts appsv1.StatefulSet
	g.Expect(k8s.Get(ctx, objectKey(shop, redisName), &sts)).To(Succeed())
	g.Expect(*sts.Spec.Replicas).To(BeEquivalentTo(2 * shards))
	g.Expect(sts.Status.ReadyReplicas).To(BeEquivalentTo(2 * shards))

	ipOf := map[string]string{}
	for _, p := range podsOf(ctx, shop, redisLabels) {
		g.Expect(podReady(&p)).To(BeTrue(), "pod %s ready", p.Name)
		ipOf[redisHostname(p.Name)] = p.Status.PodIP
	}
	g.Expect(ipOf).To(HaveLen(2 * shards))

	rcl := redisCluster(ctx)
	defer rcl.Close()
	all, err := clusterNodes(ctx, rcl)
	g.Expect(err).NotTo(HaveOccurred())
	var nodes []redisNode
	for _, n := range all {
		if slices.Contains(gone, n.ID) {
			g.Expect(n.has("fail") && n.Slots == 0).To(BeTrue(), "a lost identity is failed and serves nothing: %+v", n)
			continue
		}
		nodes = append(nodes, n)
	}
	g.Expect(nodes).To(HaveLen(2*shards), "CLUSTER NODES: %v", all)
	primaries, slots := 0, 0
	for _, n := range nodes {
		g.Expect(n.has("fail")).To(BeFalse(), "node %s is failed", n.ID)
		g.Expect(ipOf).To(HaveKey(n.Hostname), "node %s announces %q, not a pod's stable name", n.ID, n.Hostname)
		g.Expect(n.IP).To(Equal(ipOf[n.Hostname]), "node %s (%s) at its pod's IP", n.ID, n.Hostname)
		if n.primary() {
			primaries++
			slots += n.Slots
		}
	}
	g.Expect(primaries).To(Equal(shards))
	g.Expect(slots).To(Equal(16384))
	return nodes
}

func redisScenarios() {
	It("applies config/e2e/samples: the RedisCluster becomes a StatefulSet of Ready pods forming a cluster by DNS names", func(ctx SpecContext) {
		mustKubectl("apply", "--server-side", "-k", env.repo+"/config/e2e/samples")
		var nodes []redisNode
		Eventually(func(g Gomega) {
			nodes = clusterHealthy(g, ctx, 3)
		}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(3 * time.Second).Should(Succeed())

		// Every node's stable name resolves, through CoreDNS, to its pod.
		res := clusterResolver(ctx)
		for _, n := range nodes {
			ips, err := res.LookupHost(ctx, clusterName(n.Hostname))
			Expect(err).NotTo(HaveOccurred())
			Expect(ips).To(ConsistOf(n.IP), "%s", n.Hostname)
		}
		// Each node has a volume of its own.
		var pvcs corev1.PersistentVolumeClaimList
		Expect(k8s.List(ctx, &pvcs)).To(Succeed())
		bound := 0
		for _, c := range pvcs.Items {
			if c.Namespace == shop && strings.HasPrefix(c.Name, "data-"+redisName+"-") && c.Status.Phase == corev1.ClaimBound {
				bound++
			}
		}
		Expect(bound).To(Equal(6))

		// A cluster client, seeded like the sidecars, follows redirects to
		// the announced names.
		rc := redisCluster(ctx)
		defer rc.Close()
		writeKeys(ctx, rc)
		keysIntact(Default, ctx, rc)
	})

	It("no redis-server has the password on its command line", func(ctx SpecContext) {
		password := redisPassword(ctx)
		for _, p := range podsOf(ctx, shop, redisLabels) {
			var id string
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Name == "redis" {
					id = strings.TrimPrefix(cs.ContainerID, "containerd://")
				}
			}
			Expect(id).NotTo(BeEmpty(), "pod %s runs", p.Name)
			// The kubelet expands $(VAR) in args before handing them to
			// the runtime: the node keeps the result in the container's
			// OCI spec, and the process starts with it in its argv
			// (redis-server rewrites its title later, which hides it
			// from a late `ps`, not from the node).
			data, err := os.ReadFile(filepath.Join(env.containerdState, "io.containerd.runtime.v2.task", "k8s.io", id, "config.json"))
			Expect(err).NotTo(HaveOccurred())
			var spec struct {
				Process struct {
					Args []string `json:"args"`
				} `json:"process"`
			}
			Expect(json.Unmarshal(data, &spec)).To(Succeed())
			Expect(spec.Process.Args).NotTo(BeEmpty())
			Expect(spec.Process.Args[0]).To(Equal("redis-server"))
			// Never print the arguments: they may hold the password.
			Expect(strings.Contains(strings.Join(spec.Process.Args, "\x00"), password)).To(BeFalse(),
				"pod %s: the password is in redis-server's argv", p.Name)
		}
	})
}
