package render

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/gate"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func objMeta(name string, age time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "shop", CreationTimestamp: metav1.NewTime(t0.Add(-age))}
}

func readyCluster(name string) v1alpha1.RedisCluster {
	return v1alpha1.RedisCluster{
		ObjectMeta: objMeta(name, time.Hour),
		Status: v1alpha1.RedisClusterStatus{Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonClusterReady,
		}}},
	}
}

func app(name string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
}

func session(name string, age time.Duration, sel metav1.LabelSelector, redis string) v1alpha1.SessionPolicy {
	return v1alpha1.SessionPolicy{ObjectMeta: objMeta(name, age), Spec: v1alpha1.SessionPolicySpec{
		PodSelector: sel, RedisRef: v1alpha1.RedisReference{Name: redis},
		Token: v1alpha1.SessionTokenSource{Cookie: "sid"},
		TTL:   &metav1.Duration{Duration: 30 * time.Minute},
	}}
}

func rateLimit(name string, limit int64, redis string) v1alpha1.RateLimitPolicy {
	return v1alpha1.RateLimitPolicy{ObjectMeta: objMeta(name, time.Minute), Spec: v1alpha1.RateLimitPolicySpec{
		PodSelector: app("storefront"), RedisRef: v1alpha1.RedisReference{Name: redis},
		Rules: []v1alpha1.RateLimitRule{{
			Name: "per-ip", Match: v1alpha1.HTTPMatch{PathPrefix: "/"}, Key: v1alpha1.RateLimitKey{ClientIP: true},
			Limit: limit, Window: metav1.Duration{Duration: 1500 * time.Millisecond},
			Algorithm: v1alpha1.SlidingWindow, Mode: v1alpha1.Enforce, FailureMode: v1alpha1.FailOpen,
		}},
	}}
}

func cachePolicy(name string, age time.Duration, sel metav1.LabelSelector) v1alpha1.CachePolicy {
	max := resource.MustParse("512Ki")
	return v1alpha1.CachePolicy{ObjectMeta: objMeta(name, age), Spec: v1alpha1.CachePolicySpec{
		PodSelector: sel, RedisRef: v1alpha1.RedisReference{Name: "redis"},
		Rules: []v1alpha1.CacheRule{{
			Name: "products", Match: v1alpha1.HTTPMatch{PathPrefix: "/products"},
			TTL: metav1.Duration{Duration: 5 * time.Minute}, MaxBodyBytes: &max,
		}},
	}}
}

func TestRenderVerdicts(t *testing.T) {
	notReady := readyCluster("warming")
	notReady.Status.Conditions = nil
	in := Input{
		Namespace: "shop",
		Sessions: []v1alpha1.SessionPolicy{
			session("newer", time.Minute, app("storefront"), "redis"),
			session("older", time.Hour, app("storefront"), "redis"),
			session("other-app", time.Second, app("admin"), "redis"),
		},
		RateLimits: []v1alpha1.RateLimitPolicy{
			rateLimit("limits", 100, "redis"),
			rateLimit("no-redis", 100, "missing"),
			rateLimit("warming", 100, "warming"),
		},
		Caches:        []v1alpha1.CachePolicy{cachePolicy("catalogue", time.Hour, app("storefront"))},
		RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis"), notReady},
	}
	res, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[Key]string{}
	for k, v := range res.Verdicts {
		reasons[k] = v.Reason
	}
	want := map[Key]string{
		{KindSession, "older"}:      v1alpha1.ReasonAccepted,
		{KindSession, "newer"}:      v1alpha1.ReasonConflicted,
		{KindSession, "other-app"}:  v1alpha1.ReasonAccepted,
		{KindRateLimit, "limits"}:   v1alpha1.ReasonAccepted,
		{KindRateLimit, "no-redis"}: v1alpha1.ReasonRedisClusterNotFound,
		{KindRateLimit, "warming"}:  v1alpha1.ReasonRedisClusterNotReady,
		{KindCache, "catalogue"}:    v1alpha1.ReasonAccepted,
	}
	if diff := cmp.Diff(want, reasons); diff != "" {
		t.Errorf("verdict reasons (-want +got):\n%s", diff)
	}
	if msg := res.Verdicts[Key{KindSession, "newer"}].Message; !strings.Contains(msg, `"older"`) {
		t.Errorf("conflict message %q does not name the winner", msg)
	}

	// Only accepted policies and the Redis they use are in the document.
	var names []string
	for _, s := range res.Config.Sessions {
		names = append(names, s.Name)
	}
	for _, r := range res.Config.RateLimits {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"older", "other-app", "limits"}, names); diff != "" {
		t.Errorf("rendered policies (-want +got):\n%s", diff)
	}
	if len(res.Config.Redis) != 1 || res.Config.Redis[0].Name != "redis" {
		t.Errorf("redis connections = %+v, want only the ready cluster in use", res.Config.Redis)
	}
	wantConn := config.RedisConnection{
		Name: "redis", Mode: config.RedisCluster, Addrs: []string{"redis-client.shop.svc:6379"},
		PasswordEnv: "GATEHOUSE_REDIS_PASSWORD_REDIS",
	}
	if diff := cmp.Diff(wantConn, res.Config.Redis[0]); diff != "" {
		t.Errorf("connection (-want +got):\n%s", diff)
	}
}

// The sidecar must load exactly what the operator writes.
func TestRenderedDocumentLoadsInTheSidecar(t *testing.T) {
	res, err := Render(Input{
		Namespace:     "shop",
		Sessions:      []v1alpha1.SessionPolicy{session("s", time.Hour, app("storefront"), "redis")},
		RateLimits:    []v1alpha1.RateLimitPolicy{rateLimit("limits", 10, "redis")},
		Caches:        []v1alpha1.CachePolicy{cachePolicy("c", time.Hour, app("storefront"))},
		RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Decode(res.Data)
	if err != nil {
		t.Fatalf("sidecar cannot load the rendered document: %v\n%s", err, res.Data)
	}
	if _, err := gate.Compile(cfg); err != nil {
		t.Fatalf("sidecar refuses the rendered document: %v\n%s", err, res.Data)
	}
	if cfg.Hash != res.Hash || cfg.RateLimits[0].Rules[0].Window.D() != 1500*time.Millisecond {
		t.Errorf("round trip lost data: hash %q window %v", cfg.Hash, cfg.RateLimits[0].Rules[0].Window.D())
	}
}

// The gRPC opt-in of an invalidate rule reaches the sidecar; left out, the
// rendered rule keeps gRPC calls from firing it.
func TestRenderCarriesTheGRPCInvalidationOptIn(t *testing.T) {
	c := cachePolicy("c", time.Hour, app("storefront"))
	c.Spec.Invalidate = []v1alpha1.InvalidateRule{
		{Name: "rpc", Match: v1alpha1.HTTPMatch{PathPrefix: "/shop.v1.Products/"}, Paths: []string{"/products"}, GRPC: true},
		{Name: "http", Match: v1alpha1.HTTPMatch{PathPrefix: "/products"}, RequestPath: true},
	}
	res, err := Render(Input{Namespace: "shop", Caches: []v1alpha1.CachePolicy{c}, RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.Data)
	if err != nil {
		t.Fatal(err)
	}
	inv := cfg.Caches[0].Invalidate
	if len(inv) != 2 || !inv[0].GRPC || inv[1].GRPC {
		t.Errorf("rendered invalidate rules %+v: want grpc on the first only", inv)
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	a := Input{
		Namespace:     "shop",
		RateLimits:    []v1alpha1.RateLimitPolicy{rateLimit("a", 10, "redis"), rateLimit("b", 20, "redis")},
		Sessions:      []v1alpha1.SessionPolicy{session("x", time.Hour, app("a"), "redis"), session("y", time.Hour, app("b"), "redis")},
		RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis"), readyCluster("unused")},
	}
	b := a
	b.RateLimits = []v1alpha1.RateLimitPolicy{a.RateLimits[1], a.RateLimits[0]}
	b.Sessions = []v1alpha1.SessionPolicy{a.Sessions[1], a.Sessions[0]}
	b.RedisClusters = []v1alpha1.RedisCluster{a.RedisClusters[1], a.RedisClusters[0]}
	ra, _ := Render(a)
	rb, _ := Render(b)
	if ra.Hash != rb.Hash || string(ra.Data) != string(rb.Data) {
		t.Errorf("input order changed the output:\n%s\n---\n%s", ra.Data, rb.Data)
	}

	// Any change of content changes the hash.
	c := a
	c.RateLimits = []v1alpha1.RateLimitPolicy{rateLimit("a", 11, "redis"), a.RateLimits[1]}
	rc, _ := Render(c)
	if rc.Hash == ra.Hash {
		t.Error("changing a limit did not change the hash")
	}
	var doc map[string]any
	if err := json.Unmarshal(ra.Data, &doc); err != nil || doc["hash"] != ra.Hash {
		t.Errorf("document hash field = %v, want %q (err %v)", doc["hash"], ra.Hash, err)
	}
}

// A policy whose section the sidecar's compile step refuses is left out,
// with a verdict naming the policy's own field: the sidecars' refusal, not
// a guess of the operator's.
func TestRenderRefusesWhatTheSidecarWould(t *testing.T) {
	no := false
	tests := []struct {
		name    string
		in      func(in *Input)
		key     Key
		message string
	}{
		{"a rate-limit window of 1.5ms", func(in *Input) {
			in.RateLimits[0].Spec.Rules[0].Window.Duration = 1500 * time.Microsecond
		}, Key{KindRateLimit, "limits"}, "spec.rules[0].window: must be a positive whole number of milliseconds, got 1.5ms"},
		{"a TokenBucket faster than one per microsecond", func(in *Input) {
			r := &in.RateLimits[0].Spec.Rules[0]
			r.Algorithm, r.Limit, r.Window.Duration = v1alpha1.TokenBucket, 5000, time.Millisecond
		}, Key{KindRateLimit, "limits"}, "spec.rules[0].limit: 5000 per 1ms is more than one per microsecond"},
		{"a cache body cap beyond 64Mi", func(in *Input) {
			huge := resource.MustParse("1Gi")
			in.Caches[0].Spec.Rules[0].MaxBodyBytes = &huge
		}, Key{KindCache, "c"}, "spec.rules[0].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 1073741824"},
		// The API server admits 0 (no CEL rule on a quantity in a list fits
		// its cost budget); it is no default, so the sidecar refuses it.
		{"a cache body cap of 0", func(in *Input) {
			zero := resource.MustParse("0")
			in.Caches[0].Spec.Rules[0].MaxBodyBytes = &zero
		}, Key{KindCache, "c"}, "spec.rules[0].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 0"},
		// Issue 18's and issue 15's fields pass the same gate: CEL and
		// enums refuse these at admission, the gate names them for a policy
		// that did not pass through the API server.
		{"a leased SlidingWindow rule", func(in *Input) {
			r := &in.RateLimits[0].Spec.Rules[0]
			r.Algorithm, r.Quota = v1alpha1.SlidingWindow, v1alpha1.QuotaLeased
		}, Key{KindRateLimit, "limits"}, "spec.rules[0].quota: Leased applies to FixedWindow and TokenBucket only"},
		{"an unknown header form", func(in *Input) {
			in.RateLimits[0].Spec.Headers = "Fancy"
		}, Key{KindRateLimit, "limits"}, `spec.headers: unknown header form "Fancy": must be Draft, Legacy or Both`},
		{"a canonical host with upper case", func(in *Input) {
			in.Caches[0].Spec.CanonicalHost = "Shop.Example"
		}, Key{KindCache, "c"}, `spec.canonicalHost: "Shop.Example" is not a lower-case host[:port]`},
		{"too many variants", func(in *Input) {
			in.Caches[0].Spec.Rules[0].MaxVariants = new(int32(10001))
		}, Key{KindCache, "c"}, "spec.rules[0].maxVariants: must be between 1 and 10000, got 10001"},
		{"refreshBelow on a session that does not slide", func(in *Input) {
			in.Sessions[0].Spec.Sliding = &no
			in.Sessions[0].Spec.RefreshBelow = &metav1.Duration{Duration: time.Minute}
		}, Key{KindSession, "s"}, "spec.refreshBelow: only meaningful when sliding is true"},
		{"claims that differ only in case", func(in *Input) {
			in.Sessions[0].Spec.ForwardClaims = []string{"email", "Email"}
		}, Key{KindSession, "s"}, `spec.forwardClaims[1]: duplicate claim (ignoring case) "email"`},
		{"a selector operator the sidecar does not know", func(in *Input) {
			in.RateLimits[0].Spec.PodSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Matches", Values: []string{"x"}}}}
		}, Key{KindRateLimit, "limits"}, `spec.podSelector.matchExpressions[0].operator: unknown operator "Matches"`},
		{"a pool size from the RedisCluster's status", func(in *Input) {
			in.RedisClusters[0].Status.SidecarPoolSize = -1
		}, Key{KindRateLimit, "limits"}, `RedisCluster "redis" (its connection: poolSize): must not be negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Namespace:     "shop",
				Sessions:      []v1alpha1.SessionPolicy{session("s", time.Hour, app("storefront"), "redis")},
				RateLimits:    []v1alpha1.RateLimitPolicy{rateLimit("limits", 10, "redis")},
				Caches:        []v1alpha1.CachePolicy{cachePolicy("c", time.Hour, app("storefront"))},
				RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")},
			}
			tt.in(&in)
			res, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			v := res.Verdicts[tt.key]
			if v.Accepted || v.Reason != v1alpha1.ReasonInvalidSpec || !strings.Contains(v.Message, tt.message) {
				t.Errorf("verdict = %+v, want InvalidSpec saying %q", v, tt.message)
			}
			rendered := map[Kind][]string{
				KindSession:   names(res.Config.Sessions, func(p config.SessionPolicy) string { return p.Name }),
				KindRateLimit: names(res.Config.RateLimits, func(p config.RateLimitPolicy) string { return p.Name }),
				KindCache:     names(res.Config.Caches, func(p config.CachePolicy) string { return p.Name }),
			}
			if slices.Contains(rendered[tt.key.Kind], tt.key.Name) {
				t.Errorf("the refused policy %s was rendered: %s", tt.key.Name, res.Data)
			}
		})
	}
}

func names[T any](ps []T, name func(T) string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = name(p)
	}
	return out
}

// The CRD defaults token.scheme to Bearer even for a policy that reads only
// a cookie; the sidecar refuses a scheme without a header, so before the
// render dropped it every cookie-only SessionPolicy was refused.
func TestRenderCookieOnlySession(t *testing.T) {
	s := session("cookie", time.Hour, app("storefront"), "redis")
	s.Spec.Token = v1alpha1.SessionTokenSource{Header: new(""), Scheme: new("Bearer"), Cookie: "sid"}
	res, err := Render(Input{Namespace: "shop", Sessions: []v1alpha1.SessionPolicy{s}, RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")}})
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Verdicts[Key{KindSession, "cookie"}]; !v.Accepted {
		t.Fatalf("verdict = %+v, want the cookie-only policy accepted", v)
	}
	if diff := cmp.Diff(config.TokenSource{Cookie: "sid"}, res.Config.Sessions[0].Token); diff != "" {
		t.Errorf("token source (-want +got):\n%s", diff)
	}
}

func TestFieldPath(t *testing.T) {
	for doc, want := range map[string]string{
		"rateLimits[0].rules[1].window":              "spec.rules[1].window",
		"rateLimits[0].rules[0].match.methods[2]":    "spec.rules[0].match.methods[2]",
		"rateLimits[0].rules":                        "spec.rules",
		"sessions[0].token.scheme":                   "spec.token.scheme",
		"sessions[0].requireFor[3]":                  "spec.requireFor[3]",
		"sessions[0].selector.matchLabels":           "spec.podSelector.matchLabels",
		"caches[0].selector.matchExpressions[1].key": "spec.podSelector.matchExpressions[1].key",
		"caches[0].redis":                            "spec.redisRef.name",
		"caches[0].name":                             "metadata.name",
		"caches[0].invalidate[2]":                    "spec.invalidate[2]",
		"caches[0]":                                  "spec",
		"redis[0].addrs[0]":                          `RedisCluster "rc" (its connection: addrs[0])`,
		"kind":                                       "kind",
	} {
		if got := fieldPath(doc, "rc"); got != want {
			t.Errorf("fieldPath(%q) = %q, want %q", doc, got, want)
		}
	}
}

// A Redis outage must never take a policy out of force: the sidecars handle
// it by failure mode, while removing a SessionPolicy would let requests
// through unauthenticated.
func TestRenderKeepsPoliciesInForceThroughRedisOutages(t *testing.T) {
	down := readyCluster("redis")
	down.Status.Conditions[0].Status = metav1.ConditionFalse
	degraded := readyCluster("degraded")
	degraded.Status.Conditions[0].Status = metav1.ConditionFalse
	degraded.Status.ClusterState, degraded.Status.SlotsAssigned = "ok", 16384

	inForce := session("in-force", time.Hour, app("a"), "redis")
	never := session("never-in-force", time.Hour, app("b"), "redis")
	// A status claiming a hash is output, not evidence of being in force.
	never.Status.ConfigHash = "stale"
	onDegraded := session("on-degraded", time.Hour, app("c"), "degraded")

	res, err := Render(Input{Namespace: "shop",
		Sessions:      []v1alpha1.SessionPolicy{inForce, never, onDegraded},
		RedisClusters: []v1alpha1.RedisCluster{down, degraded},
		InForce:       map[Key]bool{{KindSession, "in-force"}: true}})
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		Accepted       bool
		Reason         string
		NotReadyReason string
	}
	verdicts := map[string]got{}
	for k, v := range res.Verdicts {
		verdicts[k.Name] = got{v.Accepted, v.Reason, v.NotReadyReason}
	}
	want := map[string]got{
		"in-force":       {true, v1alpha1.ReasonAccepted, v1alpha1.ReasonRedisClusterNotReady},
		"never-in-force": {false, v1alpha1.ReasonRedisClusterNotReady, ""},
		"on-degraded":    {true, v1alpha1.ReasonAccepted, ""},
	}
	if diff := cmp.Diff(want, verdicts); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	var rendered []string
	for _, s := range res.Config.Sessions {
		rendered = append(rendered, s.Name)
	}
	if diff := cmp.Diff([]string{"in-force", "on-degraded"}, rendered); diff != "" {
		t.Errorf("rendered sessions (-want +got):\n%s", diff)
	}
}

// caseInsensitive (rules) and caseInsensitivePaths (sessions) reach the
// sidecar document; omitted, they are false.
func TestRenderCaseInsensitiveMatching(t *testing.T) {
	yes := true
	s := session("web", time.Hour, app("storefront"), "redis")
	s.Spec.RequireFor = []string{"/admin/"}
	s.Spec.CaseInsensitivePaths = &yes
	rl := rateLimit("login", 1, "redis")
	rl.Spec.Rules[0].Match = v1alpha1.HTTPMatch{PathPrefix: "/api/login", CaseInsensitive: &yes}
	c := cachePolicy("catalog", time.Minute, app("storefront"))
	res, err := Render(Input{Namespace: "shop", Sessions: []v1alpha1.SessionPolicy{s}, RateLimits: []v1alpha1.RateLimitPolicy{rl},
		Caches: []v1alpha1.CachePolicy{c}, RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")}})
	if err != nil {
		t.Fatal(err)
	}
	got := []bool{res.Config.Sessions[0].CaseInsensitivePaths, res.Config.RateLimits[0].Rules[0].Match.CaseInsensitive, res.Config.Caches[0].Rules[0].Match.CaseInsensitive}
	if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
		t.Errorf("rendered case-insensitivity (-want +got):\n%s", diff)
	}
}

// forwardToken reaches the sidecar document; omitted (or false) the
// sidecar strips the token, and the document does not spell the field, so
// documents rendered before it existed keep their hash.
func TestRenderForwardToken(t *testing.T) {
	yes, no := true, false
	for _, tt := range []struct {
		name string
		in   *bool
		want bool
	}{{"omitted", nil, false}, {"false", &no, false}, {"true", &yes, true}} {
		t.Run(tt.name, func(t *testing.T) {
			s := session("web", time.Hour, app("storefront"), "redis")
			s.Spec.ForwardToken = tt.in
			res, err := Render(Input{Namespace: "shop", Sessions: []v1alpha1.SessionPolicy{s}, RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")}})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Config.Sessions[0].ForwardToken; got != tt.want {
				t.Errorf("rendered forwardToken = %v, want %v", got, tt.want)
			}
			doc, err := json.Marshal(res.Config)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(doc), `"forwardToken"`); got != tt.want {
				t.Errorf("document spells forwardToken: %v, want %v:\n%s", got, tt.want, doc)
			}
		})
	}
}

// The RFC 9111 fields of a cache rule reach the sidecar config as set, and
// an omitted stale cap stays omitted, so the sidecar's defaults (which
// depend on the rule's mode) decide it.
func TestRenderCacheRuleFields(t *testing.T) {
	c := cachePolicy("catalog", time.Minute, app("storefront"))
	c.Spec.CanonicalHost = "shop.example"
	r := &c.Spec.Rules[0]
	r.Mode = v1alpha1.CacheModeOverride
	r.SetCookie = v1alpha1.SetCookieStrip
	r.MaxVariants = new(int32(64))
	r.LockTimeout = &metav1.Duration{Duration: 2 * time.Second}
	r.StaleIfError = &metav1.Duration{Duration: time.Hour}
	res, err := Render(Input{Namespace: "shop", Caches: []v1alpha1.CachePolicy{c}, RedisClusters: []v1alpha1.RedisCluster{readyCluster("redis")}})
	if err != nil {
		t.Fatal(err)
	}
	got := res.Config.Caches[0]
	sie := config.Duration(time.Hour)
	want := config.CacheRule{
		Name: "products", Match: config.Match{PathPrefix: "/products"}, Mode: config.CacheOverride,
		TTL: config.Duration(5 * time.Minute), MaxBodyBytes: new(int64(512 << 10)), HonorCacheControl: true,
		StaleIfError: &sie, SetCookie: config.SetCookieStrip, MaxVariants: 64, LockTimeout: config.Duration(2 * time.Second),
	}
	if diff := cmp.Diff(want, got.Rules[0]); diff != "" || got.CanonicalHost != "shop.example" {
		t.Errorf("rendered rule (-want +got):\n%s canonicalHost %q", diff, got.CanonicalHost)
	}
}

// The rule's quota and the policy's header form reach the sidecar as
// written: a Leased rule rendered Strict would cost a Redis call per
// request, and a Legacy client would lose its headers.
func TestRateLimitSectionCarriesQuotaAndHeaders(t *testing.T) {
	p := rateLimit("rl", 10, "redis")
	p.Spec.Headers = v1alpha1.HeadersLegacy
	p.Spec.Rules[0].Algorithm, p.Spec.Rules[0].Quota = v1alpha1.FixedWindow, v1alpha1.QuotaLeased
	got := rateLimitSection("shop", p)
	if got.Headers != config.HeadersLegacy || got.Rules[0].Quota != config.QuotaLeased {
		t.Errorf("rendered headers %q, quota %q; want Legacy, Leased", got.Headers, got.Rules[0].Quota)
	}
}
