package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

const (
	grpcapp       = "grpcapp"
	grpcTarget    = "grpcapp.shop:9090"
	unaryMethod   = "/grpc.testing.TestService/UnaryCall"
	grpcRuleQuota = 3
)

var grpcappLabels = map[string]string{"app": grpcapp}

// Call is one gRPC call as e2e-client grpc prints it (hack/e2e/client).
type Call struct {
	Code     string              `json:"code"`
	Message  string              `json:"message"`
	Header   map[string][]string `json:"header"`
	Trailer  map[string][]string `json:"trailer"`
	Messages int                 `json:"messages"`
	Serving  string              `json:"serving"`
}

// MD is the first value of a metadata key, from the headers or the
// trailers: an answer of the sidecar's own is trailers-only, one header
// block that a gRPC client may show as either.
func (c Call) MD(key string) string {
	for _, md := range []map[string][]string{c.Header, c.Trailer} {
		if v := md[key]; len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// grpcCalls makes gRPC calls from the client pod through the Service, over
// one client connection: e2e-client grpc ARGS… TARGET.
func grpcCalls(args ...string) []Call {
	GinkgoHelper()
	out := mustKubectl(append(append([]string{"exec", "-n", clientNS, clientPod, "--", "/e2e-client", "grpc"}, args...), grpcTarget)...)
	var calls []Call
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var c Call
		Expect(json.Unmarshal(sc.Bytes(), &c)).To(Succeed(), sc.Text())
		calls = append(calls, c)
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return calls
}

func grpcCall(args ...string) Call {
	GinkgoHelper()
	calls := grpcCalls(args...)
	Expect(calls).To(HaveLen(1))
	return calls[0]
}

// grpcScenarios deploy a gRPC server behind the sidecar, the way
// docs/grpc.md's worked example does, and call it through its Service.
func grpcScenarios() {
	var grpcToken string

	It("a gRPC app whose Service says appProtocol kubernetes.io/h2c: the sidecar speaks h2c to it, its gRPC probes pass", func(ctx SpecContext) {
		// The Service first: the webhook reads Services when it admits a pod.
		mustKubectl("apply", "-f", testdata("grpcapp-service.yaml"))
		mustKubectl("apply", "-f", testdata("grpcapp.yaml"))
		Eventually(func(g Gomega) {
			deploymentRolledOut(g, ctx, shop, grpcapp)
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
		pods := podsOf(ctx, shop, grpcappLabels)
		Expect(pods).To(HaveLen(1))
		p := pods[0]
		sidecarInjected(Default, &p)
		// The port's name ("http") would mean HTTP/1.1: the Service's
		// appProtocol alone made it h2c (docs/injection.md, "Protocol").
		Expect(p.Spec.InitContainers[0].Args).To(ContainElements("--upstream=http://127.0.0.1:9090", "--upstream-protocol=h2c"))
		Expect(p.Spec.Containers[0].Ports).To(ContainElement(And(
			HaveField("Name", "app-http"), HaveField("ContainerPort", BeEquivalentTo(9090)))))
		// The kubelet's gRPC probes name the port by number: they reach the
		// app, not the sidecar, and keep passing once the pod is Ready (one
		// may fail before the app listens). Events carry whole seconds:
		// the second of the transition is left out.
		Expect(p.Spec.Containers[0].ReadinessProbe.GRPC.Port).To(BeEquivalentTo(9090))
		staysHealthy(ctx, grpcappLabels, readySince(&p).Add(time.Second), 6*time.Second)
		endpointsOnSidecar(ctx, grpcapp)
		// The sidecar has loaded the policies that select the pod.
		Eventually(func(g Gomega) {
			rs, err := fromClient(fmt.Sprintf("http://%s:9902/readyz", p.Status.PodIP))
			g.Expect(err).NotTo(HaveOccurred())
			var rd struct {
				Ready    bool     `json:"ready"`
				Policies []string `json:"policies"`
			}
			g.Expect(rs[0].JSON(&rd)).To(Succeed())
			g.Expect(rd.Ready).To(BeTrue())
			g.Expect(rd.Policies).To(ContainElements("session:shop/grpcapp-sessions", "rateLimit:shop/grpcapp-limits"))
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

		// The app mints a session over the shared admin socket, as after
		// its own login step.
		out := mustKubectl("-n", shop, "exec", p.Name, "-c", grpcapp, "--", "/grpcapp", "admin", "POST", "/v1/sessions",
			`{"subject":"alice","claims":{"tenant":"acme"}}`)
		code, body, _ := strings.Cut(out, "\n")
		Expect(code).To(Equal("201"), body)
		var sess struct {
			Token string `json:"token"`
		}
		Expect(json.Unmarshal([]byte(body), &sess)).To(Succeed(), body)
		Expect(sess.Token).NotTo(BeEmpty())
		grpcToken = sess.Token
	})

	It("gRPC calls through the Service: the session and the rate limit answer as gRPC statuses; the app's answers, trailers and streams pass", func() {
		Expect(grpcToken).NotTo(BeEmpty(), "needs the session of the gRPC app scenario")
		auth := "authorization: Bearer " + grpcToken

		// docs/grpc.md, "Calling it", row by row.
		c := grpcCall("--call", "health")
		Expect(c.Code).To(Equal("OK"), "the health service is public: %+v", c)
		Expect(c.Serving).To(Equal("SERVING"))

		c = grpcCall("--call", "unary")
		Expect(c.Code).To(Equal("Unauthenticated"), "%+v", c)
		Expect(c.Message).To(HavePrefix("Session required"))
		Expect(c.MD("www-authenticate")).To(Equal(`Bearer realm="gatehouse"`))

		c = grpcCall("--call", "unary", "-H", "authorization: Bearer gh2.forged.token")
		Expect(c.Code).To(Equal("Unauthenticated"), "%+v", c)
		Expect(c.MD("www-authenticate")).To(ContainSubstring(`error="invalid_token"`))

		// A tenant of this run alone: the fixed window's counter lives in
		// Redis for the minute.
		tenant := fmt.Sprintf("acme-%d", time.Now().UnixNano())
		calls := grpcCalls("--call", "unary", "-n", strconv.Itoa(grpcRuleQuota+1), "-H", auth, "-H", "x-tenant: "+tenant)
		Expect(calls).To(HaveLen(grpcRuleQuota + 1))
		// A fixed window may turn over between two calls: then the count
		// starts again, and the calls are repeated once.
		if calls[grpcRuleQuota].Code == "OK" {
			calls = grpcCalls("--call", "unary", "-n", strconv.Itoa(grpcRuleQuota+1), "-H", auth, "-H", "x-tenant: "+tenant+"-again")
		}
		for i, c := range calls[:grpcRuleQuota] {
			Expect(c.Code).To(Equal("OK"), "call %d: %+v", i+1, c)
			Expect(c.Messages).To(Equal(1))
			// What reached the app: the identity, not the token.
			Expect(c.Trailer).To(HaveKeyWithValue("saw-subject", []string{"alice"}))
			Expect(c.Trailer).To(HaveKeyWithValue("saw-tenant", []string{"acme"}))
			Expect(c.Trailer).To(HaveKeyWithValue("saw-authorization", []string{"false"}))
			Expect(c.Trailer).To(HaveKeyWithValue("x-trailer", []string{"from-the-app"}))
			Expect(c.Header["ratelimit-policy"]).To(ConsistOf(`"grpcapp-limits/unary-per-tenant";q=3;w=60`))
			Expect(c.Header["ratelimit"]).To(ConsistOf(MatchRegexp(`^"grpcapp-limits/unary-per-tenant";r=%d;t=\d+$`, grpcRuleQuota-1-i)))
		}
		c = calls[grpcRuleQuota]
		Expect(c.Code).To(Equal("ResourceExhausted"), "call %d: %+v", grpcRuleQuota+1, c)
		Expect(c.Message).To(HavePrefix("Too many requests"))
		retry, err := strconv.Atoi(c.MD("retry-after"))
		Expect(err).NotTo(HaveOccurred(), "retry-after %q", c.MD("retry-after"))
		Expect(retry).To(BeNumerically(">", 0))
		Expect(c.MD("grpc-retry-pushback-ms")).To(Equal(strconv.Itoa(retry * 1000)))

		// Another tenant has its own counter.
		c = grpcCall("--call", "unary", "-H", auth, "-H", "x-tenant: globex-"+tenant)
		Expect(c.Code).To(Equal("OK"), "%+v", c)

		// A server stream, not limited, message by message.
		c = grpcCall("--call", "stream", "-H", auth)
		Expect(c.Code).To(Equal("OK"), "%+v", c)
		Expect(c.Messages).To(Equal(3))
		Expect(c.Trailer).To(HaveKeyWithValue("x-trailer", []string{"from-the-app"}))
		Expect(c.Trailer).To(HaveKeyWithValue("saw-subject", []string{"alice"}))

		mustKubectl("delete", "-f", testdata("grpcapp.yaml"), "-f", testdata("grpcapp-service.yaml"), "--wait=false")
	})
}
