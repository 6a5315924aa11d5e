package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	operatorNS     = "gatehouse-system"
	managerName    = "gatehouse-controller-manager"
	webhookSecret  = "gatehouse-webhook-server-cert"
	webhookService = "gatehouse-webhook-service"
	webhookConfig  = "gatehouse-pod-injector"
	managerSA      = "system:serviceaccount:" + operatorNS + ":" + managerName
)

var managerLabels = map[string]string{"control-plane": "controller-manager", "app.kubernetes.io/name": "gatehouse"}

// installScenarios install Gatehouse as the README says (through the e2e
// overlay, which only renames images) and check the operator is up.
func installScenarios() {
	It("installs with kubectl apply --server-side -k config/e2e", func() {
		mustKubectl("apply", "--server-side", "-k", env.repo+"/config/e2e")
		for _, crd := range []string{"sessionpolicies", "ratelimitpolicies", "cachepolicies", "redisclusters"} {
			mustKubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/"+crd+".gatehouse.dev")
		}
	})

	It("the manager Deployment becomes Available and issues its own webhook certificate", func(ctx SpecContext) {
		Eventually(func(g Gomega) {
			deploymentRolledOut(g, ctx, operatorNS, managerName)
		}).WithContext(ctx).WithTimeout(4 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		// The rotator (cert-controller) filled the shipped empty Secret and
		// put its CA into both webhooks' caBundle.
		var s corev1.Secret
		Expect(k8s.Get(ctx, objectKey(operatorNS, webhookSecret), &s)).To(Succeed())
		Expect(s.Data).To(And(HaveKey("ca.crt"), HaveKey("tls.crt"), HaveKey("tls.key")))
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		Expect(k8s.Get(ctx, client.ObjectKey{Name: webhookConfig}, &mwc)).To(Succeed())
		Expect(mwc.Webhooks).To(HaveLen(2))
		for _, wh := range mwc.Webhooks {
			Expect(bytes.TrimSpace(wh.ClientConfig.CABundle)).To(Equal(bytes.TrimSpace(s.Data["ca.crt"])), "caBundle of %s", wh.Name)
		}
	})

	It("the webhook answers through its Service: a pod created in a labelled namespace comes back injected", func(ctx SpecContext) {
		// The Service has both replicas behind it.
		Eventually(func(g Gomega) {
			var slices discoveryv1.EndpointSliceList
			g.Expect(k8s.List(ctx, &slices, client.InNamespace(operatorNS),
				client.MatchingLabels{discoveryv1.LabelServiceName: webhookService})).To(Succeed())
			ready := 0
			for _, sl := range slices.Items {
				for _, ep := range sl.Endpoints {
					if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
						ready++
					}
				}
			}
			g.Expect(ready).To(Equal(2))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		mustKubectl("create", "namespace", "e2e-webhook")
		mustKubectl("label", "namespace", "e2e-webhook", "gatehouse.dev/injection=enabled")
		// A server-side dry run goes through admission like a real create:
		// the API server calls the webhook through its Service, trusting the
		// caBundle the manager wrote.
		var pod corev1.Pod
		Eventually(func(g Gomega) {
			out, err := kubectl("create", "--dry-run=server", "-o", "json", "-f", testdata("webhook-probe.yaml"))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(json.Unmarshal([]byte(out), &pod)).To(Succeed())
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(pod.Spec.InitContainers).NotTo(BeEmpty())
		sc := pod.Spec.InitContainers[0]
		Expect(sc.Name).To(Equal(sidecarName))
		Expect(sc.RestartPolicy).NotTo(BeNil())
		Expect(*sc.RestartPolicy).To(Equal(corev1.ContainerRestartPolicyAlways))
		Expect(sc.Image).To(Equal("gatehouse.local/gatehouse-sidecar:e2e"))
		Expect(pod.Annotations).To(HaveKeyWithValue("gatehouse.dev/injection-status", "injected"))
		mustKubectl("delete", "namespace", "e2e-webhook", "--wait=false")
	})

	It("a client pod runs in a namespace nobody opted in, uninjected", func(ctx SpecContext) {
		mustKubectl("apply", "-f", testdata("client.yaml"))
		mustKubectl("-n", clientNS, "wait", "--for=condition=Ready", "--timeout=120s", "pod/"+clientPod)
		var p corev1.Pod
		Expect(k8s.Get(ctx, objectKey(clientNS, clientPod), &p)).To(Succeed())
		Expect(p.Spec.InitContainers).To(BeEmpty())
	})

	It("the manager's metrics refuse an unauthenticated scrape and serve an authorized one", func(ctx SpecContext) {
		pods := podsOf(ctx, operatorNS, managerLabels)
		Expect(pods).NotTo(BeEmpty())
		url := "https://" + pods[0].Status.PodIP + ":8443/metrics"
		r := request("-k", url)
		Expect(r.Status).To(BeElementOf(401, 403), "an anonymous scrape got %d", r.Status)

		// As a monitoring system would: a ServiceAccount bound to the
		// metrics reader role, and its token.
		mustKubectl("-n", clientNS, "create", "serviceaccount", "scraper")
		mustKubectl("create", "clusterrolebinding", "e2e-scraper", "--clusterrole=gatehouse-metrics-reader",
			"--serviceaccount="+clientNS+":scraper")
		token := strings.TrimSpace(mustKubectl("-n", clientNS, "create", "token", "scraper"))
		Eventually(func(g Gomega) {
			r := request("-k", "-H", "Authorization: Bearer "+token, url)
			g.Expect(r.Status).To(Equal(200))
			// Every replica serves the webhook, so its certificate watcher's
			// counter is there whether or not it leads.
			g.Expect(r.Body).To(ContainSubstring("\ncertwatcher_read_certificate_errors_total "))
		}).WithContext(ctx).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("the manager's Secret access is what docs/operator.md lists: list, watch, create; never get, update or delete", func() {
		can := func(verb string) string {
			// kubectl auth can-i exits 1 when the answer is no.
			out, _ := kubectl("auth", "can-i", verb, "secrets", "--all-namespaces", "--as="+managerSA)
			return strings.TrimSpace(out)
		}
		for verb, want := range map[string]string{"list": "yes", "watch": "yes", "create": "yes", "get": "no", "update": "no", "delete": "no"} {
			Expect(can(verb)).To(Equal(want), "can-i %s secrets --all-namespaces", verb)
		}
	})
}
