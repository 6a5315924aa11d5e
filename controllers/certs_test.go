package controllers_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/gatehouse-dev/gatehouse/controllers"
)

var _ = Describe("Webhook certificates for injection", func() {
	It("issues a CA and serving certificate, patches the caBundle, and serves once the Secret is mounted", func() {
		ns := newNamespace()
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "webhook-cert", Namespace: ns}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())

		// A configuration that can never match anything, so it cannot
		// disturb other specs; only its caBundle matters here.
		whName := "certs-" + ns
		mwc := &admissionv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: whName},
			Webhooks: []admissionv1.MutatingWebhook{{
				Name:                    "never.certs.gatehouse.dev",
				ClientConfig:            admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{Namespace: ns, Name: "webhook", Path: new("/never")}},
				Rules:                   []admissionv1.RuleWithOperations{{Operations: []admissionv1.OperationType{admissionv1.Create}, Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
				ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"gatehouse.dev/never": "true"}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
				FailurePolicy:           ptr.To(admissionv1.Ignore),
				AdmissionReviewVersions: []string{"v1"},
			}},
		}
		Expect(k8sClient.Create(ctx, mwc)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(context.Background(), mwc))).To(Succeed()) })

		// A second manager, started the way cmd/manager starts in a
		// cluster: certificate directory empty, rotation on.
		certDir := GinkgoT().TempDir()
		port := freePort()
		mgr, err := ctrl.NewManager(cfg, ctrl.Options{
			Scheme:                 scheme,
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Controller:             config.Controller{SkipNameValidation: new(true)},
			WebhookServer:          webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(controllers.SetupWebhookCertificates(mgr, controllers.InjectionOptions{
			CertRotation: true, Namespace: ns, ServiceName: "webhook", CertSecretName: "webhook-cert", WebhookConfigName: whName,
		})).To(Succeed())
		mgrCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mgrCtx) }()
		DeferCleanup(func() { stop(); Eventually(done).WithTimeout(30 * time.Second).Should(Receive(Succeed())) })

		By("filling the Secret with a CA and a serving pair")
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
			g.Expect(secret.Data).To(HaveKey("ca.crt"))
			g.Expect(secret.Data).To(HaveKey("tls.crt"))
			g.Expect(secret.Data).To(HaveKey("tls.key"))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		By("serving no certificate, without exiting, while none is mounted")
		Eventually(func() error {
			conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the handshake's failure matters
			if err == nil {
				conn.Close()
			}
			return err
		}).WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("tls:")))
		Consistently(done).ShouldNot(Receive())

		By("serving the pair once the kubelet would have projected the Secret")
		Expect(os.WriteFile(filepath.Join(certDir, "tls.key"), secret.Data["tls.key"], 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(certDir, "tls.crt"), secret.Data["tls.crt"], 0o600)).To(Succeed())

		var caBundle []byte
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(mwc), mwc)).To(Succeed())
			caBundle = mwc.Webhooks[0].ClientConfig.CABundle
			g.Expect(caBundle).To(Equal(secret.Data["ca.crt"]))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(caBundle)).To(BeTrue())
		Eventually(func() error {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "webhook." + ns + ".svc"})
			if err == nil {
				conn.Close()
			}
			return err
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})

func freePort() int {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
