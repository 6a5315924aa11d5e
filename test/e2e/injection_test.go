package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	sidecarInjected(g, p)
	g.Expect(p.Spec.Containers[0].Ports).To(ContainElement(And(
		HaveField("Name", "app-http"), HaveField("ContainerPort", BeEquivalentTo(8080)))))
}

// sidecarInjected is injectedWell without the app's own port.
func sidecarInjected(g Gomega, p *corev1.Pod) {
	g.Expect(p.Annotations).To(HaveKeyWithValue("gatehouse.dev/injection-status", "injected"), "pod %s", p.Name)
	g.Expect(p.Spec.InitContainers).NotTo(BeEmpty())
	sc := p.Spec.InitContainers[0]
	g.Expect(sc.Name).To(Equal(sidecarName))
	g.Expect(sc.RestartPolicy).NotTo(BeNil())
	g.Expect(*sc.RestartPolicy).To(Equal(corev1.ContainerRestartPolicyAlways))
	g.Expect(sc.Image).To(Equal("gatehouse.local/gatehouse-sidecar:e2e"))
	g.Expect(sc.Ports).To(ContainElement(And(
		HaveField("Name", "http"), HaveField("ContainerPort", BeEquivalentTo(15080)))))
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

// endpointsOnSidecar waits until a shop Service's endpoints are the
// sidecar's proxy port, 15080, and nothing else.
func endpointsOnSidecar(ctx context.Context, service string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var slices discoveryv1.EndpointSliceList
		g.Expect(k8s.List(ctx, &slices, client.InNamespace(shop),
			client.MatchingLabels{discoveryv1.LabelServiceName: service})).To(Succeed())
		g.Expect(slices.Items).NotTo(BeEmpty())
		for _, sl := range slices.Items {
			g.Expect(sl.Ports).To(ConsistOf(HaveField("Port", HaveValue(BeEquivalentTo(15080)))))
		}
	}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
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
		endpointsOnSidecar(ctx, storefront)
		// Startup (HTTP), readiness (HTTP) and liveness (TCP) by port number.
		staysHealthy(ctx, storefrontLabels, start, 20*time.Second)
	})

	It("the admin API is on the shared Unix socket only: no TCP port of the pod, nothing on the network, serves an admin route", func(ctx SpecContext) {
		pods := podsOf(ctx, shop, storefrontLabels)
		Expect(pods).NotTo(BeEmpty())
		p := pods[0]
		// The node's view of the pod's network namespace: every listening
		// socket, whichever container opened it.
		pid := containerPID(&p, sidecarName)
		Expect(listeningTCPPorts(pid)).To(ConsistOf(15080, 9902, 8080),
			"pod %s listens on TCP for the proxy (15080), the status port (9902) and the app (8080) alone", p.Name)
		Expect(listeningUnixSockets(pid)).To(ContainElement("/var/run/gatehouse/admin.sock"))

		// From another pod: the admin port a hand-started sidecar uses is
		// closed, and the status port, which every pod reaches, answers
		// no admin route; the hook's route least of all, which would make
		// the pod unready.
		_, err := fromClient(fmt.Sprintf("http://%s:9901/readyz", p.Status.PodIP))
		Expect(err).To(MatchError(ContainSubstring("connection refused")))
		status := fmt.Sprintf("http://%s:9902", p.Status.PodIP)
		r := request("-X", "POST", "-d", `{"subject":"mallory"}`, status+"/v1/sessions")
		Expect(r.Status).To(Equal(404), "POST /v1/sessions on the status port: %s", r.Body)
		r = request("-X", "POST", status+"/prestop")
		Expect(r.Status).To(Equal(404), "POST /prestop on the status port: %s", r.Body)
		rd, err := sidecarReadiness(&p)
		Expect(err).NotTo(HaveOccurred())
		Expect(rd.Ready).To(BeTrue(), "pod %s still ready", p.Name)
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

// containerPID is the host PID of a running container's first process,
// from containerd's task state on the node.
func containerPID(p *corev1.Pod, container string) int {
	GinkgoHelper()
	var id string
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if cs.Name == container {
			id = strings.TrimPrefix(cs.ContainerID, "containerd://")
		}
	}
	Expect(id).NotTo(BeEmpty(), "pod %s runs %s", p.Name, container)
	data, err := os.ReadFile(filepath.Join(env.containerdState, "io.containerd.runtime.v2.task", "k8s.io", id, "init.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

// listeningTCPPorts lists the TCP ports (IPv4 and IPv6) listening in the
// network namespace of process pid, from /proc/PID/net/tcp{,6}.
func listeningTCPPorts(pid int) []int {
	GinkgoHelper()
	seen := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		Expect(err).NotTo(HaveOccurred())
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st …; st 0A is LISTEN.
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseInt(hexPort, 16, 32)
			Expect(err).NotTo(HaveOccurred())
			seen[int(port)] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// listeningUnixSockets lists the paths of the listening Unix sockets in the
// network namespace of process pid, from /proc/PID/net/unix.
func listeningUnixSockets(pid int) []string {
	GinkgoHelper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	Expect(err).NotTo(HaveOccurred())
	var paths []string
	for _, line := range strings.Split(string(data), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 is
		// __SO_ACCEPTCON, a listening socket.
		fields := strings.Fields(line)
		if len(fields) == 8 && fields[3] == "00010000" {
			paths = append(paths, fields[7])
		}
	}
	return paths
}
