package controllers_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/gatehouse-dev/gatehouse/controllers"
)

// The manager's /metrics, served exactly as cmd/manager configures it
// (controllers.MetricsOptions), checked against the real API server's
// TokenReview and SubjectAccessReview: only a scraper whose token
// authenticates and who is bound to the shipped metrics-reader ClusterRole
// gets metrics.
var _ = Describe("Manager metrics", func() {
	It("refuse unauthenticated and unauthorized scrapes and serve the metrics-reader", func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr := l.Addr().String()
		Expect(l.Close()).To(Succeed())

		httpClient, err := rest.HTTPClientFor(cfg)
		Expect(err).NotTo(HaveOccurred())
		srv, err := metricsserver.NewServer(controllers.MetricsOptions(addr, true), cfg, httpClient)
		Expect(err).NotTo(HaveOccurred())
		srvCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() {
			defer GinkgoRecover()
			Expect(srv.Start(srvCtx)).To(Succeed())
		}()

		// The server's certificate is self-signed; what is under test is
		// who it answers, not its certificate.
		scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test server
		scrape := func(token string) (int, string) {
			GinkgoHelper()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
			Expect(err).NotTo(HaveOccurred())
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := scraper.Do(req)
			if err != nil {
				return 0, err.Error()
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body)
		}

		By("an unauthenticated scrape")
		Eventually(func() int { code, _ := scrape(""); return code }, eventually, poll).Should(Equal(http.StatusUnauthorized))
		By("a forged token")
		// The TokenReview refuses it; controller-runtime's filter reports
		// that as 500 "Authentication failed". Either way: no metrics.
		code, body := scrape("not-a-token")
		Expect(code).To(BeNumerically(">=", 400))
		Expect(body).NotTo(ContainSubstring("controller_runtime_"))

		ns := newNamespace()
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		token := func(sa string) string {
			GinkgoHelper()
			_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			return tr.Status.Token
		}

		By("an authenticated scraper without the metrics-reader role")
		other := token("someone")
		code, _ = scrape(other)
		Expect(code).To(Equal(http.StatusForbidden))

		By("a scraper bound to the shipped metrics-reader ClusterRole")
		role := &rbacv1.ClusterRole{}
		raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "metrics_reader_role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.UnmarshalStrict(raw, role)).To(Succeed())
		role.Name = "metrics-reader-" + ns
		Expect(k8sClient.Create(ctx, role)).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "prometheus", Namespace: ns}},
		})).To(Succeed())
		prometheus := token("prometheus")
		Eventually(func(g Gomega) {
			code, body := scrape(prometheus)
			g.Expect(code).To(Equal(http.StatusOK), body)
			g.Expect(body).To(ContainSubstring(`controller_runtime_max_concurrent_reconciles{controller="sidecarconfig"}`))
		}, eventually, poll).Should(Succeed())
		code, _ = scrape(other)
		Expect(code).To(Equal(http.StatusForbidden), "the binding must not open /metrics to others")
	})
})
