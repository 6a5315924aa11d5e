package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

const (
	eventually = 20 * time.Second
	poll       = 100 * time.Millisecond
)

// typed decodes a sample into its Go type.
func typed[T client.Object](file string, into T) T {
	GinkgoHelper()
	u := loadSample(file)
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into)).To(Succeed())
	return into
}

// readyRedis creates the samples' 3×1 RedisCluster "shop-redis", served by
// the suite's shared local nodes, and waits until its reconciler reports it
// Ready.
func readyRedis(ns string) {
	GinkgoHelper()
	rc := newRedisCluster(ns, "shop-redis", nil)
	setRedisReady(rc, true)
}

// setRedisReady makes rc's nodes unavailable (or available again) through
// the local member source and waits for the reconciler to report it.
func setRedisReady(rc *v1alpha1.RedisCluster, ready bool) {
	GinkgoHelper()
	if ready && rc.Spec.PasswordSecretRef == nil {
		// Created without the password of the local nodes.
		testRedisSecret(rc.Namespace)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(rc), rc)).To(Succeed())
			rc.Spec.PasswordSecretRef = &v1alpha1.SecretKeyReference{Name: testRedisSecretName}
			g.Expect(k8sClient.Update(ctx, rc)).To(Succeed())
		}, eventually, poll).Should(Succeed())
	}
	setRedisAvailable(rc, ready)
	status, timeout := metav1.ConditionFalse, eventually
	if ready {
		status, timeout = metav1.ConditionTrue, redisConverge
	}
	expectRedisCondition(rc, v1alpha1.ConditionReady, status, timeout)
}

// sidecarConfig reads the namespace's rendered configuration.
func sidecarConfig(g Gomega, ns string) (*config.Config, *corev1.ConfigMap) {
	cm := &corev1.ConfigMap{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.SidecarConfigMapName}, cm)).To(Succeed())
	cfg, err := config.Parse([]byte(cm.Data[controllers.SidecarConfigKey]))
	g.Expect(err).NotTo(HaveOccurred())
	return cfg, cm
}

func condition(g Gomega, obj client.Object, typ string) *metav1.Condition {
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	var conds []metav1.Condition
	switch o := obj.(type) {
	case *v1alpha1.SessionPolicy:
		conds = o.Status.Conditions
	case *v1alpha1.RateLimitPolicy:
		conds = o.Status.Conditions
	case *v1alpha1.CachePolicy:
		conds = o.Status.Conditions
	}
	c := meta.FindStatusCondition(conds, typ)
	g.Expect(c).NotTo(BeNil(), "no %s condition yet", typ)
	return c
}

func expectReady(obj client.Object) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		c := condition(g, obj, v1alpha1.ConditionReady)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(obj.GetGeneration()))
	}, eventually, poll).Should(Succeed())
}

func expectReason(obj client.Object, typ, reason string) *metav1.Condition {
	GinkgoHelper()
	var got *metav1.Condition
	Eventually(func(g Gomega) {
		got = condition(g, obj, typ)
		g.Expect(got.Reason).To(Equal(reason), got.Message)
	}, eventually, poll).Should(Succeed())
	return got
}

var _ = Describe("Policy reconcilers", func() {
	var ns string
	var session *v1alpha1.SessionPolicy
	var limits *v1alpha1.RateLimitPolicy
	var cache *v1alpha1.CachePolicy

	BeforeEach(func() {
		ns = newNamespace()
		session = typed("gatehouse_v1alpha1_sessionpolicy.yaml", &v1alpha1.SessionPolicy{})
		limits = typed("gatehouse_v1alpha1_ratelimitpolicy.yaml", &v1alpha1.RateLimitPolicy{})
		cache = typed("gatehouse_v1alpha1_cachepolicy.yaml", &v1alpha1.CachePolicy{})
		for _, o := range []client.Object{session, limits, cache} {
			o.SetNamespace(ns)
		}
	})

	It("renders every sample into the namespace's ConfigMap and reports Ready", func() {
		readyRedis(ns)
		for _, o := range []client.Object{session, limits, cache} {
			Expect(k8sClient.Create(ctx, o)).To(Succeed())
		}
		for _, o := range []client.Object{session, limits, cache} {
			expectReady(o)
		}
		Eventually(func(g Gomega) {
			cfg, cm := sidecarConfig(g, ns)
			g.Expect(cfg.Sessions).To(HaveLen(1))
			g.Expect(cfg.Sessions[0].Name).To(Equal(session.Name))
			g.Expect(cfg.RateLimits).To(HaveLen(1))
			g.Expect(cfg.RateLimits[0].Rules).To(HaveLen(3))
			g.Expect(cfg.Caches).To(HaveLen(1))
			g.Expect(cfg.Redis).To(HaveLen(1))
			g.Expect(cfg.Redis[0].PasswordEnv).To(Equal(redisnames.PasswordEnv("shop-redis")))
			g.Expect(cm.Annotations).To(HaveKeyWithValue(controllers.AnnotationConfigHash, cfg.Hash))
			g.Expect(cm.Labels).To(HaveKeyWithValue(controllers.LabelManagedBy, controllers.ManagedByValue))
			// Every policy owns the ConfigMap, so the garbage collector
			// removes it with the last one.
			g.Expect(cm.OwnerReferences).To(HaveLen(3))
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(limits), limits)).To(Succeed())
			g.Expect(limits.Status.ConfigHash).To(Equal(cfg.Hash))
		}, eventually, poll).Should(Succeed())
	})

	It("follows updates and deletions, and removes the ConfigMap with the last policy", func() {
		readyRedis(ns)
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		Expect(k8sClient.Create(ctx, cache)).To(Succeed())
		expectReady(limits)
		var firstHash string
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(HaveLen(1))
			firstHash = cfg.Hash
		}, eventually, poll).Should(Succeed())

		By("raising a limit")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(limits), limits)).To(Succeed())
			limits.Spec.Rules[0].Limit = 250
			g.Expect(k8sClient.Update(ctx, limits)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits[0].Rules[0].Limit).To(BeEquivalentTo(250))
			g.Expect(cfg.Hash).NotTo(Equal(firstHash))
		}, eventually, poll).Should(Succeed())
		expectReady(limits)

		By("deleting the rate-limit policy")
		Expect(k8sClient.Delete(ctx, limits)).To(Succeed())
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(BeEmpty())
			g.Expect(cfg.Caches).To(HaveLen(1))
		}, eventually, poll).Should(Succeed())

		By("deleting the last policy")
		Expect(k8sClient.Delete(ctx, cache)).To(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.SidecarConfigMapName}, &corev1.ConfigMap{})
		}, eventually, poll).Should(Satisfy(apierrors.IsNotFound))
	})

	It("waits for a missing or unready RedisCluster without rendering half a policy", func() {
		Expect(k8sClient.Create(ctx, session)).To(Succeed())
		c := expectReason(session, v1alpha1.ConditionAccepted, v1alpha1.ReasonRedisClusterNotFound)
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Message).To(ContainSubstring("shop-redis"))
		expectReason(session, v1alpha1.ConditionReady, v1alpha1.ReasonRedisClusterNotFound)
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Sessions).To(BeEmpty())
			g.Expect(cfg.Redis).To(BeEmpty())
		}, eventually, poll).Should(Succeed())

		By("creating the cluster, not yet ready")
		rc := &v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop-redis"}}
		Expect(k8sClient.Create(ctx, rc)).To(Succeed())
		setRedisReady(rc, false)
		expectReason(session, v1alpha1.ConditionReady, v1alpha1.ReasonRedisClusterNotReady)

		By("the cluster becoming ready, without touching the policy")
		generation := session.Generation
		setRedisReady(rc, true)
		expectReady(session)
		Expect(session.Generation).To(Equal(generation))
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Sessions).To(HaveLen(1))
		}, eventually, poll).Should(Succeed())

		By("the cluster failing again: the policy stays in force, sidecars apply its failure mode")
		setRedisReady(rc, false)
		c = expectReason(session, v1alpha1.ConditionReady, v1alpha1.ReasonRedisClusterNotReady)
		Expect(c.Message).To(ContainSubstring("stays in force"))
		Expect(condition(Default, session, v1alpha1.ConditionAccepted).Status).To(Equal(metav1.ConditionTrue))
		Consistently(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Sessions).To(HaveLen(1))
		}, 2*time.Second, poll).Should(Succeed())

		By("the cluster serving again")
		setRedisReady(rc, true)
		expectReady(session)
	})

	// The sidecar's compile step is the gate: a policy the API server
	// admits but the sidecars would refuse is Accepted=False, naming the
	// field, and never rendered. CEL cannot say these two: a quantity rule
	// in a list of 64 rules, or a pattern over an unbounded map of label
	// keys, exceeds the API server's cost budget.
	It("reports a policy the sidecars would refuse as not accepted, naming the field", func() {
		readyRedis(ns)
		huge := resource.MustParse("65Mi")
		cache.Spec.Rules[0].MaxBodyBytes = &huge
		limits.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "storefront", "tier!": "web"}}
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		Expect(k8sClient.Create(ctx, cache)).To(Succeed())
		Expect(k8sClient.Create(ctx, session)).To(Succeed())
		for obj, field := range map[client.Object]string{
			cache:  "spec.rules[0].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 68157440",
			limits: `spec.podSelector.matchLabels: invalid label key "tier!"`,
		} {
			c := expectReason(obj, v1alpha1.ConditionAccepted, v1alpha1.ReasonInvalidSpec)
			Expect(c.Status).To(Equal(metav1.ConditionFalse))
			Expect(c.Message).To(ContainSubstring(field))
			r := expectReason(obj, v1alpha1.ConditionReady, v1alpha1.ReasonInvalidSpec)
			Expect(r.Status).To(Equal(metav1.ConditionFalse))
		}
		expectReady(session)
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(BeEmpty())
			g.Expect(cfg.Caches).To(BeEmpty())
			g.Expect(cfg.Sessions).To(HaveLen(1))
		}, eventually, poll).Should(Succeed())

		By("fixing the fields")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(limits), limits)).To(Succeed())
			limits.Spec.PodSelector.MatchLabels = map[string]string{"app": "storefront", "tier": "web"}
			g.Expect(k8sClient.Update(ctx, limits)).To(Succeed())
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cache), cache)).To(Succeed())
			fits := resource.MustParse("64Mi")
			cache.Spec.Rules[0].MaxBodyBytes = &fits
			g.Expect(k8sClient.Update(ctx, cache)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		expectReady(limits)
		expectReady(cache)
	})

	It("lets the oldest of two overlapping SessionPolicies win", func() {
		readyRedis(ns)
		Expect(k8sClient.Create(ctx, session)).To(Succeed())
		expectReady(session)
		// Creation timestamps have one-second resolution.
		time.Sleep(1100 * time.Millisecond)
		newer := session.DeepCopy()
		newer.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "newer-sessions"}
		newer.Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"storefront", "admin"}},
		}}
		Expect(k8sClient.Create(ctx, newer)).To(Succeed())
		c := expectReason(newer, v1alpha1.ConditionAccepted, v1alpha1.ReasonConflicted)
		Expect(c.Message).To(ContainSubstring(session.Name))
		expectReady(session)

		By("deleting the older policy")
		Expect(k8sClient.Delete(ctx, session)).To(Succeed())
		expectReady(newer)
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.Sessions).To(HaveLen(1))
			g.Expect(cfg.Sessions[0].Name).To(Equal("newer-sessions"))
		}, eventually, poll).Should(Succeed())
	})

	It("repairs a ConfigMap that someone edits or deletes", func() {
		readyRedis(ns)
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		expectReady(limits)
		var want string
		Eventually(func(g Gomega) {
			_, cm := sidecarConfig(g, ns)
			want = cm.Data[controllers.SidecarConfigKey]
		}, eventually, poll).Should(Succeed())

		By("editing the data")
		Eventually(func(g Gomega) {
			_, cm := sidecarConfig(g, ns)
			cm.Data[controllers.SidecarConfigKey] = `{"apiVersion":"sidecar.gatehouse.dev/v1alpha1","kind":"SidecarConfig"}`
			g.Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		Eventually(func(g Gomega) {
			_, cm := sidecarConfig(g, ns)
			g.Expect(cm.Data[controllers.SidecarConfigKey]).To(Equal(want))
		}, eventually, poll).Should(Succeed())

		By("deleting it")
		_, cm := sidecarConfig(Default, ns)
		Expect(k8sClient.Delete(ctx, cm)).To(Succeed())
		Eventually(func(g Gomega) {
			_, cm := sidecarConfig(g, ns)
			g.Expect(cm.Data[controllers.SidecarConfigKey]).To(Equal(want))
		}, eventually, poll).Should(Succeed())
	})

	It("never leaks policies between namespaces", func() {
		other := newNamespace()
		readyRedis(ns)
		readyRedis(other)
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		otherCache := cache.DeepCopy()
		otherCache.Namespace = other
		Expect(k8sClient.Create(ctx, otherCache)).To(Succeed())
		expectReady(limits)
		expectReady(otherCache)
		Eventually(func(g Gomega) {
			cfg, _ := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(HaveLen(1))
			g.Expect(cfg.Caches).To(BeEmpty())
			g.Expect(cfg.RateLimits[0].Namespace).To(Equal(ns))
			otherCfg, _ := sidecarConfig(g, other)
			g.Expect(otherCfg.RateLimits).To(BeEmpty())
			g.Expect(otherCfg.Caches).To(HaveLen(1))
			g.Expect(otherCfg.Caches[0].Namespace).To(Equal(other))
			g.Expect(otherCfg.Redis[0].Addrs[0]).To(ContainSubstring("." + other + ".svc"))
		}, eventually, poll).Should(Succeed())
	})

	It("counts the running pods with the sidecar that a policy selects", func() {
		readyRedis(ns)
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		expectReady(limits)
		pod := func(name string, labels map[string]string, injected bool) {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}},
			}
			if injected {
				p.Annotations = map[string]string{controllers.AnnotationSidecarVersion: "test"}
			}
			Expect(k8sClient.Create(ctx, p)).To(Succeed())
			p.Status.Phase = corev1.PodRunning
			Expect(k8sClient.Status().Update(ctx, p)).To(Succeed())
		}
		pod("web-1", map[string]string{"app": "storefront"}, true)
		pod("web-2", map[string]string{"app": "storefront"}, true)
		pod("plain", map[string]string{"app": "storefront"}, false)
		pod("admin", map[string]string{"app": "admin"}, true)
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(limits), limits)).To(Succeed())
			g.Expect(limits.Status.SelectedPods).To(BeEquivalentTo(2))
		}, eventually, poll).Should(Succeed())
	})
})

var _ = Describe("Namespace rendering without policies", func() {
	enabledNamespace := func() string {
		GinkgoHelper()
		ns := newNamespace()
		Eventually(func(g Gomega) {
			obj := &corev1.Namespace{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: ns}, obj)).To(Succeed())
			obj.Labels[controllers.LabelNamespaceInjection] = "enabled"
			g.Expect(k8sClient.Update(ctx, obj)).To(Succeed())
		}, eventually, poll).Should(Succeed())
		return ns
	}

	// A pod admitted before its namespace's policies exist (the namespace,
	// its policies and its Deployment applied together) must find a
	// document to load: its sidecar answers 503 and stays unready until it
	// has one, so "no policy yet" is an explicit empty document, never a
	// missing file.
	It("renders an empty document for a namespace with injected pods, then the policies as they come", func() {
		ns := enabledNamespace()
		var pod *corev1.Pod
		// The webhook reads the namespace's label from the manager's cache,
		// which catches up with the label moments after it is set.
		Eventually(func(g Gomega) {
			pod = &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns, Labels: map[string]string{"app": "storefront"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			}
			g.Expect(k8sClient.Create(ctx, pod)).To(Succeed())
			if _, ok := pod.Annotations[controllers.AnnotationSidecarVersion]; !ok {
				g.Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
			}
			g.Expect(pod.Annotations).To(HaveKey(controllers.AnnotationSidecarVersion), "the webhook injects the pod")
		}, eventually, poll).Should(Succeed())

		var empty *config.Config
		Eventually(func(g Gomega) {
			var cm *corev1.ConfigMap
			empty, cm = sidecarConfig(g, ns)
			g.Expect(cm.Annotations).To(HaveKeyWithValue(controllers.AnnotationConfigHash, empty.Hash))
		}, eventually, poll).Should(Succeed())
		Expect(empty.Sessions).To(BeEmpty())
		Expect(empty.RateLimits).To(BeEmpty())
		Expect(empty.Caches).To(BeEmpty())
		Expect(empty.Hash).NotTo(BeEmpty())
		// What the sidecar loads: the document passes its own validation.
		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.SidecarConfigMapName}, cm)).To(Succeed())
		_, err := config.Decode([]byte(cm.Data[controllers.SidecarConfigKey]))
		Expect(err).NotTo(HaveOccurred())

		By("the policies arriving")
		readyRedis(ns)
		limits := typed("gatehouse_v1alpha1_ratelimitpolicy.yaml", &v1alpha1.RateLimitPolicy{})
		limits.Namespace = ns
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		expectReady(limits)
		Eventually(func(g Gomega) {
			cfg, cm := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(HaveLen(1))
			g.Expect(cm.Annotations).To(HaveKeyWithValue(controllers.AnnotationInForce, "RateLimitPolicy/"+limits.Name))
		}, eventually, poll).Should(Succeed())

		By("the last policy going while the pod stays: back to the empty document")
		Expect(k8sClient.Delete(ctx, limits)).To(Succeed())
		Eventually(func(g Gomega) {
			cfg, cm := sidecarConfig(g, ns)
			g.Expect(cfg.RateLimits).To(BeEmpty())
			g.Expect(cm.Annotations).To(HaveKeyWithValue(controllers.AnnotationInForce, ""))
		}, eventually, poll).Should(Succeed())

		By("the last injected pod going: no document left")
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: controllers.SidecarConfigMapName}, &corev1.ConfigMap{})
		}, eventually, poll).Should(Satisfy(apierrors.IsNotFound))
	})
})

var _ = Describe("Policy status when rendering fails", func() {
	// The namespace reconciler, driven directly, on a client whose list of
	// RedisClusters fails: the sync fails before anything is rendered, so
	// there are no verdicts. The statuses still reach the real API server,
	// which validates them against the CRD schema; a zero verdict once gave
	// both conditions an empty reason, the schema refused the patch and the
	// sync error was lost.
	failing := func() reconcile.Reconciler {
		GinkgoHelper()
		base, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		c := interceptor.NewClient(base, interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if _, ok := list.(*v1alpha1.RedisClusterList); ok {
					return errors.New("injected: the RedisCluster list timed out")
				}
				return c.List(ctx, list, opts...)
			},
		})
		return controllers.NewSidecarConfigReconciler(c)
	}

	It("reports Ready=False, RenderFailed with the error, on a policy the operator had accepted", func() {
		ns := newNamespace()
		readyRedis(ns)
		limits := typed("gatehouse_v1alpha1_ratelimitpolicy.yaml", &v1alpha1.RateLimitPolicy{})
		limits.Namespace = ns
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())
		expectReady(limits)

		_, err := failing().Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: ns}})
		Expect(err).To(MatchError(ContainSubstring("injected: the RedisCluster list timed out")))
		Expect(err).NotTo(MatchError(ContainSubstring("status")), "the status patch itself must be accepted")

		ready := condition(Default, limits, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Reason).To(Equal(v1alpha1.ReasonRenderFailed))
		Expect(ready.Message).To(ContainSubstring("injected: the RedisCluster list timed out"))
		accepted := condition(Default, limits, v1alpha1.ConditionAccepted)
		Expect(accepted.Status).To(Equal(metav1.ConditionTrue), "acceptance was decided before and nothing new was decided")
	})

	It("reports a valid status on a policy that never had one", func() {
		ns := newNamespace()
		limits := typed("gatehouse_v1alpha1_ratelimitpolicy.yaml", &v1alpha1.RateLimitPolicy{})
		limits.Namespace = ns
		Expect(k8sClient.Create(ctx, limits)).To(Succeed())

		_, err := failing().Reconcile(ctx, reconcile.Request{NamespacedName: client.ObjectKey{Name: ns}})
		Expect(err).To(MatchError(ContainSubstring("injected: the RedisCluster list timed out")))
		Expect(err).NotTo(MatchError(ContainSubstring("status")), "the status patch itself must be accepted")
		// Both conditions exist and carry a reason, whoever wrote last: the
		// suite's own manager renders the namespace too.
		for _, typ := range []string{v1alpha1.ConditionAccepted, v1alpha1.ConditionReady} {
			c := condition(Default, limits, typ)
			Expect(c.Reason).NotTo(BeEmpty())
		}
	})
})

var _ = Describe("Policy reconcilers at scale", Label("scale"), func() {
	// One render per namespace per change, and about one API write per
	// policy: the namespace reconciler renders a namespace once per burst
	// of changes and writes its ConfigMap once and each policy's status
	// once. The floor is 1.1 writes per policy here (10 statuses and one
	// ConfigMap per namespace); rendering after every create would write
	// every policy's status again each time the document (and so its
	// configHash) changed.
	It("converges 300 policies over 30 namespaces with one render per change", func() {
		const namespaces, perNamespace = 30, 10
		var all []*v1alpha1.RateLimitPolicy
		var nsNames []string
		for range namespaces {
			ns := newNamespace()
			readyRedis(ns)
			nsNames = append(nsNames, ns)
		}
		writesBefore, rendersBefore := counterTotal("gatehouse_operator_api_writes_total"), counterTotal("gatehouse_operator_namespace_renders_total")
		start := time.Now()
		for _, ns := range nsNames {
			// As `kubectl apply -f policies/` does: one create after another.
			for i := range perNamespace {
				p := typed("gatehouse_v1alpha1_ratelimitpolicy.yaml", &v1alpha1.RateLimitPolicy{})
				p.Namespace, p.Name = ns, fmt.Sprintf("limits-%d", i)
				p.Spec.Rules[0].Limit = int64(100 + i)
				Expect(k8sClient.Create(ctx, p)).To(Succeed())
				all = append(all, p)
			}
		}
		Eventually(func(g Gomega) {
			for _, p := range all {
				c := condition(g, p, v1alpha1.ConditionReady)
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			}
		}, 3*time.Minute, time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			for i := 0; i < len(all); i += perNamespace {
				cfg, _ := sidecarConfig(g, all[i].Namespace)
				g.Expect(cfg.RateLimits).To(HaveLen(perNamespace))
				for j, rl := range cfg.RateLimits {
					g.Expect(rl.Rules[0].Limit).To(BeEquivalentTo(100 + j))
				}
				g.Expect(all[i].Status.ConfigHash).To(Equal(cfg.Hash))
			}
		}, time.Minute, time.Second).Should(Succeed())
		elapsed := time.Since(start)
		// Let anything still queued (there should be nothing) happen before counting.
		time.Sleep(2 * controllers.DefaultRenderDelay)
		writes := counterTotal("gatehouse_operator_api_writes_total") - writesBefore
		converge := counterTotal("gatehouse_operator_namespace_renders_total") - rendersBefore
		report := fmt.Sprintf("%d policies in %d namespaces Ready in %s with %.0f renders and %.0f operator API writes (%.2f per policy)",
			len(all), namespaces, elapsed.Round(time.Millisecond), converge, writes, writes/float64(len(all)))
		AddReportEntry("scale", report)
		GinkgoWriter.Println("scale:", report)
		Expect(writes/float64(len(all))).To(BeNumerically("<=", 1.1), report)

		By("changing one policy in every namespace: exactly one render each")
		rendersBefore, writesBefore = counterTotal("gatehouse_operator_namespace_renders_total"), counterTotal("gatehouse_operator_api_writes_total")
		for i := 0; i < len(all); i += perNamespace {
			p := all[i]
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
				p.Spec.Rules[0].Limit = 5000
				g.Expect(k8sClient.Update(ctx, p)).To(Succeed())
			}, eventually, poll).Should(Succeed())
		}
		Eventually(func(g Gomega) {
			for i := 0; i < len(all); i += perNamespace {
				cfg, _ := sidecarConfig(g, all[i].Namespace)
				g.Expect(cfg.RateLimits[0].Rules[0].Limit).To(BeEquivalentTo(5000))
				c := condition(g, all[i], v1alpha1.ConditionReady)
				g.Expect(c.ObservedGeneration).To(Equal(all[i].Generation))
			}
		}, time.Minute, poll).Should(Succeed())
		// The ConfigMap writes and status patches of those renders must not
		// come back as further renders.
		Consistently(func() float64 {
			return counterTotal("gatehouse_operator_namespace_renders_total") - rendersBefore
		}, 3*controllers.DefaultRenderDelay, poll).Should(BeNumerically("==", namespaces))
		changeWrites := counterTotal("gatehouse_operator_api_writes_total") - writesBefore
		GinkgoWriter.Printf("scale: %d changes, %d renders, %.0f writes\n", namespaces, namespaces, changeWrites)
		// Each change rewrites its ConfigMap and every status of its
		// namespace (their configHash changed): 11 writes.
		Expect(changeWrites).To(BeNumerically("<=", namespaces*(perNamespace+1)))
	})
})

// counterTotal sums a counter over its labels in the manager's registry.
func counterTotal(name string) float64 {
	GinkgoHelper()
	families, err := metricsRegistry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var total float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}
