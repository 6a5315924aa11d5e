package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	gatehousev1alpha1 "github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/controllers"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
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

// warningClient is a client whose admission warnings are recorded.
func warningClient() (client.Client, *warningRecorder) {
	GinkgoHelper()
	warnings := &warningRecorder{}
	wcfg := rest.CopyConfig(cfg)
	wcfg.WarningHandlerWithContext = warnings
	wc, err := client.New(wcfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return wc, warnings
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
				Name: redisnames.PasswordEnv("shop-redis"),
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "shop-secret"}, Key: "pw", Optional: new(true),
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
			"--admin-listen=unix:/var/run/gatehouse/admin.sock",
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

		adminMount := corev1.VolumeMount{Name: "gatehouse-admin", MountPath: "/var/run/gatehouse"}
		Expect(sc.VolumeMounts).To(ConsistOf(
			corev1.VolumeMount{Name: "gatehouse-config", MountPath: "/etc/gatehouse/config", ReadOnly: true},
			corev1.VolumeMount{Name: "gatehouse-podinfo", MountPath: "/etc/gatehouse/podinfo", ReadOnly: true},
			adminMount,
		))
		// The app reaches the admin API through the socket in the shared
		// volume, at the same path.
		Expect(pod.Spec.Containers[0].VolumeMounts).To(ContainElement(adminMount))
		var cmVol, infoVol, adminVol *corev1.Volume
		for i := range pod.Spec.Volumes {
			switch pod.Spec.Volumes[i].Name {
			case "gatehouse-config":
				cmVol = &pod.Spec.Volumes[i]
			case "gatehouse-podinfo":
				infoVol = &pod.Spec.Volumes[i]
			case "gatehouse-admin":
				adminVol = &pod.Spec.Volumes[i]
			}
		}
		Expect(adminVol).NotTo(BeNil())
		Expect(adminVol.EmptyDir).NotTo(BeNil())
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
		wc, warnings := warningClient()

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

	Context("the protocol the sidecar speaks to the app", func() {
		const h2cArg = "--upstream-protocol=h2c"
		upstreamProtocolArgs := func(sc *corev1.Container) []string {
			var out []string
			for _, a := range sc.Args {
				if strings.HasPrefix(a, "--upstream-protocol") {
					out = append(out, a)
				}
			}
			return out
		}

		It("is h2c for a port a Service declares appProtocol kubernetes.io/h2c", func() {
			ns := enabledNamespace()
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{
					Name: "h2c", Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: new("kubernetes.io/h2c"),
				}}},
			}
			Expect(k8sClient.Create(ctx, svc)).To(Succeed())
			// The webhook reads Services from the manager's cache.
			Eventually(func(g Gomega) {
				sc := sidecarOf(create(appPod(ns)))
				g.Expect(sc).NotTo(BeNil())
				g.Expect(upstreamProtocolArgs(sc)).To(Equal([]string{h2cArg}))
			}).WithTimeout(30 * time.Second).Should(Succeed())
		})

		It("is h2c for a port named grpc, which is taken over without an annotation", func() {
			ns := enabledNamespace()
			pod := create(appPod(ns, func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9090}}
			}))
			sc := sidecarOf(pod)
			Expect(sc).NotTo(BeNil())
			Expect(upstreamProtocolArgs(sc)).To(Equal([]string{h2cArg}))
			Expect(sc.Args).To(ContainElement("--upstream=http://127.0.0.1:9090"))
			Expect(sc.Ports[0].Name).To(Equal("grpc"))
			Expect(pod.Spec.Containers[0].Ports[0].Name).To(Equal("app-grpc"))
		})

		It("is h2c when the pod's annotation says so", func() {
			ns := enabledNamespace()
			sc := sidecarOf(create(appPod(ns, func(p *corev1.Pod) {
				p.Annotations = map[string]string{controllers.AnnotationUpstreamProtocol: "h2c"}
			})))
			Expect(sc).NotTo(BeNil())
			Expect(upstreamProtocolArgs(sc)).To(Equal([]string{h2cArg}))
		})

		It("stays HTTP/1.1 for a plain http port, with the arguments it always had", func() {
			ns := enabledNamespace()
			// A Service with another appProtocol, and one selecting other
			// pods with h2c, change nothing.
			for _, svc := range []*corev1.Service{
				{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "web"},
					Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: new("http")}},
				}},
				{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns}, Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": "api"},
					Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: new("kubernetes.io/h2c")}},
				}},
			} {
				Expect(k8sClient.Create(ctx, svc)).To(Succeed())
			}
			sc := sidecarOf(create(appPod(ns)))
			Expect(sc).NotTo(BeNil())
			Expect(upstreamProtocolArgs(sc)).To(BeEmpty())
			Expect(sc.Args).To(ContainElement("--upstream=http://127.0.0.1:8080"))
		})

		It("denies a pod with an unknown protocol in the annotation", func() {
			ns := enabledNamespace()
			err := k8sClient.Create(ctx, appPod(ns, func(p *corev1.Pod) {
				p.Annotations = map[string]string{controllers.AnnotationUpstreamProtocol: "grpc"}
			}))
			Expect(err).To(MatchError(ContainSubstring(`annotation gatehouse.dev/upstream-protocol: "grpc" is neither "h2c" nor "http1"`)))
		})
	})

	// The kubelet runs every container's preStop hook when a pod starts
	// terminating, but sends a native sidecar SIGTERM only after the app has
	// exited. The API server stores and validates what the webhook adds.
	Context("termination", func() {
		sleep := func(seconds int64) *corev1.LifecycleHandler {
			return &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}
		}
		grace := func(seconds int64) func(*corev1.Pod) {
			return func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = new(seconds) }
		}
		annotated := func(v string) func(*corev1.Pod) {
			return func(p *corev1.Pod) { p.Annotations = map[string]string{controllers.AnnotationDrainDelay: v} }
		}

		It("gives the sidecar a preStop hook that runs the sidecar binary against its own admin address", func() {
			ns := enabledNamespace()
			sc := sidecarOf(create(appPod(ns)))
			Expect(sc).NotTo(BeNil())
			Expect(sc.Lifecycle).NotTo(BeNil())
			Expect(sc.Lifecycle.PreStop).To(Equal(&corev1.LifecycleHandler{Exec: &corev1.ExecAction{
				Command: []string{"/gatehouse-sidecar", "prestop", "--admin-listen=unix:/var/run/gatehouse/admin.sock"},
			}}))
			Expect(sc.Args).To(ContainElement("--admin-listen=unix:/var/run/gatehouse/admin.sock"))

			By("with the loopback admin API, the hook calls loopback")
			sc = sidecarOf(create(appPod(ns, func(p *corev1.Pod) {
				p.Annotations = map[string]string{controllers.AnnotationAdminListen: controllers.AdminListenLoopback}
			})))
			Expect(sc.Lifecycle.PreStop.Exec.Command).To(Equal([]string{"/gatehouse-sidecar", "prestop", "--admin-listen=127.0.0.1:9901"}))
		})

		It("gives an app container without a preStop hook the default drain delay", func() {
			pod := create(appPod(enabledNamespace()))
			Expect(pod.Spec.TerminationGracePeriodSeconds).To(HaveValue(BeEquivalentTo(30)), "the API server's default")
			Expect(pod.Spec.Containers[0].Lifecycle).NotTo(BeNil())
			Expect(pod.Spec.Containers[0].Lifecycle.PreStop).To(Equal(sleep(controllers.DefaultDrainDelaySeconds)))
		})

		It("takes the delay from the pod's annotation, and adds none for 0", func() {
			ns := enabledNamespace()
			pod := create(appPod(ns, annotated("12")))
			Expect(pod.Spec.Containers[0].Lifecycle.PreStop).To(Equal(sleep(12)))
			pod = create(appPod(ns, annotated("0")))
			Expect(pod.Spec.Containers[0].Lifecycle).To(BeNil())
			Expect(sidecarOf(pod).Lifecycle.PreStop.Exec).NotTo(BeNil(), "the sidecar still learns of the termination")
		})

		It("keeps an app's own preStop hook, and adds the delay to its other containers", func() {
			ns := enabledNamespace()
			own := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromString("http")}}
			pod := create(appPod(ns, func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: own}
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "worker", Image: "worker:1"})
			}))
			// Its named port follows the rename; the hook is the app's.
			Expect(pod.Spec.Containers[0].Lifecycle.PreStop).To(Equal(&corev1.LifecycleHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromString("app-http"), Scheme: corev1.URISchemeHTTP},
			}))
			Expect(pod.Spec.Containers[1].Lifecycle.PreStop).To(Equal(sleep(controllers.DefaultDrainDelaySeconds)))
		})

		It("keeps the delay below the pod's grace period, warning when an annotation asked for more", func() {
			ns := enabledNamespace()
			pod := create(appPod(ns, grace(3)))
			Expect(pod.Spec.Containers[0].Lifecycle.PreStop).To(Equal(sleep(2)))

			wc, warnings := warningClient()
			pod = appPod(ns, grace(20), annotated("20"))
			Expect(wc.Create(ctx, pod)).To(Succeed())
			Expect(pod.Spec.Containers[0].Lifecycle.PreStop).To(Equal(sleep(19)))
			Expect(warnings.all()).To(ContainElement(ContainSubstring("gatehouse.dev/drain-delay-seconds: 20 s shortened to 19 s")))

			pod = create(appPod(ns, grace(1)))
			Expect(pod.Spec.Containers[0].Lifecycle).To(BeNil(), "no room for a delay")
		})

		It("denies a pod whose drain delay is not a number of seconds", func() {
			err := k8sClient.Create(ctx, appPod(enabledNamespace(), annotated("5s")))
			Expect(err).To(MatchError(ContainSubstring(`annotation gatehouse.dev/drain-delay-seconds: "5s" is not a number of seconds`)))
		})
	})

	It("serves the admin API on loopback TCP only when the pod opts in", func() {
		ns := enabledNamespace()
		pod := create(appPod(ns, func(p *corev1.Pod) {
			p.Annotations = map[string]string{controllers.AnnotationAdminListen: controllers.AdminListenLoopback}
		}))
		sc := sidecarOf(pod)
		Expect(sc).NotTo(BeNil())
		Expect(sc.Args).To(ContainElement("--admin-listen=127.0.0.1:9901"))
		Expect(sc.VolumeMounts).NotTo(ContainElement(HaveField("Name", "gatehouse-admin")))
		Expect(pod.Spec.Containers[0].VolumeMounts).To(BeEmpty())

		By("an app on port 9901 conflicts only with the loopback admin API")
		err := k8sClient.Create(ctx, appPod(ns, func(p *corev1.Pod) {
			p.Annotations = map[string]string{controllers.AnnotationAdminListen: controllers.AdminListenLoopback}
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "debug", ContainerPort: 9901})
		}))
		Expect(err).To(MatchError(ContainSubstring(`container "app" uses port 9901`)))
		Expect(sidecarOf(create(appPod(ns, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "debug", ContainerPort: 9901})
		})))).NotTo(BeNil())
	})

	It("leaves a hostNetwork pod alone, saying why in an annotation, a warning and an event", func() {
		ns := enabledNamespace()
		wc, warnings := warningClient()

		bare := appPod(ns, func(p *corev1.Pod) {
			p.GenerateName, p.Name = "", "node-agent"
			p.Spec.HostNetwork = true
		})
		Expect(wc.Create(ctx, bare)).To(Succeed())
		Expect(bare.Spec.InitContainers).To(BeEmpty())
		Expect(bare.Spec.Containers[0].Ports[0].Name).To(Equal("http"))
		Expect(bare.Annotations).To(HaveKeyWithValue(controllers.AnnotationInjectionStatus, "skipped: host-network"))
		Expect(warnings.all()).To(ContainElement(ContainSubstring("hostNetwork")))

		// A DaemonSet's pod has no name at admission; the event goes to
		// its controller, where `kubectl describe` shows it.
		owned := appPod(ns, func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agents", UID: "0b3c6f4e-0000-4000-8000-000000000001", Controller: new(true)}}
		})
		Expect(k8sClient.Create(ctx, owned)).To(Succeed())
		Expect(owned.Spec.InitContainers).To(BeEmpty())

		Eventually(func(g Gomega) {
			var events eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
			regarding := map[string]string{}
			for _, e := range events.Items {
				if e.Reason == "SidecarNotInjected" && e.Type == corev1.EventTypeWarning {
					regarding[e.Regarding.Kind+"/"+e.Regarding.Name] = e.Note
				}
			}
			g.Expect(regarding).To(HaveKeyWithValue("Pod/node-agent", ContainSubstring("hostNetwork")))
			g.Expect(regarding).To(HaveKeyWithValue("DaemonSet/agents", ContainSubstring("hostNetwork")))
		}, eventually, poll).Should(Succeed())
		Expect(injectionCount("skipped", "host-network")).To(BeNumerically(">=", 2))
	})

	// The kubelet resolves a probe's or hook's named port among the ports of
	// the container it belongs to. The webhook renames the app's `http`
	// port to `app-http`; every probe and hook of the app must still reach
	// the app's own port, whether it named the port or gave its number.
	DescribeTable("keeps the app's probes and lifecycle hooks pointing at the app",
		func(set func(c *corev1.Container, port intstr.IntOrString), port intstr.IntOrString) {
			ns := enabledNamespace()
			pod := create(appPod(ns, func(p *corev1.Pod) { set(&p.Spec.Containers[0], port) }))
			Expect(sidecarOf(pod)).NotTo(BeNil())
			app := pod.Spec.Containers[0]
			Expect(app.Ports[0].Name).To(Equal("app-http"))
			handlerPorts := appHandlerPorts(&app)
			Expect(handlerPorts).To(HaveLen(1))
			Expect(resolvePort(&app, handlerPorts[0])).To(BeEquivalentTo(8080), "the probe or hook must reach the app on 8080, not the sidecar")
		},
		probeEntries(),
	)

	// The annotations that set sidecar flags reach the injected command
	// line, which the sidecar's own parser reads back to the same settings.
	It("maps the path-exception and proxy annotations to the sidecar's flags", func() {
		ns := enabledNamespace()
		pod := create(appPod(ns, func(p *corev1.Pod) {
			p.Annotations = map[string]string{
				controllers.AnnotationAllowEncodedSlash:   "true",
				controllers.AnnotationAllowPathParameters: "true",
				controllers.AnnotationTrustedProxies:      "10.0.0.0/8,fd00::/8",
				controllers.AnnotationWriteTimeout:        "2m",
				controllers.AnnotationBodyReadTimeout:     "5m",
			}
		}))
		sidecar := sidecarOf(pod)
		Expect(sidecar).NotTo(BeNil())
		flags, err := contract.Parse(sidecar.Args)
		Expect(err).NotTo(HaveOccurred())
		Expect(flags.AllowEncodedSlash).To(BeTrue())
		Expect(flags.AllowPathParameters).To(BeTrue())
		Expect(flags.TrustedProxies).To(Equal([]string{"10.0.0.0/8", "fd00::/8"}))
		Expect(flags.WriteTimeout).To(Equal(2 * time.Minute))
		Expect(flags.BodyReadTimeout).To(Equal(5 * time.Minute))

		By("a pod without them gets the defaults")
		plain := create(appPod(ns))
		flags, err = contract.Parse(sidecarOf(plain).Args)
		Expect(err).NotTo(HaveOccurred())
		Expect(flags.AllowEncodedSlash || flags.AllowPathParameters).To(BeFalse())
		Expect(flags.TrustedProxies).To(BeNil())
		Expect(flags.WriteTimeout).To(BeZero())
	})

	DescribeTable("denies a pod whose flag annotation the sidecar would refuse, saying which",
		func(annotation, value, want string) {
			ns := enabledNamespace()
			err := k8sClient.Create(ctx, appPod(ns, func(p *corev1.Pod) {
				p.Annotations = map[string]string{annotation: value}
			}))
			Expect(err).To(MatchError(And(ContainSubstring("denied the request"), ContainSubstring("annotation "+annotation+": "+want))))
		},
		Entry("path exception not a boolean", controllers.AnnotationAllowPathParameters, "sometimes", `invalid boolean value "sometimes"`),
		Entry("trusted proxy not a CIDR", controllers.AnnotationTrustedProxies, "10.0.0.0/8,internal", `invalid CIDR or address "internal"`),
		Entry("negative write timeout", controllers.AnnotationWriteTimeout, "-30s", "must be positive"),
		Entry("body read timeout not a duration", controllers.AnnotationBodyReadTimeout, "a while", `invalid value "a while"`),
	)

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

// probeEntries is every probe kind (liveness, readiness, startup) with
// every handler that takes a port (httpGet, tcpSocket, grpc), and every
// lifecycle hook (postStart, preStop) with httpGet and tcpSocket, each
// naming the app's port and giving its number (gRPC takes numbers only).
func probeEntries() []TableEntry {
	named, numeric := intstr.FromString("http"), intstr.FromInt32(8080)
	probe := func(which string) func(c *corev1.Container) **corev1.Probe {
		return func(c *corev1.Container) **corev1.Probe {
			switch which {
			case "liveness":
				return &c.LivenessProbe
			case "readiness":
				return &c.ReadinessProbe
			}
			return &c.StartupProbe
		}
	}
	var entries []TableEntry
	for _, kind := range []string{"liveness", "readiness", "startup"} {
		field := probe(kind)
		httpGet := func(c *corev1.Container, port intstr.IntOrString) {
			*field(c) = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: port}}}
		}
		tcp := func(c *corev1.Container, port intstr.IntOrString) {
			*field(c) = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}}
		}
		grpc := func(c *corev1.Container, port intstr.IntOrString) {
			*field(c) = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port.IntVal}}}
		}
		entries = append(entries,
			Entry(kind+" httpGet, named port", httpGet, named),
			Entry(kind+" httpGet, numeric port", httpGet, numeric),
			Entry(kind+" tcpSocket, named port", tcp, named),
			Entry(kind+" tcpSocket, numeric port", tcp, numeric),
			Entry(kind+" grpc, numeric port", grpc, numeric),
		)
	}
	hook := func(which string, tcpSocket bool) func(c *corev1.Container, port intstr.IntOrString) {
		return func(c *corev1.Container, port intstr.IntOrString) {
			h := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/hook", Port: port}}
			if tcpSocket {
				h = &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}}
			}
			c.Lifecycle = &corev1.Lifecycle{}
			if which == "postStart" {
				c.Lifecycle.PostStart = h
			} else {
				c.Lifecycle.PreStop = h
			}
		}
	}
	for _, which := range []string{"postStart", "preStop"} {
		entries = append(entries,
			Entry(which+" httpGet, named port", hook(which, false), named),
			Entry(which+" httpGet, numeric port", hook(which, false), numeric),
			Entry(which+" tcpSocket, named port", hook(which, true), named),
			Entry(which+" tcpSocket, numeric port", hook(which, true), numeric),
		)
	}
	return entries
}

// appHandlerPorts lists the ports of every probe and hook of c.
func appHandlerPorts(c *corev1.Container) []intstr.IntOrString {
	var out []intstr.IntOrString
	add := func(http *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction, grpc *corev1.GRPCAction) {
		switch {
		case http != nil:
			out = append(out, http.Port)
		case tcp != nil:
			out = append(out, tcp.Port)
		case grpc != nil:
			out = append(out, intstr.FromInt32(grpc.Port))
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			add(p.HTTPGet, p.TCPSocket, p.GRPC)
		}
	}
	if c.Lifecycle != nil {
		for _, h := range []*corev1.LifecycleHandler{c.Lifecycle.PostStart, c.Lifecycle.PreStop} {
			if h != nil {
				add(h.HTTPGet, h.TCPSocket, nil)
			}
		}
	}
	return out
}

// resolvePort resolves a probe port as the kubelet does: a number is used
// as is, a name is looked up among the container's own ports.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int32, error) {
	if port.Type == intstr.Int {
		return port.IntVal, nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, port.StrVal)
}

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
