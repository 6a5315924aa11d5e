package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// restartable maps a node address to the process behind it, for the
// member source's restart hook (restartLocalNode).
var restartable sync.Map

// restartLocalNode is the suite's LocalRedisMembers.RestartMember.
func restartLocalNode(_ context.Context, m rediscluster.Member) error {
	s, ok := restartable.Load(m.Addr)
	if !ok {
		return fmt.Errorf("%s: %w", m.Addr, controllers.ErrRestartUnsupported)
	}
	return s.(*redistest.Server).Restart()
}

// startRestartableNodes starts n blank nodes whose password is in their
// own directives, so a restarted node still has it, and registers them for
// restartLocalNode.
func startRestartableNodes(n int) ([]*redistest.Server, []rediscluster.Member) {
	GinkgoHelper()
	servers := redistest.StartNodes(GinkgoT(), n, "repl-diskless-sync-delay 0",
		"requirepass "+testRedisPassword, "masterauth "+testRedisPassword)
	members := make([]rediscluster.Member, n)
	for i, s := range servers {
		restartable.Store(s.Addr(), s)
		members[i] = rediscluster.Member{Name: fmt.Sprintf("node-%d", s.Port), Addr: s.Addr(), BusPort: s.BusPort}
	}
	DeferCleanup(func() {
		for _, s := range servers {
			restartable.Delete(s.Addr())
		}
	})
	return servers, members
}

// ownNodes gives the cluster key its own nodes (the suite's shared cluster
// must not be filled, exhausted or restarted under the other specs).
func ownNodes(ns, name string, members []rediscluster.Member) {
	key := client.ObjectKey{Namespace: ns, Name: name}
	localRedis.Set(key, members)
	DeferCleanup(func() {
		// Left mapped to the shared nodes, the cluster would bring its
		// tiny maxclients or maxmemory to every other spec.
		rc := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, rc))).To(Succeed())
		localRedis.Set(key, []rediscluster.Member{})
	})
}

// lookAgain makes the reconciler observe the cluster now, as a pod event
// would; without it the next look comes after the computed interval.
func lookAgain(ns, name string, members []rediscluster.Member) {
	localRedis.Set(client.ObjectKey{Namespace: ns, Name: name}, members)
}

// clusterClient is an application's client of the nodes.
func clusterClient(members []rediscluster.Member) *redis.ClusterClient {
	addrs := make([]string, len(members))
	for i, m := range members {
		addrs[i] = m.Addr
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: testRedisPassword})
	DeferCleanup(cc.Close)
	return cc
}

// scrape fetches the manager's metrics through the same promhttp handler
// the metrics server serves, and parses the exposition text.
func scrape() map[string]*dto.MetricFamily {
	GinkgoHelper()
	srv := httptest.NewServer(promhttp.HandlerFor(metricsRegistry, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return families
}

// sample is one scraped series: its labels and value.
type sample struct {
	Labels map[string]string
	Value  float64
}

// series returns the samples of one metric for one cluster.
func series(families map[string]*dto.MetricFamily, name, ns, cluster string) []sample {
	var out []sample
	f, ok := families[name]
	if !ok {
		return nil
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["namespace"] != ns || labels["cluster"] != cluster {
			continue
		}
		v := m.GetGauge().GetValue()
		if m.GetCounter() != nil {
			v = m.GetCounter().GetValue()
		}
		out = append(out, sample{Labels: labels, Value: v})
	}
	return out
}

func byNode(samples []sample) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		out[s.Labels["node"]] = s.Value
	}
	return out
}

// nodeInfo reads one node's INFO directly, to compare with the metrics.
func nodeInfo(m rediscluster.Member) redisinfo.Info {
	GinkgoHelper()
	text, err := nodeClient(m).Info(ctx, redisinfo.Sections...).Result()
	Expect(err).NotTo(HaveOccurred())
	info, err := redisinfo.Parse(text)
	Expect(err).NotTo(HaveOccurred())
	return info
}

// table fetches the object as kubectl get does: the API server applies the
// CRD's printer columns.
func table(rc *v1alpha1.RedisCluster) map[string]any {
	GinkgoHelper()
	hc, err := rest.HTTPClientFor(cfg)
	Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("%s/apis/gatehouse.dev/v1alpha1/namespaces/%s/redisclusters/%s", strings.TrimSuffix(cfg.Host, "/"), rc.Namespace, rc.Name), nil)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	Expect(resp.StatusCode).To(Equal(http.StatusOK), "GET %s: %s", req.URL, body)
	var t metav1.Table
	Expect(json.Unmarshal(body, &t)).To(Succeed())
	Expect(t.Rows).To(HaveLen(1))
	out := map[string]any{}
	for i, c := range t.ColumnDefinitions {
		out[c.Name] = t.Rows[0].Cells[i]
	}
	return out
}

// eventReasons lists the reasons of the events about rc.
func eventReasons(g Gomega, rc *v1alpha1.RedisCluster) []string {
	var events eventsv1.EventList
	g.Expect(k8sClient.List(ctx, &events, client.InNamespace(rc.Namespace))).To(Succeed())
	var out []string
	for _, e := range events.Items {
		if e.Regarding.Name == rc.Name {
			out = append(out, e.Reason)
		}
	}
	return out
}

var _ = Describe("RedisCluster monitoring", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	It("exposes every node's INFO as metrics, and the summary in status and printer columns", func() {
		rc := newRedisCluster(ns, "watched", nil)
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)

		By("looking keys up through a client: 30 hits and 20 misses")
		cc := clusterClient(sharedRedis)
		for i := range 30 {
			Expect(cc.Set(ctx, fmt.Sprintf("watched:%d", i), i, time.Minute).Err()).To(Succeed())
			Expect(cc.Get(ctx, fmt.Sprintf("watched:%d", i)).Err()).To(Succeed())
		}
		for i := range 20 {
			Expect(cc.Get(ctx, fmt.Sprintf("watched:missing:%d", i)).Err()).To(MatchError(redis.Nil))
		}
		var hitsBefore, missesBefore float64
		for _, m := range sharedRedis {
			i := nodeInfo(m)
			hitsBefore += float64(i.Stats.KeyspaceHits)
			missesBefore += float64(i.Stats.KeyspaceMisses)
		}
		lookAgain(ns, rc.Name, sharedRedis)

		By("scraping the manager's metrics")
		var families map[string]*dto.MetricFamily
		Eventually(func(g Gomega) {
			families = scrape()
			var hits, misses float64
			for _, s := range series(families, "gatehouse_redis_keyspace_hits_total", ns, rc.Name) {
				hits += s.Value
			}
			for _, s := range series(families, "gatehouse_redis_keyspace_misses_total", ns, rc.Name) {
				misses += s.Value
			}
			g.Expect(hits).To(BeNumerically(">=", hitsBefore), "hits: an observation after the lookups")
			g.Expect(misses).To(BeNumerically(">=", missesBefore))
		}, redisConverge, poll).Should(Succeed())

		up := series(families, "gatehouse_redis_up", ns, rc.Name)
		Expect(up).To(HaveLen(6))
		roles, shards := map[string]int{}, map[string]int{}
		for _, s := range up {
			Expect(s.Value).To(Equal(1.0), "%v", s.Labels)
			roles[s.Labels["role"]]++
			shards[s.Labels["shard"]]++
		}
		Expect(roles).To(Equal(map[string]int{"primary": 3, "replica": 3}))
		Expect(shards).To(Equal(map[string]int{"0": 2, "1": 2, "2": 2}), "each shard: its primary and its replica")

		// Values the nodes report themselves, and that do not move.
		maxMem := byNode(series(families, "gatehouse_redis_memory_max_bytes", ns, rc.Name))
		maxClients := byNode(series(families, "gatehouse_redis_max_clients", ns, rc.Name))
		used := byNode(series(families, "gatehouse_redis_memory_used_bytes", ns, rc.Name))
		frag := byNode(series(families, "gatehouse_redis_memory_fragmentation_ratio", ns, rc.Name))
		for _, m := range sharedRedis {
			i := nodeInfo(m)
			Expect(maxMem[m.Name]).To(Equal(float64(i.Memory.Max)), m.Name)
			Expect(maxClients[m.Name]).To(Equal(float64(i.Clients.MaxClients)), m.Name)
			Expect(used[m.Name]).To(BeNumerically("~", float64(i.Memory.Used), float64(i.Memory.Used)/2), m.Name)
			Expect(frag[m.Name]).To(BeNumerically(">", 0), m.Name)
		}
		Expect(series(families, "gatehouse_redis_replication_lag_bytes", ns, rc.Name)).To(HaveLen(3), "one per replica")
		keys := byNode(series(families, "gatehouse_redis_keys", ns, rc.Name))
		for node, n := range byNode(series(families, "gatehouse_redis_keys_without_expiry", ns, rc.Name)) {
			Expect(n).To(BeNumerically("<=", keys[node]), node)
		}
		Expect(series(families, "gatehouse_redis_cluster_ok", ns, rc.Name)).To(ConsistOf(HaveField("Value", 1.0)))
		Expect(series(families, "gatehouse_redis_rejected_connections_total", ns, rc.Name)).To(HaveLen(6))
		last := series(families, "gatehouse_redis_last_observation_timestamp_seconds", ns, rc.Name)
		Expect(last).To(HaveLen(1))
		Expect(time.Unix(int64(last[0].Value), 0)).To(BeTemporally("~", time.Now(), time.Minute))
		Expect(families["gatehouse_redis_keyspace_hits_total"].GetType().String()).To(Equal("COUNTER"))

		By("the status summary and the kubectl columns")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			h := rc.Status.Health
			g.Expect(h).NotTo(BeNil())
			g.Expect(h.KeyspaceHitRatio).NotTo(BeEmpty())
			g.Expect(h.MaxFragmentationRatio).NotTo(BeEmpty())
			g.Expect(h.MemoryMax.Value()).To(Equal(int64(maxMem[sharedRedis[0].Name]) * 3))
			for _, typ := range []string{v1alpha1.ConditionMemoryPressure, v1alpha1.ConditionFragmented, v1alpha1.ConditionPersistenceFailing,
				v1alpha1.ConditionClientsRejected, v1alpha1.ConditionReplicaLagging, v1alpha1.ConditionConnectionBudget} {
				c := meta.FindStatusCondition(rc.Status.Conditions, typ)
				g.Expect(c).NotTo(BeNil(), typ)
				g.Expect(c.Status).To(Equal(metav1.ConditionFalse), "%s: %s", typ, c.Message)
				g.Expect(c.Reason).To(Equal(v1alpha1.ReasonAsExpected))
			}
			g.Expect(rc.Status.SidecarPoolSize).To(BeEquivalentTo(20))
		}, eventually, poll).Should(Succeed())
		cols := table(rc)
		Expect(cols).To(HaveKeyWithValue("Frag", rc.Status.Health.MaxFragmentationRatio))
		Expect(cols).To(HaveKeyWithValue("Hits", rc.Status.Health.KeyspaceHitRatio))
		Expect(cols).To(HaveKeyWithValue("Rejected", BeNumerically("==", rc.Status.Health.RejectedConnections)))
		Expect(cols).To(HaveKeyWithValue("Mem%", BeNumerically("==", *rc.Status.Health.MemoryUsedPercent)))
		Expect(cols).To(HaveKeyWithValue("Ready", "True"))

		By("forgetting the metrics of a deleted cluster")
		Expect(k8sClient.Delete(ctx, rc)).To(Succeed())
		Eventually(func() []sample { return series(scrape(), "gatehouse_redis_up", ns, rc.Name) }, eventually, poll).Should(BeEmpty())
	})

	It("reports ClientsRejected after a client exhausts a tiny maxclients, and its end", func() {
		_, members := startRestartableNodes(6)
		ownNodes(ns, "crowded", members)
		// 6 nodes keep 10 bus links each, a primary one replica link, the
		// operator a few: 32 leaves room for about 15 more.
		rc := newRedisCluster(ns, "crowded", func(rc *v1alpha1.RedisCluster) {
			rc.Spec.Config = map[string]string{"maxclients": "32"}
		})
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
		Eventually(func() int64 { return nodeInfo(members[0]).Clients.MaxClients }, eventually, poll).Should(BeEquivalentTo(32))
		c := expectRedisCondition(rc, v1alpha1.ConditionClientsRejected, metav1.ConditionFalse, eventually)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonAsExpected))

		By("opening 40 connections to one node and holding them")
		var held []net.Conn
		refused := 0
		for range 40 {
			conn, err := net.Dial("tcp", members[0].Addr)
			Expect(err).NotTo(HaveOccurred())
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(conn, "PING\r\n")
			buf := make([]byte, 128)
			n, _ := conn.Read(buf)
			// Cluster mode says "max number of clients + cluster connections reached".
			if strings.Contains(string(buf[:n]), "max number of clients") {
				refused++
				_ = conn.Close()
				continue
			}
			held = append(held, conn)
		}
		for _, conn := range held {
			_ = conn.Close()
		}
		GinkgoWriter.Printf("held %d connections to %s, %d refused; INFO clients now %+v\n", len(held), members[0].Name, refused, nodeInfo(members[0]).Clients)
		Expect(refused).To(BeNumerically(">", 0), "maxclients 32 refused nothing")
		lookAgain(ns, rc.Name, members)

		c = expectRedisCondition(rc, v1alpha1.ConditionClientsRejected, metav1.ConditionTrue, redisConverge)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonMaxClientsReached))
		Expect(c.Message).To(ContainSubstring(members[0].Name))
		Expect(c.Message).To(ContainSubstring("maxclients 32"))
		Expect(rc.Status.Health.RejectedConnections).To(BeNumerically(">=", refused))
		Expect(table(rc)).To(HaveKeyWithValue("Rejected", BeNumerically(">=", refused)))

		By("no more rejections by the next look: the condition ends, with an event each way")
		expectRedisCondition(rc, v1alpha1.ConditionClientsRejected, metav1.ConditionFalse, redisConverge)
		Expect(rc.Status.Health.RejectedConnections).To(BeZero())
		Eventually(func(g Gomega) {
			g.Expect(eventReasons(g, rc)).To(ContainElements(v1alpha1.ReasonMaxClientsReached, "ClientsRejectedResolved"))
		}, eventually, poll).Should(Succeed())
	})

	It("reports MemoryPressure when a Durable cluster with a small maxmemory fills up", func() {
		_, members := startRestartableNodes(6)
		ownNodes(ns, "full", members)
		rc := newRedisCluster(ns, "full", func(rc *v1alpha1.RedisCluster) {
			rc.Spec.Profile = v1alpha1.ProfileDurable
			rc.Spec.Config = map[string]string{"maxmemory": "8mb"}
		})
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
		Eventually(func() string { return nodeInfo(members[0]).Memory.Policy }, eventually, poll).Should(Equal("noeviction"))
		Eventually(func() int64 { return nodeInfo(members[0]).Memory.Max }, eventually, poll).Should(BeEquivalentTo(8 << 20))
		expectRedisCondition(rc, v1alpha1.ConditionMemoryPressure, metav1.ConditionFalse, eventually)

		By("writing 1 KiB values until the nodes refuse with OOM")
		cc := clusterClient(members)
		value := strings.Repeat("x", 1024)
		var oom error
		for i := 0; i < 100_000 && oom == nil; i++ {
			if err := cc.Set(ctx, fmt.Sprintf("fill:%d", i), value, 0).Err(); err != nil {
				Expect(err.Error()).To(HavePrefix("OOM"))
				oom = err
			}
		}
		Expect(oom).To(HaveOccurred(), "the cluster never filled")
		lookAgain(ns, rc.Name, members)

		c := expectRedisCondition(rc, v1alpha1.ConditionMemoryPressure, metav1.ConditionTrue, redisConverge)
		Expect(c.Reason).To(BeElementOf(v1alpha1.ReasonMaxMemoryReached, v1alpha1.ReasonNearMaxMemory))
		Expect(c.Message).To(ContainSubstring("noeviction"))
		Expect(*rc.Status.Health.MemoryUsedPercent).To(BeNumerically(">=", 90))
		Expect(table(rc)).To(HaveKeyWithValue("Mem%", BeNumerically(">=", 90)))

		By("emptying the cluster: the pressure ends")
		for _, m := range members {
			if nodeInfo(m).Replication.Role == redisinfo.RolePrimary {
				Expect(nodeClient(m).FlushAll(ctx).Err()).To(Succeed())
			}
		}
		lookAgain(ns, rc.Name, members)
		expectRedisCondition(rc, v1alpha1.ConditionMemoryPressure, metav1.ConditionFalse, redisConverge)
		Eventually(func(g Gomega) {
			g.Expect(eventReasons(g, rc)).To(ContainElement("MemoryPressureResolved"))
			g.Expect(eventReasons(g, rc)).To(ContainElement(BeElementOf(v1alpha1.ReasonMaxMemoryReached, v1alpha1.ReasonNearMaxMemory)))
		}, eventually, poll).Should(Succeed())
	})

	It("caps the sidecars' pool size to the connection budget and renders it", func() {
		rc := newRedisCluster(ns, "budget", func(rc *v1alpha1.RedisCluster) { rc.Spec.SidecarPoolSize = ptr.To[int32](1000) })
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)
		session := typed("gatehouse_v1alpha1_sessionpolicy.yaml", &v1alpha1.SessionPolicy{})
		session.Namespace, session.Spec.RedisRef.Name = ns, "budget"
		Expect(k8sClient.Create(ctx, session)).To(Succeed())

		By("ten pods with the sidecar that the policy selects, and one it does not")
		pod := func(name string, labels map[string]string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
					Annotations: map[string]string{controllers.AnnotationSidecarVersion: "test"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
			}
		}
		var pods []*corev1.Pod
		for i := range 10 {
			p := pod(fmt.Sprintf("storefront-%d", i), map[string]string{"app": "storefront"})
			Expect(k8sClient.Create(ctx, p)).To(Succeed())
			pods = append(pods, p)
		}
		Expect(k8sClient.Create(ctx, pod("other", map[string]string{"app": "other"}))).To(Succeed())

		// 10 × (1000 + 2) = 10020 connections per node exceed maxclients
		// 10000 less the 43 a 3+3 cluster keeps: 9957 / 10 - 2 = 993 each.
		c := expectRedisCondition(rc, v1alpha1.ConditionConnectionBudget, metav1.ConditionTrue, eventually)
		Expect(c.Reason).To(Equal(v1alpha1.ReasonPoolSizeCapped))
		Expect(c.Message).To(ContainSubstring("lowered to 993"))
		Expect(rc.Status.SidecarPoolSize).To(BeEquivalentTo(993))
		Expect(rc.Status.Connections).To(Equal(&v1alpha1.RedisConnectionBudget{Sidecars: 10, PerNode: 10020, Available: 9957}))
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Redis).To(ContainElement(And(HaveField("Name", "budget"), HaveField("PoolSize", 993))))
		}, eventually, poll).Should(Succeed())

		By("two pods going: the sidecars fit again")
		for _, p := range pods[:2] {
			Expect(k8sClient.Delete(ctx, p)).To(Succeed())
		}
		expectRedisCondition(rc, v1alpha1.ConditionConnectionBudget, metav1.ConditionFalse, eventually)
		Expect(rc.Status.SidecarPoolSize).To(BeEquivalentTo(1000))
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Redis).To(ContainElement(And(HaveField("Name", "budget"), HaveField("PoolSize", 1000))))
			g.Expect(eventReasons(g, rc)).To(ContainElements(v1alpha1.ReasonPoolSizeCapped, "ConnectionBudgetResolved"))
		}, eventually, poll).Should(Succeed())
	})

	It("restarts a pod member by deleting its pod, for the StatefulSet to recreate", func() {
		rc := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"}}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods-1"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "redis", Image: "redis"}}}}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		members := controllers.PodRedisMembers{Client: k8sClient}
		Expect(members.Restart(ctx, rc, rediscluster.Member{Name: "pods-1"})).To(Succeed())
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod) }, eventually, poll).
			Should(Satisfy(apierrors.IsNotFound))
		Expect(members.Restart(ctx, rc, rediscluster.Member{Name: "pods-1"})).To(MatchError(ContainSubstring("not found")))
		Expect(controllers.NewLocalRedisMembers(nil).Restart(ctx, rc, rediscluster.Member{Name: "x"})).To(MatchError(controllers.ErrRestartUnsupported))
	})

	It("restarts fragmented nodes in the maintenance window without losing a write or a read", func() {
		servers, members := startRestartableNodes(6)
		ownNodes(ns, "maint", members)
		rc := newRedisCluster(ns, "maint", nil)
		expectRedisCondition(rc, v1alpha1.ConditionReady, metav1.ConditionTrue, redisConverge)

		cc := clusterClient(members)
		const keys = 10_000
		for start := 0; start < keys; start += 500 {
			_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := start; i < start+500; i++ {
					p.Set(ctx, fmt.Sprintf("key:%d", i), i, 0)
				}
				return nil
			})
			Expect(err).NotTo(HaveOccurred())
		}
		expectKeys(cc, keys)
		runIDs := map[string]string{}
		for _, m := range members {
			runIDs[m.Name] = nodeInfo(m).Server.RunID
		}

		By("reading all the time, from four clients")
		var (
			reads, failed atomic.Int64
			stop          atomic.Bool
			wg            sync.WaitGroup
			failuresMu    sync.Mutex
			failures      []string
		)
		for range 4 {
			wg.Go(func() {
				for !stop.Load() {
					i := rand.IntN(keys)
					v, err := cc.Get(ctx, fmt.Sprintf("key:%d", i)).Int()
					reads.Add(1)
					if err != nil || v != i {
						failed.Add(1)
						failuresMu.Lock()
						failures = append(failures, fmt.Sprintf("%s key:%d = %d, %v", time.Now().Format("15:04:05.000"), i, v, err))
						failuresMu.Unlock()
					}
					// An application's pace, not a benchmark's: the
					// machine is shared.
					time.Sleep(200 * time.Microsecond)
				}
			})
		}
		DeferCleanup(func() { stop.Store(true); wg.Wait() })

		By("opening a maintenance window at the next minute, with the restart ratio lowered to 1")
		start := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			rc.Spec.Maintenance = &v1alpha1.RedisMaintenance{Start: start.Format("15:04"),
				Duration: &metav1.Duration{Duration: 30 * time.Minute}, FragmentationRatio: new(resource.MustParse("1"))}
			rc.Spec.Thresholds = &v1alpha1.RedisThresholds{FragmentationMinBytes: new(resource.MustParse("0"))}
			g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			g.Expect(rc.Status.Maintenance).NotTo(BeNil())
			g.Expect(rc.Status.Maintenance.NextWindow).NotTo(BeNil())
			g.Expect(rc.Status.Maintenance.NextWindow.Time).To(BeTemporally("==", start))
		}, eventually, poll).Should(Succeed())
		if time.Until(start) > 5*time.Second {
			Consistently(func() string { return nodeInfo(members[0]).Server.RunID }, time.Until(start)-3*time.Second, time.Second).
				Should(Equal(runIDs[members[0].Name]), "nothing restarts before the window opens")
		}

		By("every node restarting once, one at a time, primaries only after a failover")
		Eventually(func(g Gomega) {
			for _, m := range members {
				info, err := func() (redisinfo.Info, error) {
					text, err := nodeClient(m).Info(ctx, redisinfo.Sections...).Result()
					if err != nil {
						return redisinfo.Info{}, err
					}
					return redisinfo.Parse(text)
				}()
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(info.Server.RunID).NotTo(Equal(runIDs[m.Name]), "%s not restarted yet", m.Name)
			}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			g.Expect(rc.Status.Maintenance.Pending).To(BeEmpty())
			g.Expect(meta.IsStatusConditionTrue(rc.Status.Conditions, v1alpha1.ConditionReady)).To(BeTrue())
		}, 5*time.Minute, time.Second).Should(Succeed())
		stop.Store(true)
		wg.Wait()

		var restarts, failovers int
		Eventually(func(g Gomega) {
			reasons := eventReasons(g, rc)
			restarts = countOf(reasons, "MaintenanceRestart")
			failovers = countOf(reasons, "MaintenanceFailover")
			g.Expect(restarts).To(Equal(6))
			g.Expect(failovers).To(Equal(3), "each of the 3 primaries failed over before its restart")
		}, eventually, poll).Should(Succeed())
		Expect(countOf(eventReasons(Default, rc), "MaintenanceFailed")).To(BeZero())
		Expect(servers).To(HaveEach(Satisfy((*redistest.Server).Running)))

		By("no write lost, and at most the documented number of failed reads per failover")
		expectKeys(cc, keys)
		// docs/redis-cluster.md: a go-redis ClusterClient with its default
		// retries and redirects sees at most maintenanceFailedReadsPerFailover
		// failed reads per failover.
		GinkgoWriter.Printf("maintenance: %d reads, %d failed, over %d failovers and %d restarts\n%s\n",
			reads.Load(), failed.Load(), failovers, restarts, strings.Join(failures, "\n"))
		Expect(reads.Load()).To(BeNumerically(">", 1000), "the readers did not run")
		Expect(failed.Load()).To(BeNumerically("<=", maintenanceFailedReadsPerFailover*failovers), strings.Join(failures, "\n"))

		By("each node restarted once: the window does not restart them again")
		ids := map[string]string{}
		for _, m := range members {
			ids[m.Name] = nodeInfo(m).Server.RunID
		}
		Consistently(func(g Gomega) {
			for _, m := range members {
				g.Expect(nodeInfo(m).Server.RunID).To(Equal(ids[m.Name]))
			}
		}, 10*time.Second, time.Second).Should(Succeed())
		last := rc.Status.Maintenance.LastRestart
		Expect(last).NotTo(BeNil())
		Expect(slices.ContainsFunc(members, func(m rediscluster.Member) bool { return m.Name == last.Node })).To(BeTrue())
		Expect(strconv.ParseFloat(last.FragmentationRatio, 64)).To(BeNumerically(">", 1))
	})
})

// maintenanceFailedReadsPerFailover is the bound docs/redis-cluster.md
// states for a go-redis ClusterClient with its defaults.
const maintenanceFailedReadsPerFailover = 0

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
