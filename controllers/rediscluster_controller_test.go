package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// The suite's RedisClusters are served by real redis-server processes:
// the operator authenticates with the password from the cluster's Secret,
// so the nodes run with testRedisPassword, and clusters that should reach
// them reference a Secret holding it (testRedisSecretName).
const (
	testRedisPassword   = "envtest-redis-password"
	testRedisSecretName = "redis-password"
	// redisConverge is generous: forming a cluster and syncing replicas on
	// two shared CI cores takes seconds, sometimes many.
	redisConverge = 90 * time.Second
)

var (
	// localRedis maps every RedisCluster to sharedRedis unless a spec says
	// otherwise. All clusters share one real cluster: forming is idempotent,
	// so the first reconcile forms it and the others find it formed.
	localRedis  *controllers.LocalRedisMembers
	sharedRedis []rediscluster.Member
)

// startSharedRedis starts six blank cluster-mode nodes with a password and
// returns the member source the suite's manager uses.
func startSharedRedis() *controllers.LocalRedisMembers {
	GinkgoHelper()
	sharedRedis = startRedisNodes(6)
	localRedis = controllers.NewLocalRedisMembers(sharedRedis)
	// Status reports the in-cluster client Service, as in a real cluster,
	// so policy specs see each namespace's own address.
	localRedis.ClientAddressOf = controllers.PodRedisMembers{}.ClientAddress
	// Maintenance restarts reach the processes the specs register.
	localRedis.RestartMember = restartLocalNode
	return localRedis
}

// startRedisNodes starts n blank nodes that require testRedisPassword.
func startRedisNodes(n int) []rediscluster.Member {
	GinkgoHelper()
	// Replicas start their full sync at once rather than after 5s.
	return protect(redistest.StartNodes(GinkgoT(), n, "repl-diskless-sync-delay 0"))
}

// protect sets testRedisPassword on running nodes and returns them as
// members.
func protect(nodes []*redistest.Server) []rediscluster.Member {
	GinkgoHelper()
	members := make([]rediscluster.Member, len(nodes))
	for i, node := range nodes {
		for _, args := range [][]string{
			{"CONFIG", "SET", "masterauth", testRedisPassword},
			{"CONFIG", "SET", "requirepass", testRedisPassword},
		} {
			_, err := redistest.Do(context.Background(), node.Addr(), args...)
			Expect(err).NotTo(HaveOccurred())
		}
		members[i] = rediscluster.Member{Name: fmt.Sprintf("node-%d", node.Port), Addr: node.Addr(), BusPort: node.BusPort}
	}
	return members
}

// testRedisSecret creates the Secret holding the nodes' password in ns,
// once.
func testRedisSecret(ns string) {
	GinkgoHelper()
	// Labelled, as docs/redis-cluster.md asks of a user's Secret: the
	// operator's Secret informer holds only labelled ones.
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: testRedisSecretName,
		Labels: map[string]string{controllers.LabelRedisPassword: controllers.LabelRedisPasswordValue}},
		Data: map[string][]byte{"password": []byte(testRedisPassword)}}
	Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, s))).To(Succeed())
}

// newRedisCluster creates a 3×1 RedisCluster that authenticates with the
// test password, after mutate adjusted it.
func newRedisCluster(ns, name string, mutate func(*v1alpha1.RedisCluster)) *v1alpha1.RedisCluster {
	GinkgoHelper()
	testRedisSecret(ns)
	rc := &v1alpha1.RedisCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RedisClusterSpec{
			Shards: 3, ReplicasPerShard: ptr.To[int32](1),
			PasswordSecretRef: &v1alpha1.SecretKeyReference{Name: testRedisSecretName},
		},
	}
	if mutate != nil {
		mutate(rc)
	}
	Expect(k8sClient.Create(ctx, rc)).To(Succeed())
	return rc
}

// expectRedisCondition waits for the cluster's condition to have status.
func expectRedisCondition(rc *v1alpha1.RedisCluster, typ string, status metav1.ConditionStatus, timeout time.Duration) *metav1.Condition {
	GinkgoHelper()
	var got *metav1.Condition
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
		got = meta.FindStatusCondition(rc.Status.Conditions, typ)
		g.Expect(got).NotTo(BeNil(), "no %s condition yet", typ)
		g.Expect(got.Status).To(Equal(status), "%s: %s", got.Reason, got.Message)
	}, timeout, poll).Should(Succeed())
	return got
}

// setRedisAvailable makes the local nodes of rc disappear (no members, as
// if every pod were gone) or come back.
func setRedisAvailable(rc *v1alpha1.RedisCluster, available bool) {
	key := client.ObjectKeyFromObject(rc)
	if available {
		localRedis.Delete(key)
		return
	}
	localRedis.Set(key, []rediscluster.Member{})
}

// nodeClient talks to one shared node with the test password.
func nodeClient(m rediscluster.Member) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: m.Addr, Password: testRedisPassword})
	DeferCleanup(c.Close)
	return c
}

func ownedBy(g Gomega, obj client.Object, rc *v1alpha1.RedisCluster) {
	refs := obj.GetOwnerReferences()
	g.Expect(refs).To(HaveLen(1), "%T %s", obj, obj.GetName())
	g.Expect(refs[0].UID).To(Equal(rc.UID))
	g.Expect(refs[0].Kind).To(Equal("RedisCluster"))
	g.Expect(refs[0].Controller).To(HaveValue(BeTrue()))
}

func redisConf(g Gomega, rc *v1alpha1.RedisCluster) string {
	cm := &corev1.ConfigMap{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: rc.Namespace, Name: redisnames.ConfigMap(rc.Name)}, cm)).To(Succeed())
	return cm.Data[redisnames.ConfigKey]
}

// expectKeys waits until every key written before a scale reads back: the
// nodes' views of slot ownership converge by gossip after the operator is
// done, and a client may meanwhile see redirects loop.
func expectKeys(cc *redis.ClusterClient, keys int) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		cc.ReloadState(ctx)
		for i := range keys {
			g.Expect(cc.Get(ctx, fmt.Sprintf("key:%d", i)).Int()).To(Equal(i))
		}
	}, redisConverge, poll).Should(Succeed())
}

var _ = Describe("RedisCluster reconciler", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("creates the ConfigMap, Services, StatefulSet, PDB and generated Secret, all owned", func() {
		rc := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sessions"},
			Spec: v1alpha1.RedisClusterSpec{Shards: 4, ReplicasPerShard: ptr.To[int32](2)}}
		// This spec is about the objects: keep the shared nodes out of it.
		setRedisAvailable(rc, false)
		DeferCleanup(setRedisAvailable, rc, true)
		Expect(k8sClient.Create(ctx, rc)).To(Succeed())

		key := func(name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())

			cm := &corev1.ConfigMap{}
			g.Expect(k8sClient.Get(ctx, key("sessions-config"), cm)).To(Succeed())
			ownedBy(g, cm, rc)
			g.Expect(cm.Data).To(HaveKey("redis.conf"))

			headless := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, key("sessions-nodes"), headless)).To(Succeed())
			ownedBy(g, headless, rc)
			g.Expect(headless.Spec.ClusterIP).To(Equal(corev1.ClusterIPNone))
			g.Expect(headless.Spec.PublishNotReadyAddresses).To(BeTrue())

			svc := &corev1.Service{}
			g.Expect(k8sClient.Get(ctx, key(redisnames.ClientService("sessions")), svc)).To(Succeed())
			ownedBy(g, svc, rc)
			g.Expect(svc.Spec.Ports).To(ContainElement(HaveField("Port", BeEquivalentTo(6379))))

			sts := &appsv1.StatefulSet{}
			g.Expect(k8sClient.Get(ctx, key("sessions"), sts)).To(Succeed())
			ownedBy(g, sts, rc)
			g.Expect(sts.Spec.Replicas).To(HaveValue(BeEquivalentTo(4 * 3)))
			g.Expect(sts.Spec.ServiceName).To(Equal("sessions-nodes"))
			g.Expect(sts.Spec.PodManagementPolicy).To(Equal(appsv1.ParallelPodManagement))
			g.Expect(sts.Spec.Template.Annotations).To(HaveKey(controllers.AnnotationRedisRestartHash))
			g.Expect(strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")).
				To(ContainSubstring("--cluster-announce-hostname $(POD_NAME).sessions-nodes." + ns + ".svc"))

			pdb := &policyv1.PodDisruptionBudget{}
			g.Expect(k8sClient.Get(ctx, key("sessions"), pdb)).To(Succeed())
			ownedBy(g, pdb, rc)
			g.Expect(pdb.Spec.MaxUnavailable.IntValue()).To(Equal(1))

			secret := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, key(redisnames.PasswordSecret("sessions")), secret)).To(Succeed())
			ownedBy(g, secret, rc)
			g.Expect(len(secret.Data["password"])).To(BeNumerically(">=", 32))

			g.Expect(rc.Status.PasswordSecret).To(Equal("sessions-password"))
			ready := meta.FindStatusCondition(rc.Status.Conditions, v1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Reason).To(Equal(v1alpha1.ReasonNodesNotReady))
		}, eventually, poll).Should(Succeed())

		By("never rotating the generated password")
		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, key("sessions-password"), secret)).To(Succeed())
		password := string(secret.Data["password"])
		updateRedisCluster(rc, func(rc *v1alpha1.RedisCluster) { rc.Spec.Config = map[string]string{"maxmemory": "1gb"} })
		Eventually(func(g Gomega) { g.Expect(redisConf(g, rc)).To(ContainSubstring("maxmemory 1gb")) }, eventually, poll).Should(Succeed())
		Expect(k8sClient.Get(ctx, key("sessions-password"), secret)).To(Succeed())
		Expect(string(secret.Data["password"])).To(Equal(password))
	})

	It("renders the baseline and the profile's differences into redis.conf", func() {
		durable := newRedisCluster(ns, "durable", func(rc *v1alpha1.RedisCluster) { rc.Spec.Profile = v1alpha1.ProfileDurable })
		cache := newRedisCluster(ns, "cache", func(rc *v1alpha1.RedisCluster) { rc.Spec.Profile = v1alpha1.ProfileCache })
		baseline := []string{"cluster-enabled yes", "cluster-config-file nodes.conf", "maxmemory 8gb",
			"save 900 1", "save 300 10", "save 60 10000", "appendfsync everysec", "hz 10", "dynamic-hz yes",
			"tcp-backlog 511", "timeout 300", "cluster-preferred-endpoint-type hostname"}
		Eventually(func(g Gomega) {
			d, c := redisConf(g, durable), redisConf(g, cache)
			for _, line := range baseline {
				g.Expect(d).To(ContainSubstring(line + "\n"))
				g.Expect(c).To(ContainSubstring(line + "\n"))
			}
			g.Expect(d).To(ContainSubstring("maxmemory-policy noeviction\n"))
			g.Expect(d).To(ContainSubstring("appendonly yes\n"))
			g.Expect(c).To(ContainSubstring("maxmemory-policy allkeys-lru\n"))
			g.Expect(c).To(ContainSubstring("appendonly no\n"))
			// The password is never written into the ConfigMap.
			g.Expect(d).NotTo(ContainSubstring(testRedisPassword))
			g.Expect(d).NotTo(ContainSubstring("requirepass"))
		}, eventually, poll).Should(Succeed())
	})

	It("refuses invalid overrides: operator-owned keys at the API, bad values with InvalidConfig", func() {
		testRedisSecret(ns)
		for _, owned := range []string{"port", "cluster-node-timeout", "requirepass"} {
			rc := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"},
				Spec: v1alpha1.RedisClusterSpec{Config: map[string]string{owned: "1"}}}
			err := k8sClient.Create(ctx, rc)
			Expect(err).To(HaveOccurred(), owned)
			Expect(err.Error()).To(ContainSubstring("operator owns"))
		}

		rc := newRedisCluster(ns, "bad-values", func(rc *v1alpha1.RedisCluster) {
			rc.Spec.Config = map[string]string{"maxmemory-policy": "evict-everything", "no-such-directive": "1"}
		})
		c := expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionFalse, eventually)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonInvalidConfig))
		Expect(c.Message).To(And(ContainSubstring("maxmemory-policy"), ContainSubstring("no-such-directive")))
		Consistently(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bad-values"}, &appsv1.StatefulSet{})
		}, time.Second, poll).ShouldNot(Succeed(), "nothing is applied for an invalid config")

		By("fixing the values")
		updateRedisCluster(rc, func(rc *v1alpha1.RedisCluster) { rc.Spec.Config = map[string]string{"maxmemory-policy": "noeviction"} })
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
	})

	It("forms the cluster from the local nodes and reports it Ready", func() {
		rc := newRedisCluster(ns, "shop-redis", nil)
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
		Expect(rc.Status.ClusterState).To(Equal("ok"))
		Expect(rc.Status.SlotsAssigned).To(BeEquivalentTo(rediscluster.Slots))
		Expect(rc.Status.Shards).To(BeEquivalentTo(3))
		Expect(rc.Status.ReadyNodes).To(BeEquivalentTo(6))
		Expect(rc.Status.ClientService).To(Equal("shop-redis-client." + ns + ".svc:6379"))
		Expect(rc.Status.PasswordSecret).To(Equal(testRedisSecretName))
		Expect(rc.Status.ObservedGeneration).To(Equal(rc.Generation))
		Expect(rc.Status.ConfigHash).NotTo(BeEmpty())
		Expect(meta.IsStatusConditionFalse(rc.Status.Conditions, v1alpha1.ConditionDegraded)).To(BeTrue())

		// Redis agrees, on every node.
		for _, m := range sharedRedis {
			info, err := nodeClient(m).ClusterInfo(ctx).Result()
			Expect(err).NotTo(HaveOccurred())
			Expect(rediscluster.ParseInfo(info)).To(HaveKeyWithValue("cluster_state", "ok"))
			Expect(rediscluster.ParseInfo(info)).To(HaveKeyWithValue("cluster_slots_assigned", "16384"))
		}

		By("losing every node")
		setRedisAvailable(rc, false)
		c := expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionFalse, eventually)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonNodesNotReady))
		Expect(meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionDegraded)).To(BeTrue())
		setRedisAvailable(rc, true)
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
	})

	It("applies a changed live setting with CONFIG SET without rolling the pods", func() {
		rc := newRedisCluster(ns, "live", func(rc *v1alpha1.RedisCluster) {
			rc.Spec.Config = map[string]string{"maxmemory-samples": "7"}
		})
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
		samples := func(g Gomega) []string {
			var out []string
			for _, m := range sharedRedis {
				v, err := nodeClient(m).ConfigGet(ctx, "maxmemory-samples").Result()
				g.Expect(err).NotTo(HaveOccurred())
				out = append(out, v["maxmemory-samples"])
			}
			return out
		}
		restartHash := func(g Gomega) string {
			sts := &appsv1.StatefulSet{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), sts)).To(Succeed())
			return sts.Spec.Template.Annotations[controllers.AnnotationRedisRestartHash]
		}
		Eventually(samples, eventually, poll).Should(HaveEach("7"))
		before, hashBefore := restartHash(Default), rc.Status.ConfigHash

		updateRedisCluster(rc, func(rc *v1alpha1.RedisCluster) { rc.Spec.Config["maxmemory-samples"] = "9" })
		Eventually(samples, eventually, poll).Should(HaveEach("9"))
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			g.Expect(rc.Status.ConfigHash).NotTo(Equal(hashBefore))
			g.Expect(redisConf(g, rc)).To(ContainSubstring("maxmemory-samples 9\n"))
		}, eventually, poll).Should(Succeed())
		Expect(restartHash(Default)).To(Equal(before), "a live setting must not roll the pods")

		By("a restart-only setting rolling them")
		updateRedisCluster(rc, func(rc *v1alpha1.RedisCluster) { rc.Spec.Config["tcp-backlog"] = "1024" })
		Eventually(restartHash, eventually, poll).ShouldNot(Equal(before))
	})

	It("scales out from 3 to 4 shards and back without losing a key", func() {
		// Its own nodes: scaling the shared cluster would change it under
		// every other spec.
		nodes := startRedisNodes(8)
		key := client.ObjectKey{Namespace: ns, Name: "scaling"}
		localRedis.Set(key, nodes[:6])
		DeferCleanup(localRedis.Delete, key)
		rc := newRedisCluster(ns, "scaling", nil)
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)

		addrs := make([]string, len(nodes))
		for i, n := range nodes {
			addrs[i] = n.Addr
		}
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:6], Password: testRedisPassword})
		DeferCleanup(cc.Close)
		const keys = 2000
		for i := range keys {
			Expect(cc.Set(ctx, fmt.Sprintf("key:%d", i), i, 0).Err()).To(Succeed())
		}

		By("adding two nodes (the StatefulSet growing) and a shard")
		localRedis.Set(key, nodes)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, rc)).To(Succeed())
			rc.Spec.Shards = 4
			g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, rc)).To(Succeed())
			g.Expect(rc.Status.Shards).To(BeEquivalentTo(4))
			g.Expect(meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(rc.Status.SlotsAssigned).To(BeEquivalentTo(rediscluster.Slots))
		}, redisConverge, poll).Should(Succeed())
		sts := &appsv1.StatefulSet{}
		Expect(k8sClient.Get(ctx, key, sts)).To(Succeed())
		Expect(sts.Spec.Replicas).To(HaveValue(BeEquivalentTo(8)))

		// Balanced: every primary owns a quarter of the slots, ±1.
		shards, err := cc.ClusterShards(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		var owned []int64
		for _, sh := range shards {
			var n int64
			for _, r := range sh.Slots {
				n += r.End - r.Start + 1
			}
			if n > 0 {
				owned = append(owned, n)
			}
		}
		Expect(owned).To(HaveLen(4))
		Expect(owned).To(HaveEach(BeNumerically("~", rediscluster.Slots/4, 1)))
		expectKeys(cc, keys)

		By("scaling back in to 3 shards: slots move off the leaving nodes before their pods go")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, rc)).To(Succeed())
			rc.Spec.Shards = 3
			g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, rc)).To(Succeed())
			g.Expect(rc.Status.Shards).To(BeEquivalentTo(3))
			g.Expect(meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(k8sClient.Get(ctx, key, sts)).To(Succeed())
			g.Expect(sts.Spec.Replicas).To(HaveValue(BeEquivalentTo(6)))
		}, redisConverge, poll).Should(Succeed())
		for _, n := range nodes[6:] {
			info, err := nodeClient(n).ClusterInfo(ctx).Result()
			Expect(err).NotTo(HaveOccurred())
			Expect(rediscluster.ParseInfo(info)).To(HaveKeyWithValue("cluster_known_nodes", "1"), "a left node is reset")
		}
		expectKeys(cc, keys)
	})

	It("refuses to scale in while a leaving node does not answer", func() {
		servers := redistest.StartNodes(GinkgoT(), 8, "repl-diskless-sync-delay 0")
		nodes := protect(servers)
		key := client.ObjectKey{Namespace: ns, Name: "refusing"}
		localRedis.Set(key, nodes)
		DeferCleanup(localRedis.Delete, key)
		rc := newRedisCluster(ns, "refusing", func(rc *v1alpha1.RedisCluster) { rc.Spec.Shards = 4 })
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)

		By("losing a node that a scale-in to 3 shards would remove")
		Expect(servers[7].Kill()).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, rc)).To(Succeed())
			rc.Spec.Shards = 3
			g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		c := expectRedisCondition(rc, v1alpha1.ConditionDegraded, metav1.ConditionTrue, redisConverge)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonScaleInRefused), c.Message)
		Eventually(func(g Gomega) {
			var events eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(HaveField("Reason", v1alpha1.ReasonScaleInRefused)))
		}, eventually, poll).Should(Succeed())
		sts := &appsv1.StatefulSet{}
		Consistently(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, sts)).To(Succeed())
			g.Expect(sts.Spec.Replicas).To(HaveValue(BeEquivalentTo(8)), "the leaving pods stay")
		}, 2*time.Second, poll).Should(Succeed())
	})
})

// updateRedisCluster applies mutate to the latest version of rc and updates
// it, retrying on conflicts: the reconciler writes status all the time, so
// an Update of a copy read earlier is refused with 409.
func updateRedisCluster(rc *v1alpha1.RedisCluster, mutate func(*v1alpha1.RedisCluster)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
		mutate(rc)
		g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
	}, eventually, poll).Should(Succeed())
}
