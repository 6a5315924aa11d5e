package controllers_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
)

// warningRecorder collects the admission warnings the API server relays.
type warningRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.messages...)
}

var _ = Describe("Sidecar injection webhook", func() {
	// namespaceWith creates a spec namespace carrying labels.
	namespaceWith := func(labels map[string]string) string {
		GinkgoHelper()
		name := newNamespace()
		ns := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: name}, ns)).To(Succeed())
		ns.Labels = labels
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels["kubernetes.io/metadata.name"] = name
		Expect(k8sClient.Update(ctx, ns)).To(Succeed())
		return name
	}
	enabledNamespace := func() string {
		GinkgoHelper()
		return namespaceWith(map[string]string{controllers.LabelNamespaceInjection: "enabled"})
	}
	appPod := func(namespace string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "app-", Namespace: namespace, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name:  "app",
				Image: "app:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			}}},
		}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	create := func(p *corev1.Pod) *corev1.Pod {
		GinkgoHelper()
		Expect(k8sClient.Create(ctx, p)).To(Succeed())
		return p
	}
	sidecarOf := func(p *corev1.Pod) *corev1.Container {
		for i := range p.Spec.InitContainers {
			if p.Spec.InitContainers[i].Name == controllers.SidecarContainerName {
				return &p.Spec.InitContainers[i]
			}
		}
		return nil
	}
	expectUntouched := func(p *corev1.Pod) {
		GinkgoHelper()
		Expect(p.Spec.InitContainers).To(BeEmpty())
		Expect(p.Spec.Containers).To(HaveLen(1))
		Expect(p.Spec.Containers[0].Ports[0].Name).To(Equal("http"))
		Expect(p.Annotations).NotTo(HaveKey(controllers.AnnotationSidecarVersion))
		Expect(p.Annotations).NotTo(HaveKey(controllers.AnnotationInjectionStatus))
	}

	It("injects a wired native sidecar into pods of a labelled namespace", func() {
		ns := enabledNamespace()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: controllers.SidecarConfigMapName, Namespace: ns,
			Annotations: map[string]string{controllers.AnnotationConfigHash: "hash-1"},
			// As the operator writes it; the manager caches only its own ConfigMaps.
			Labels: map[string]string{controllers.LabelManagedBy: controllers.ManagedByValue},
		}}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		rc := &gatehousev1alpha1.RedisCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "shop-redis", Namespace: ns},
			Spec: gatehousev1alpha1.RedisClusterSpec{
				Shards: 3, ReplicasPerShard: ptr.To[int32](1), Image: "redis:7.0.15", Profile: gatehousev1alpha1.ProfileDurable,
				PasswordSecretRef: &gatehousev1alpha1.SecretKeyReference{Name: "shop-secret", Key: "pw"},
			},
		}
		Expect(k8sClient.Create(ctx, rc)).To(Succeed())

		// The webhook reads the ConfigMap and RedisClusters from the
		// manager's cache, which catches up shortly after the creates.
		var pod *corev1.Pod
		Eventually(func(g Gomega) {
			pod = create(appPod(ns))
			g.Expect(pod.Annotations).To(HaveKeyWithValue(controllers.AnnotationConfigHash, "hash-1"))
			g.Expect(sidecarOf(pod)).NotTo(BeNil())
			g.Expect(sidecarOf(pod).Env).To(ContainElement(corev1.EnvVar{
				Name: controllers.RedisPasswordEnv("shop-redis"),
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "shop-secret"}, Key: "pw", Optional: ptr.To(true),
				}},
			}))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		Expect(pod.Spec.InitContainers).To(HaveLen(1))
		sc := pod.Spec.InitContainers[0]
		Expect(sc.Name).To(Equal(controllers.SidecarContainerName))
		Expect(sc.Image).To(Equal(testOptions.SidecarImage))
		Expect(sc.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(sc.Args).To(ContainElements(
			"--config=/etc/gatehouse/config/config.json",
			"--pod-labels=/etc/gatehouse/podinfo/labels",
			"--listen=:15080",
			"--upstream=http://127.0.0.1:8080",
			"--admin-listen=127.0.0.1:9901",
			"--status-listen=:9902",
		))
		Expect(sc.Ports).To(ContainElement(HaveField("Name", "http")))
		Expect(sc.Ports[0].ContainerPort).To(BeEquivalentTo(15080))
		Expect(pod.Spec.Containers).To(HaveLen(1))
		Expect(pod.Spec.Containers[0].Ports[0].Name).To(Equal("app-http"))
		Expect(pod.Spec.Containers[0].Ports[0].ContainerPort).To(BeEquivalentTo(8080))

		for _, p := range []*corev1.Probe{sc.StartupProbe, sc.ReadinessProbe, sc.LivenessProbe} {
			Expect(p).NotTo(BeNil())
			Expect(p.HTTPGet.Port.StrVal).To(Equal("gh-status"))
		}
		Expect(sc.StartupProbe.HTTPGet.Path).To(Equal("/readyz"))
		Expect(sc.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		Expect(sc.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))

		sec := sc.SecurityContext
		Expect(sec).NotTo(BeNil())
		Expect(sec.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(sec.RunAsUser).To(HaveValue(BeEquivalentTo(65532)))
		Expect(sec.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
		Expect(sec.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(sec.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(sec.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		Expect(sc.Resources.Requests).To(HaveKey(corev1.ResourceMemory))

		Expect(sc.VolumeMounts).To(ConsistOf(
			corev1.VolumeMount{Name: "gatehouse-config", MountPath: "/etc/gatehouse/config", ReadOnly: true},
			corev1.VolumeMount{Name: "gatehouse-podinfo", MountPath: "/etc/gatehouse/podinfo", ReadOnly: true},
		))
		var cmVol, infoVol *corev1.Volume
		for i := range pod.Spec.Volumes {
			switch pod.Spec.Volumes[i].Name {
			case "gatehouse-config":
				cmVol = &pod.Spec.Volumes[i]
			case "gatehouse-podinfo":
				infoVol = &pod.Spec.Volumes[i]
			}
		}
		Expect(cmVol).NotTo(BeNil())
		Expect(cmVol.ConfigMap.Name).To(Equal(controllers.SidecarConfigMapName))
		Expect(cmVol.ConfigMap.Optional).To(HaveValue(BeTrue()))
		Expect(infoVol).NotTo(BeNil())
		Expect(infoVol.DownwardAPI.Items).To(ContainElement(HaveField("FieldRef.FieldPath", "metadata.labels")))

		Expect(pod.Annotations).To(HaveKeyWithValue(controllers.AnnotationSidecarVersion, testOptions.SidecarImage))
		Expect(pod.Annotations).To(HaveKeyWithValue(controllers.AnnotationInjectionStatus, "injected"))
		Expect(injectionCount("injected", "injected")).To(BeNumerically(">", 0))

		By("re-submitting the injected pod spec: identical, no second sidecar")
		again := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "again-", Namespace: ns, Labels: pod.Labels, Annotations: pod.Annotations},
			Spec:       *pod.Spec.DeepCopy(),
		}
		create(again)
		Expect(again.Spec).To(Equal(pod.Spec))
		Expect(again.Annotations).To(Equal(pod.Annotations))
	})

	It("leaves pods of an unlabelled namespace untouched", func() {
		ns := namespaceWith(nil)
		expectUntouched(create(appPod(ns)))
	})

	It("honours the pod opt-out label in a labelled namespace", func() {
		ns := enabledNamespace()
		expectUntouched(create(appPod(ns, func(p *corev1.Pod) { p.Labels[controllers.LabelPodInject] = "false" })))
	})

	It("injects a pod that opts in by label in an unlabelled namespace", func() {
		ns := namespaceWith(nil)
		pod := create(appPod(ns, func(p *corev1.Pod) { p.Labels[controllers.LabelPodInject] = "true" }))
		Expect(sidecarOf(pod)).NotTo(BeNil())
		Expect(pod.Spec.InitContainers).To(HaveLen(1))
		Expect(pod.Spec.Containers[0].Ports[0].Name).To(Equal("app-http"))
	})

	It("does not inject pods that opt in by label in a namespace labelled disabled", func() {
		ns := namespaceWith(map[string]string{controllers.LabelNamespaceInjection: "disabled"})
		expectUntouched(create(appPod(ns, func(p *corev1.Pod) { p.Labels[controllers.LabelPodInject] = "true" })))
	})

	It("gives a Job's pod the sidecar as a native sidecar, before its own init containers", func() {
		ns := enabledNamespace()
		// What the Job controller would create from a template (envtest
		// runs no Job controller).
		pod := create(appPod(ns, func(p *corev1.Pod) {
			p.Labels["batch.kubernetes.io/job-name"] = "report"
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "migrate:1"}}
		}))
		Expect(pod.Spec.InitContainers).To(HaveLen(2))
		Expect(pod.Spec.InitContainers[0].Name).To(Equal(controllers.SidecarContainerName))
		Expect(pod.Spec.InitContainers[0].RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(pod.Spec.InitContainers[1].Name).To(Equal("migrate"))
		Expect(pod.Spec.InitContainers[1].RestartPolicy).To(BeNil())
		Expect(pod.Spec.Containers).To(HaveLen(1))
		Expect(pod.Spec.Containers[0].Name).To(Equal("app"))
	})

	It("admits a pod without a named port or annotation uninjected, with a warning", func() {
		ns := enabledNamespace()
		warnings := &warningRecorder{}
		wcfg := rest.CopyConfig(cfg)
		wcfg.WarningHandlerWithContext = warnings
		wc, err := client.New(wcfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		pod := appPod(ns, func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "" })
		Expect(wc.Create(ctx, pod)).To(Succeed())
		Expect(pod.Spec.InitContainers).To(BeEmpty())
		Expect(pod.Annotations).To(HaveKeyWithValue(controllers.AnnotationInjectionStatus, "skipped: no-upstream-port"))
		Expect(warnings.all()).To(ContainElement(And(
			ContainSubstring("pod not injected"),
			ContainSubstring(controllers.AnnotationUpstreamPort),
		)))
	})

	It("wires the upstream from the annotation when no port is named", func() {
		ns := enabledNamespace()
		pod := create(appPod(ns, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = nil
			p.Annotations = map[string]string{controllers.AnnotationUpstreamPort: "3000"}
		}))
		sc := sidecarOf(pod)
		Expect(sc).NotTo(BeNil())
		Expect(sc.Args).To(ContainElement("--upstream=http://127.0.0.1:3000"))
		Expect(sc.Ports[0].Name).To(Equal("gatehouse"))
	})

	It("denies a pod with an invalid resource annotation, saying which", func() {
		ns := enabledNamespace()
		err := k8sClient.Create(ctx, appPod(ns, func(p *corev1.Pod) {
			p.Annotations = map[string]string{controllers.AnnotationMemoryLimit: "lots"}
		}))
		Expect(err).To(MatchError(And(
			ContainSubstring("denied the request"),
			ContainSubstring(`annotation gatehouse.dev/sidecar-memory-limit: invalid quantity "lots"`),
		)))
	})
})

// injectionCount reads gatehouse_injections_total from the manager's
// registry (the manager runs in this process).
func injectionCount(result, reason string) float64 {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "gatehouse_injections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
