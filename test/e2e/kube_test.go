package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Names every scenario shares: the sample shop (config/samples) and what
// the suite deploys next to it (testdata/).
const (
	shop        = "shop"
	clientNS    = "e2e-client"
	clientPod   = "client"
	storefront  = "storefront"
	redisName   = "shop-redis"
	appService  = "http://storefront.shop"
	sidecarName = "gatehouse-sidecar"
)

// kubectl runs the cluster's kubectl and returns its standard output.
func kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, env.kubectl, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// mustKubectl runs kubectl and fails the scenario when it fails.
func mustKubectl(args ...string) string {
	GinkgoHelper()
	out, err := kubectl(args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// testdata is the path of a manifest under testdata/.
func testdata(name string) string { return filepath.Join(env.repo, "test", "e2e", "testdata", name) }

// Response is one answer as e2e-client do prints it (hack/e2e/client).
type Response struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

// Header is the first value of a response header.
func (r Response) Header(name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal([]byte(r.Body), v) }

// fromClient sends requests from the client pod: e2e-client do ARGS….
func fromClient(args ...string) ([]Response, error) {
	out, err := kubectl(append([]string{"exec", "-n", clientNS, clientPod, "--", "/e2e-client", "do"}, args...)...)
	if err != nil {
		return nil, err
	}
	var rs []Response
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 4<<20)
	for sc.Scan() {
		var r Response
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("decode %q: %w", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

// request sends one request from the client pod.
func request(args ...string) Response {
	GinkgoHelper()
	rs, err := fromClient(args...)
	Expect(err).NotTo(HaveOccurred())
	Expect(rs).To(HaveLen(1))
	return rs[0]
}

// LoadSummary is what e2e-client load prints.
type LoadSummary struct {
	Requests int `json:"requests"`
	URLs     map[string]struct {
		Answers map[string]int `json:"answers"`
		Errors  map[string]int `json:"errors"`
	} `json:"urls"`
	Failures []string `json:"failures"`
}

// load runs e2e-client load in the client pod in the background; the
// returned channel yields its summary when it ends.
func load(duration time.Duration, rate int, headers []string, urls ...string) <-chan LoadSummary {
	args := []string{"exec", "-n", clientNS, clientPod, "--", "/e2e-client", "load",
		"--duration", duration.String(), "--rate", fmt.Sprint(rate)}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, urls...)
	done := make(chan LoadSummary, 1)
	go func() {
		defer GinkgoRecover()
		out, err := kubectl(args...)
		Expect(err).NotTo(HaveOccurred())
		var s LoadSummary
		Expect(json.Unmarshal([]byte(out), &s)).To(Succeed(), out)
		done <- s
	}()
	return done
}

// podsOf lists the pods matching labels in ns.
func podsOf(ctx context.Context, ns string, labels map[string]string) []corev1.Pod {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels))).To(Succeed())
	return pods.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readySince is when a pod last became Ready.
func readySince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// restarts counts the restarts of every container of a pod, init
// containers (the native sidecar) included.
func restarts(p *corev1.Pod) map[string]int32 {
	n := map[string]int32{}
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		n[s.Name] = s.RestartCount
	}
	return n
}

// deploymentRolledOut is kubectl rollout status as a check: every replica
// updated, ready and available, no old one left.
func deploymentRolledOut(g Gomega, ctx context.Context, ns, name string) {
	var d appsv1.Deployment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &d)).To(Succeed())
	want := *d.Spec.Replicas
	g.Expect(d.Status.ObservedGeneration).To(BeNumerically(">=", d.Generation))
	g.Expect(d.Status.UpdatedReplicas).To(Equal(want), "updated replicas")
	g.Expect(d.Status.ReadyReplicas).To(Equal(want), "ready replicas")
	g.Expect(d.Status.AvailableReplicas).To(Equal(want), "available replicas")
	g.Expect(d.Status.Replicas).To(Equal(want), "no old replica left")
}

// eventsFor lists the events about one object.
func eventsFor(ctx context.Context, ns, kind, name string) []corev1.Event {
	GinkgoHelper()
	var evs corev1.EventList
	Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
	var out []corev1.Event
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// unhealthy lists the kubelet's probe failures for a pod since a time.
func unhealthy(ctx context.Context, p *corev1.Pod, since time.Time) []string {
	GinkgoHelper()
	var out []string
	for _, e := range eventsFor(ctx, p.Namespace, "Pod", p.Name) {
		last := e.LastTimestamp.Time
		if e.EventTime.After(last) {
			last = e.EventTime.Time
		}
		if e.Reason == "Unhealthy" && !last.Before(since) {
			out = append(out, e.Message)
		}
	}
	return out
}

// objectKey is a shorthand.
func objectKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// metaNow is a comparable "now" for events, which carry second precision.
func metaNow() time.Time { return metav1.Now().Truncate(time.Second) }
