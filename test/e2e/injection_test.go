package e2e

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var storefrontLabels = map[string]string{"app": storefront}

// injectedWell checks a pod the way docs/injection.md describes it: the
// sidecar first among the init containers as a native sidecar with its
// preStop hook, the app's port renamed, the sidecar owning the name.
func injectedWell(g Gomega, p *corev1.Pod) {
	g.Expect(p.Annotations).To(HaveKeyWithValue("gatehouse.dev/injection-status", "injected"), "pod %s", p.Name)
	g.Expect(p.Spec.InitContainers).NotTo(BeEmpty())
	sc := p.Spec.InitContainers[0]
	g.Expect(sc.Name).To(Equal(sidecarName))
	g.Expect(sc.RestartPolicy).NotTo(BeNil())
	g.Expect(*sc.RestartPolicy).To(Equal(corev1.ContainerRestartPolicyAlways))
	g.Expect(sc.Image).To(Equal("gatehouse.local/gatehouse-sidecar:e2e"))
	g.Expect(sc.Ports).To(ContainElement(And(
		HaveField("Name", "http"), HaveField("ContainerPort", BeEquivalentTo(15080)))))
	g.Expect(p.Spec.Containers[0].Ports).To(ContainElement(And(
		HaveField("Name", "app-http"), HaveField("ContainerPort", BeEquivalentTo(8080)))))
	g.Expect(sc.Lifecycle).NotTo(BeNil())
	g.Expect(sc.Lifecycle.PreStop).NotTo(BeNil())
	g.Expect(sc.Lifecycle.PreStop.Exec).NotTo(BeNil())
	g.Expect(sc.Lifecycle.PreStop.Exec.Command).To(Equal(
		[]string{"/gatehouse-sidecar", "prestop", "--admin-listen=unix:/var/run/gatehouse/admin.sock"}))
}

// drainDelayed checks that the app container of a pod without a preStop
// hook of its own (storefront.yaml) got the default drain delay.
func drainDelayed(g Gomega, p *corev1.Pod) {
	app := p.Spec.Containers[0]
	g.Expect(app.Lifecycle).NotTo(BeNil(), "pod %s: the app has no preStop hook", p.Name)
	g.Expect(app.Lifecycle.PreStop).NotTo(BeNil(), "pod %s: the app has no preStop hook", p.Name)
	g.Expect(app.Lifecycle.PreStop.Sleep).To(Equal(&corev1.SleepAction{Seconds: 5}), "pod %s: the default drain delay", p.Name)
}

// staysHealthy watches pods for a while: Ready throughout, no container
// restarted, and no probe failure reported by the kubelet.
func staysHealthy(ctx context.Context, labels map[string]string, since time.Time, window time.Duration) {
	GinkgoHelper()
	Consistently(func(g Gomega) {
		for _, p := range podsOf(ctx, shop, labels) {
			if p.DeletionTimestamp != nil {
				continue
			}
			g.Expect(podReady(&p)).To(BeTrue(), "pod %s ready", p.Name)
			for c, n := range restarts(&p) {
				g.Expect(n).To(BeZero(), "pod %s container %s restarted", p.Name, c)
			}
			g.Expect(unhealthy(ctx, &p, since)).To(BeEmpty(), "probe failures of pod %s", p.Name)
		}
	}).WithContext(ctx).WithTimeout(window).WithPolling(2 * time.Second).Should(Succeed())
}

func injectionScenarios() {
	It("an app Deployment in the labelled namespace gets the native sidecar and is Ready; its own probes keep passing", func(ctx SpecContext) {
		start := metaNow()
		mustKubectl("apply", "-f", testdata("storefront.yaml"))
		Eventually(func(g Gomega) {
			deploymentRolledOut(g, ctx, shop, storefront)
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		pods := podsOf(ctx, shop, storefrontLabels)
		Expect(pods).To(HaveLen(2))
		for i := range pods {
			injectedWell(Default, &pods[i])
			drainDelayed(Default, &pods[i])
		}
		// The Service targets the port by name, which is now the sidecar's.
		Eventually(func(g Gomega) {
			var slices discoveryv1.EndpointSliceList
			g.Expect(k8s.List(ctx, &slices, client.InNamespace(shop),
				client.MatchingLabels{discoveryv1.LabelServiceName: storefront})).To(Succeed())
			g.Expect(slices.Items).NotTo(BeEmpty())
			for _, sl := range slices.Items {
				g.Expect(sl.Ports).To(ConsistOf(HaveField("Port", HaveValue(BeEquivalentTo(15080)))))
			}
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		// Startup (HTTP), readiness (HTTP) and liveness (TCP) by port number.
		staysHealthy(ctx, storefrontLabels, start, 20*time.Second)
	})

	It("probes and hooks that name the app's port keep pointing at the app after the port is renamed", func(ctx SpecContext) {
		start := metaNow()
		mustKubectl("apply", "-f", testdata("probes.yaml"))
		labels := map[string]string{"app": "storefront-probes"}
		Eventually(func(g Gomega) {
			// A probe failure is final here: say which, without waiting
			// for the kubelet to give up on the pod.
			for _, p := range podsOf(ctx, shop, labels) {
				if msgs := unhealthy(ctx, &p, start); len(msgs) > 0 {
					StopTrying(fmt.Sprintf("the kubelet reports probe failures of pod %s: %s", p.Name, strings.Join(msgs, "; "))).Now()
				}
			}
			deploymentRolledOut(g, ctx, shop, "storefront-probes")
		}).WithContext(ctx).WithTimeout(60 * time.Second).WithPolling(2 * time.Second).Should(Succeed())
		staysHealthy(ctx, labels, start, 20*time.Second)
		for _, p := range podsOf(ctx, shop, labels) {
			injectedWell(Default, &p)
			app := p.Spec.Containers[0]
			for _, probe := range []*corev1.Probe{app.StartupProbe, app.ReadinessProbe, app.LivenessProbe} {
				Expect(probe.HTTPGet.Port.String()).To(BeElementOf("app-http", "8080"))
			}
			// The app's own preStop hook is kept, not replaced by the drain delay.
			Expect(app.Lifecycle.PreStop.Sleep).To(BeNil())
			Expect(app.Lifecycle.PreStop.HTTPGet).NotTo(BeNil())
		}
		_, _ = kubectl("-n", shop, "delete", "deployment", "storefront-probes", "--wait=false")
	})

	It("a hostNetwork pod in the labelled namespace is not injected, and says why", func(ctx SpecContext) {
		mustKubectl("apply", "-f", testdata("hostnetwork.yaml"))
		var p corev1.Pod
		Expect(k8s.Get(ctx, objectKey(shop, "host-network"), &p)).To(Succeed())
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			Expect(c.Name).NotTo(Equal(sidecarName))
		}
		Expect(p.Annotations).To(HaveKeyWithValue("gatehouse.dev/injection-status", "skipped: host-network"))
		// A pod without a controller gets the event by name (docs/injection.md).
		Eventually(func(g Gomega) {
			var why []string
			for _, e := range eventsFor(ctx, shop, "Pod", "host-network") {
				if e.Type == corev1.EventTypeWarning && e.Reason == "SidecarNotInjected" {
					why = append(why, e.Message)
				}
			}
			g.Expect(strings.ToLower(strings.Join(why, "\n"))).To(ContainSubstring("hostnetwork"))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		_, _ = kubectl("-n", shop, "delete", "pod", "host-network", "--ignore-not-found", "--wait=false")
	})
}
