package e2e

import (
	"context"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

// token is the session alice gets in the tour; later scenarios use it.
var token string

// readiness is the part of the sidecar's /readyz the scenarios read
// (docs/sidecar-admin-api.md).
type readiness struct {
	Ready  bool `json:"ready"`
	Config struct {
		Hash       string `json:"hash"`
		Generation int    `json:"generation"`
	} `json:"config"`
}

// sidecarReadiness asks one pod's sidecar, on its status port, as a
// monitoring system in the cluster would.
func sidecarReadiness(p *corev1.Pod) (readiness, error) {
	rs, err := fromClient(fmt.Sprintf("http://%s:9902/readyz", p.Status.PodIP))
	if err != nil {
		return readiness{}, err
	}
	var rd readiness
	if err := rs[0].JSON(&rd); err != nil {
		return readiness{}, fmt.Errorf("readyz %q: %w", rs[0].Body, err)
	}
	return rd, nil
}

// renderedHash is the configuration the operator last rendered for the shop.
func renderedHash(ctx context.Context) string {
	GinkgoHelper()
	var cm corev1.ConfigMap
	Expect(k8s.Get(ctx, objectKey(shop, "gatehouse-sidecar"), &cm)).To(Succeed())
	return cm.Annotations["gatehouse.dev/config-hash"]
}

// sidecarsServe waits until every running storefront sidecar serves the
// configuration the operator rendered last, and returns its hash.
func sidecarsServe(ctx context.Context, old string) string {
	GinkgoHelper()
	var hash string
	Eventually(func(g Gomega) {
		hash = renderedHash(ctx)
		g.Expect(hash).NotTo(BeEmpty())
		g.Expect(hash).NotTo(Equal(old), "the operator re-rendered the ConfigMap")
		for _, p := range podsOf(ctx, shop, storefrontLabels) {
			if p.DeletionTimestamp != nil {
				continue
			}
			rd, err := sidecarReadiness(&p)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(rd.Config.Hash).To(Equal(hash), "pod %s serves the new config", p.Name)
		}
	}).WithContext(ctx).WithTimeout(90 * time.Second).WithPolling(time.Second).Should(Succeed())
	return hash
}

// patchPerIPLimit changes the sample's per-ip rule with kubectl, as a
// person would.
func patchPerIPLimit(limit int) {
	GinkgoHelper()
	mustKubectl("-n", shop, "patch", "ratelimitpolicy", "storefront-limits", "--type=json", "-p",
		fmt.Sprintf(`[{"op":"test","path":"/spec/rules/0/name","value":"per-ip"},{"op":"replace","path":"/spec/rules/0/limit","value":%d}]`, limit))
}

type problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
}

func problemOf(r Response) problem {
	GinkgoHelper()
	Expect(r.Header("Content-Type")).To(HavePrefix("application/problem+json"))
	var p problem
	Expect(r.JSON(&p)).To(Succeed())
	return p
}

// tourScenarios are the demo's tour (docs/demo.md) on real pods, through
// the app's Service from the client pod.
func tourScenarios() {
	It("without a session: 401 problem+json, and a forged identity header does not help", func() {
		r := request(appService + "/api/cart")
		Expect(r.Status).To(Equal(401))
		Expect(problemOf(r).Type).To(Equal("https://gatehouse.dev/problems/session-required"))
		r = request("-H", "X-Gatehouse-Subject: mallory@example.com", appService+"/api/cart")
		Expect(r.Status).To(Equal(401))
	})

	It("log in, then the same route answers 200 with the identity the sidecar forwards", func() {
		r := request("-X", "POST", "-d", `{"user":"alice","password":"wonderland"}`, appService+"/login")
		Expect(r.Status).To(Equal(200), r.Body)
		var sess struct {
			Token string `json:"token"`
		}
		Expect(r.JSON(&sess)).To(Succeed())
		// docs/sessions.md: gh2.<id>.<secret>
		Expect(sess.Token).To(MatchRegexp(`^gh2\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`))
		token = sess.Token

		r = request("-H", "Authorization: Bearer "+token, appService+"/api/cart")
		Expect(r.Status).To(Equal(200), r.Body)
		var cart struct {
			Subject string `json:"subject"`
			Tier    string `json:"tier"`
		}
		Expect(r.JSON(&cart)).To(Succeed())
		Expect(cart.Subject).To(Equal("alice@example.com"))
		Expect(cart.Tier).To(Equal("gold"))
	})

	It("a limit lowered with kubectl patch is enforced across both replicas: 429 with Retry-After", func(ctx SpecContext) {
		Expect(token).NotTo(BeEmpty(), "needs the session of the login scenario")
		before := renderedHash(ctx)
		patchPerIPLimit(5)
		sidecarsServe(ctx, before)
		// The window is shared in Redis: requests spread over both pods by
		// kube-proxy count against one limit.
		rs, err := fromClient("-n", "12", "--until", "429", "-H", "Authorization: Bearer "+token, appService+"/api/cart")
		Expect(err).NotTo(HaveOccurred())
		last := rs[len(rs)-1]
		Expect(last.Status).To(Equal(429), "no 429 within %d requests", len(rs))
		Expect(len(rs)).To(BeNumerically("<=", 6), "at most 5 admitted")
		Expect(problemOf(last).Type).To(Equal("https://gatehouse.dev/problems/rate-limited"))
		retry, err := strconv.Atoi(last.Header("Retry-After"))
		Expect(err).NotTo(HaveOccurred())
		Expect(retry).To(BeNumerically(">", 0))
		Expect(last.Header("RateLimit-Policy")).To(Equal(`"storefront-limits/per-ip";q=5;w=60`))

		// Raise it again, far above what the load scenarios send.
		before = renderedHash(ctx)
		patchPerIPLimit(100000)
		sidecarsServe(ctx, before)
		r := request("-H", "Authorization: Bearer "+token, appService+"/api/cart")
		Expect(r.Status).To(Equal(200))
		Expect(r.Header("RateLimit-Policy")).To(Equal(`"storefront-limits/per-ip";q=100000;w=60`))
	})

	It("cache: MISS, then HIT with the very same render; a PUT invalidates it on every replica", func() {
		type view struct {
			Name   string `json:"name"`
			Render int    `json:"render"`
		}
		get := func() (Response, view) {
			GinkgoHelper()
			r := request(appService + "/products/42")
			Expect(r.Status).To(Equal(200))
			var v view
			Expect(r.JSON(&v)).To(Succeed())
			return r, v
		}
		r, miss := get()
		Expect(r.Header("X-Cache")).To(Equal("MISS"))
		// Whichever replica answers, the stored render comes back: from its
		// in-process tier or from Redis.
		for range 4 {
			r, hit := get()
			Expect(r.Header("X-Cache")).To(Equal("HIT"), "Cache-Status: %s", r.Header("Cache-Status"))
			Expect(hit).To(Equal(miss))
		}
		r = request("-X", "PUT", "-d", `{"name":"Towel (hoopy edition)","price":42}`, appService+"/products/42")
		Expect(r.Status).To(Equal(200), r.Body)
		// Evicted in Redis and, over Pub/Sub, in both replicas' in-process
		// tiers: whichever replica answers, the next GET goes to the app.
		// (The demo app keeps its products in memory per replica, so which
		// name it renders depends on the replica that took the PUT.)
		r, _ = get()
		Expect(r.Header("X-Cache")).To(Equal("MISS"), "Cache-Status: %s", r.Header("Cache-Status"))
		r, _ = get()
		Expect(r.Header("X-Cache")).To(Equal("HIT"), "stored again")
	})
}
