package controllers_test

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// loadSample reads one object from config/samples.
func loadSample(file string) *unstructured.Unstructured {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join("..", "config", "samples", file))
	Expect(err).NotTo(HaveOccurred())
	obj := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal(raw, &obj.Object)).To(Succeed())
	return obj
}

func createIn(ns string, obj *unstructured.Unstructured) error {
	obj.SetNamespace(ns)
	return k8sClient.Create(ctx, obj)
}

var _ = Describe("CRD validation", func() {
	DescribeTable("every sample is accepted",
		func(file string) {
			obj := loadSample(file)
			Expect(createIn(newNamespace(), obj)).To(Succeed())
		},
		Entry("RedisCluster", "gatehouse_v1alpha1_rediscluster.yaml"),
		Entry("SessionPolicy", "gatehouse_v1alpha1_sessionpolicy.yaml"),
		Entry("RateLimitPolicy", "gatehouse_v1alpha1_ratelimitpolicy.yaml"),
		Entry("CachePolicy", "gatehouse_v1alpha1_cachepolicy.yaml"),
	)

	It("applies the documented defaults", func() {
		obj := loadSample("gatehouse_v1alpha1_ratelimitpolicy.yaml")
		Expect(createIn(newNamespace(), obj)).To(Succeed())
		rules, _, _ := unstructured.NestedSlice(obj.Object, "spec", "rules")
		first := rules[0].(map[string]any)
		Expect(first["mode"]).To(Equal("Enforce"))
		Expect(first["match"]).To(HaveKeyWithValue("pathPrefix", "/"))
		third := rules[2].(map[string]any)
		Expect(third["algorithm"]).To(Equal("FixedWindow"))
		Expect(third["failureMode"]).To(Equal("Open"))

		rc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "gatehouse.dev/v1alpha1", "kind": "RedisCluster",
			"metadata": map[string]any{"name": "defaults"}, "spec": map[string]any{},
		}}
		Expect(createIn(newNamespace(), rc)).To(Succeed())
		Expect(rc.Object["spec"]).To(And(
			HaveKeyWithValue("shards", BeNumerically("==", 3)),
			HaveKeyWithValue("replicasPerShard", BeNumerically("==", 1)),
			HaveKeyWithValue("profile", "Durable"),
		))
	})

	// The same bounds, just inside: what the sidecar accepts is accepted.
	It("accepts the sidecar's limits themselves", func() {
		obj := loadSample("gatehouse_v1alpha1_ratelimitpolicy.yaml")
		spec := obj.Object["spec"].(map[string]any)
		rlRule(spec)["window"] = "1500ms"
		tb := spec["rules"].([]any)[1].(map[string]any)
		tb["limit"], tb["window"] = 1000, "1ms"
		Expect(createIn(newNamespace(), obj)).To(Succeed())

		c := loadSample("gatehouse_v1alpha1_cachepolicy.yaml")
		cacheRule(c.Object["spec"].(map[string]any))["maxBodyBytes"] = "64Mi"
		Expect(createIn(newNamespace(), c)).To(Succeed())

		sp := loadSample("gatehouse_v1alpha1_sessionpolicy.yaml")
		sp.Object["spec"].(map[string]any)["token"] = map[string]any{"header": "", "cookie": "sid"}
		Expect(createIn(newNamespace(), sp)).To(Succeed())
	})

	// Each entry breaks one valid sample in one way; the API server must refuse
	// it with a message that names the field and says what to fix.
	DescribeTable("invalid specs are refused with a message naming the field",
		func(file string, mutate func(spec map[string]any), wantField, wantMessage string) {
			obj := loadSample(file)
			spec := obj.Object["spec"].(map[string]any)
			mutate(spec)
			err := createIn(newNamespace(), obj)
			Expect(err).To(HaveOccurred(), "the API server accepted an invalid %s", obj.GetKind())
			Expect(err.Error()).To(ContainSubstring(wantField))
			Expect(err.Error()).To(ContainSubstring(wantMessage))
		},
		Entry("cache rule without ttl", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { delete(cacheRule(s), "ttl") },
			"spec.rules[0].ttl", "Required value"),
		Entry("cache rule with ttl 0s", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["ttl"] = "0s" },
			"spec.rules[0].ttl", "ttl must be between 1s and 720h"),
		Entry("cache rule matching POST", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["match"] = map[string]any{"methods": []any{"POST"}} },
			"spec.rules[0]", "cache rules match only GET and HEAD"),
		Entry("cache rule ignoring the origin outside Override mode", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["honorCacheControl"] = false },
			"spec.rules[0]", "only mode: Override allows"),
		Entry("cache rule with an unknown mode", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["mode"] = "Heuristic" },
			"spec.rules[0].mode", "Unsupported value"),
		Entry("cache rule with an unknown setCookie", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["setCookie"] = "Keep" },
			"spec.rules[0].setCookie", "Unsupported value"),
		Entry("cache rule with too many variants", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["maxVariants"] = 20000 },
			"spec.rules[0].maxVariants", "less than or equal to 10000"),
		Entry("cache rule with a lock timeout of 0s", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { cacheRule(s)["lockTimeout"] = "0s" },
			"spec.rules[0].lockTimeout", "lockTimeout must be between 1ms and 60s"),
		Entry("cache policy with an upper-case canonical host", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) { s["canonicalHost"] = "Shop.Example" },
			"spec.canonicalHost", "should match"),
		Entry("invalidate rule that evicts nothing", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) {
				s["invalidate"] = []any{map[string]any{"name": "noop", "match": map[string]any{"pathPrefix": "/x"}}}
			},
			"spec.invalidate[0]", "invalidate rule must evict something"),
		Entry("rate-limit rule with limit 0", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["limit"] = 0 },
			"spec.rules[0].limit", "should be greater than or equal to 1"),
		Entry("rate-limit rule with a zero window", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["window"] = "0s" },
			"spec.rules[0].window", "window must be between 1ms and 24h"),
		Entry("rate-limit rule with a malformed window", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["window"] = "a minute" },
			"spec.rules[0].window", "window"),
		Entry("unknown algorithm", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["algorithm"] = "LeakyBucket" },
			"spec.rules[0].algorithm", "Unsupported value"),
		Entry("burst without TokenBucket", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["burst"] = 5 },
			"spec.rules[0]", "burst applies only to the TokenBucket algorithm"),
		Entry("leased SlidingWindow", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["algorithm"], rlRule(s)["quota"] = "SlidingWindow", "Leased" },
			"spec.rules[0]", "quota Leased applies to FixedWindow and TokenBucket only"),
		Entry("unknown quota", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["quota"] = "Loose" },
			"spec.rules[0].quota", "Unsupported value"),
		Entry("unknown header form", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { s["headers"] = "Fancy" },
			"spec.headers", "Unsupported value"),
		Entry("rate-limit key with nothing to count by", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["key"] = map[string]any{} },
			"spec.rules[0].key", "key needs at least one of clientIP, header, subject or path"),
		Entry("duplicate rule names", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) {
				rules := s["rules"].([]any)
				rules[1].(map[string]any)["name"] = "per-ip"
			},
			"spec.rules[1]", "Duplicate value"),
		Entry("empty podSelector", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["podSelector"] = map[string]any{} },
			"spec.podSelector", "podSelector must not be empty"),
		Entry("session ttl malformed", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["ttl"] = "forever" },
			"spec.ttl", "ttl"),
		Entry("session without any token source", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["token"] = map[string]any{"header": ""} },
			"spec.token", "token needs a header or a cookie"),
		Entry("session maxLifetime shorter than ttl", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["maxLifetime"] = "10m" },
			"spec", "maxLifetime must not be shorter than ttl"),
		Entry("session publicPaths not a path", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["publicPaths"] = []any{"login"} },
			"spec.publicPaths[0]", "should match '^/"),
		Entry("session publicPaths with a backslash", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["publicPaths"] = []any{`/public\admin`} },
			"spec.publicPaths[0]", "should match '^/"),
		Entry("rate-limit pathPrefix with a path parameter", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["match"] = map[string]any{"pathPrefix": "/api;v=1/"} },
			"spec.rules[0].match.pathPrefix", "should match '^/"),
		// The sidecar's own bounds (sidecar/gate), refused at admission
		// where CEL can say them.
		Entry("rate-limit window of 1.5ms", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["window"] = "1.5ms" },
			"spec.rules[0].window", "window must be a whole number of milliseconds"),
		Entry("TokenBucket faster than one request per microsecond", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) {
				tb := s["rules"].([]any)[1].(map[string]any)
				tb["limit"], tb["window"] = 5000, "1ms"
			},
			"spec.rules[1]", "a TokenBucket admits at most one request per microsecond"),
		Entry("refreshBelow on a session that does not slide", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["sliding"], s["refreshBelow"] = false, "1m" },
			"spec", "refreshBelow applies only to sliding sessions"),
		Entry("forwarded claims that differ only in case", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["forwardClaims"] = []any{"email", "Email"} },
			"spec.forwardClaims", "forwardClaims must differ in more than case"),
		Entry("token header that is no header name", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["token"] = map[string]any{"header": "X Session"} },
			"spec.token.header", "should match"),
		Entry("pathPrefix with a broken percent-escape", "gatehouse_v1alpha1_ratelimitpolicy.yaml",
			func(s map[string]any) { rlRule(s)["match"] = map[string]any{"pathPrefix": "/api/%zz"} },
			"spec.rules[0].match.pathPrefix", "should match '^/"),
		Entry("podSelector with an unknown operator", "gatehouse_v1alpha1_cachepolicy.yaml",
			func(s map[string]any) {
				s["podSelector"] = map[string]any{"matchExpressions": []any{map[string]any{"key": "app", "operator": "Matches", "values": []any{"x"}}}}
			},
			"spec.podSelector", "podSelector operators are In, NotIn, Exists and DoesNotExist"),
		Entry("podSelector In without values", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) {
				s["podSelector"] = map[string]any{"matchExpressions": []any{map[string]any{"key": "app", "operator": "In"}}}
			},
			"spec.podSelector", "podSelector In and NotIn expressions need values"),
		Entry("RedisCluster with 2 shards", "gatehouse_v1alpha1_rediscluster.yaml",
			func(s map[string]any) { s["shards"] = 2 },
			"spec.shards", "should be greater than or equal to 3"),
		Entry("RedisCluster with negative replicas", "gatehouse_v1alpha1_rediscluster.yaml",
			func(s map[string]any) { s["replicasPerShard"] = -1 },
			"spec.replicasPerShard", "should be greater than or equal to 0"),
		Entry("RedisCluster with an unknown profile", "gatehouse_v1alpha1_rediscluster.yaml",
			func(s map[string]any) { s["profile"] = "Fast" },
			"spec.profile", "Unsupported value"),
		Entry("RedisCluster overriding an operator-owned directive", "gatehouse_v1alpha1_rediscluster.yaml",
			func(s map[string]any) { s["config"] = map[string]any{"cluster-node-timeout": "5000"} },
			"spec.config", "config may not set directives the operator owns"),
		Entry("RedisCluster without a redisRef name", "gatehouse_v1alpha1_sessionpolicy.yaml",
			func(s map[string]any) { s["redisRef"] = map[string]any{} },
			"spec.redisRef.name", "Required value"),
	)
})

func cacheRule(spec map[string]any) map[string]any {
	return spec["rules"].([]any)[0].(map[string]any)
}

func rlRule(spec map[string]any) map[string]any {
	return spec["rules"].([]any)[0].(map[string]any)
}
