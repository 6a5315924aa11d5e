package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisnames"
	"github.com/gatehouse-dev/gatehouse/internal/render"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// FuzzRenderedDocumentsBuild holds the operator to the sidecar, with the
// sidecar's real build path (compile, Redis clients constructed lazily,
// every feature's constructor, for the labels of every policy) as the
// judge. For any namespace of policies, valid or not:
//
//   - every document Render emits loads (config.Decode) and builds;
//   - a policy Render accepts is in that document, and one it refuses is not;
//   - a policy whose section alone the sidecar's build refuses is
//     Accepted=False, and one whose section builds is never refused as
//     InvalidSpec: Render's verdicts are the sidecar's, not a guess;
//   - an InvalidSpec message names fields of the policy (spec.rules[0].window)
//     that exist in it, or its RedisCluster.
//
// Run it alone with
//
//	go test ./sidecar/proxy -run '^$' -fuzz FuzzRenderedDocumentsBuild -fuzztime 10m
func FuzzRenderedDocumentsBuild(f *testing.F) {
	for _, seed := range []string{
		"", "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09",
		"\x01\x02\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01",
		"\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03\x03",
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1\xf0",
		strings.Repeat("\x07\x11\x05", 20),
	} {
		f.Add([]byte(seed))
	}
	// The rendered connections name this password variable; the Redis
	// address refuses at once, so nothing waits on a dial.
	f.Setenv(redisnames.PasswordEnv(fuzzCluster), "secret")
	whole, single := fuzzProxy(f), fuzzProxy(f)

	f.Fuzz(func(t *testing.T, data []byte) {
		in := (&policyGen{b: data}).input()
		res, err := render.Render(in)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}

		// The document the sidecars load builds, for every pod it selects.
		cfg, err := config.Decode(res.Data)
		if err != nil {
			t.Fatalf("the sidecar cannot load the rendered document: %v\n%s", err, res.Data)
		}
		for _, labels := range podLabels(in) {
			if err := whole.setLabels(labels); err != nil {
				t.Fatalf("labels %v: %v", labels, err)
			}
			if err := whole.apply(cfg); err != nil {
				t.Fatalf("the sidecar refuses the rendered document for labels %v: %v\n%s", labels, err, res.Data)
			}
		}

		for _, p := range policiesOf(in) {
			v, ok := res.Verdicts[p.key]
			if !ok {
				t.Fatalf("no verdict for %v", p.key)
			}
			if rendered := slices.Contains(sectionNames(cfg, p.key.Kind), p.key.Name); rendered != v.Accepted {
				t.Fatalf("%v: accepted %v but in the document %v\n%s", p.key, v.Accepted, rendered, res.Data)
			}

			doc, _ := render.Candidate(in, p.key)
			if err := single.setLabels(selectedBy(p.selector)); err != nil {
				t.Fatal(err)
			}
			built := single.apply(&doc)
			switch {
			case built != nil && v.Accepted:
				t.Fatalf("%v is Accepted, but the sidecar refuses its section: %v", p.key, built)
			case built == nil && v.Reason == v1alpha1.ReasonInvalidSpec:
				t.Fatalf("%v is refused as InvalidSpec (%s), but the sidecar builds its section", p.key, v.Message)
			case v.Reason == v1alpha1.ReasonInvalidSpec:
				checkNamesFields(t, p, v.Message)
			}
		}
	})
}

// fuzzCluster is the one RedisCluster the generated policies may name.
const fuzzCluster = "redis"

func fuzzProxy(f *testing.F) *Proxy {
	u, _ := url.Parse("http://127.0.0.1:1")
	p, err := New(Options{
		Upstream:   u,
		ConfigPath: filepath.Join(f.TempDir(), "unused.json"),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	return p
}

// fieldRE finds the fields an InvalidSpec message names.
var fieldRE = regexp.MustCompile(`(?:^|; )((?:spec|metadata)[^:]*|RedisCluster "[^"]*" \(its connection: [^)]*\)): `)

func checkNamesFields(t *testing.T, p fuzzPolicy, msg string) {
	t.Helper()
	const prefix = "The sidecar would refuse this policy: "
	rest, ok := strings.CutPrefix(msg, prefix)
	if !ok {
		t.Fatalf("%v: message %q does not say the sidecar refuses it", p.key, msg)
	}
	fields := fieldRE.FindAllStringSubmatch(rest, -1)
	if len(fields) == 0 {
		t.Fatalf("%v: message %q names no field", p.key, msg)
	}
	for _, m := range fields {
		field := m[1]
		if strings.HasPrefix(field, "RedisCluster ") {
			if !strings.HasPrefix(field, fmt.Sprintf("RedisCluster %q", p.redis)) {
				t.Fatalf("%v: %q is not the policy's RedisCluster %q", p.key, field, p.redis)
			}
			continue
		}
		if !hasField(p.object, field) {
			t.Fatalf("%v: message %q names %s, which is no field of the policy", p.key, msg, field)
		}
	}
}

// hasField reports whether path ("spec.rules[0].window") names a field of
// obj's type (by its JSON name, as the CRD has it), with every index within
// the lists obj holds. The field itself may be unset: the message may be
// about its zero value.
func hasField(obj any, path string) bool {
	v := reflect.ValueOf(obj)
	for part := range strings.SplitSeq(path, ".") {
		name, index, _ := strings.Cut(part, "[")
		f, ok := jsonField(deref(v), name)
		if !ok {
			return false
		}
		v = f
		for index != "" {
			var i string
			i, index, _ = strings.Cut(index, "]")
			index = strings.TrimPrefix(index, "[")
			n, err := strconv.Atoi(i)
			v = deref(v)
			if err != nil || v.Kind() != reflect.Slice || n >= v.Len() {
				return false
			}
			v = v.Index(n)
		}
	}
	return true
}

// deref follows pointers, standing in the zero value for a nil one.
func deref(v reflect.Value) reflect.Value {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.Zero(v.Type().Elem())
			continue
		}
		v = v.Elem()
	}
	return v
}

// jsonField is the field of struct value v whose JSON name is name, looking
// into inlined embedded structs as encoding/json does.
func jsonField(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	for i := range v.NumField() {
		sf := v.Type().Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		switch {
		case tag == name:
			return v.Field(i), true
		case tag == "" && sf.Anonymous:
			if f, ok := jsonField(deref(v.Field(i)), name); ok {
				return f, true
			}
		}
	}
	return reflect.Value{}, false
}

func sectionNames(c *config.Config, kind render.Kind) []string {
	var names []string
	switch kind {
	case render.KindSession:
		for _, s := range c.Sessions {
			names = append(names, s.Name)
		}
	case render.KindRateLimit:
		for _, s := range c.RateLimits {
			names = append(names, s.Name)
		}
	case render.KindCache:
		for _, s := range c.Caches {
			names = append(names, s.Name)
		}
	}
	return names
}

type fuzzPolicy struct {
	key      render.Key
	selector metav1.LabelSelector
	redis    string
	object   any // the typed policy
}

func policiesOf(in render.Input) []fuzzPolicy {
	var out []fuzzPolicy
	add := func(kind render.Kind, name string, sel metav1.LabelSelector, redis string, obj any) {
		out = append(out, fuzzPolicy{render.Key{Kind: kind, Name: name}, sel, redis, obj})
	}
	for i := range in.Sessions {
		p := &in.Sessions[i]
		add(render.KindSession, p.Name, p.Spec.PodSelector, p.Spec.RedisRef.Name, p)
	}
	for i := range in.RateLimits {
		p := &in.RateLimits[i]
		add(render.KindRateLimit, p.Name, p.Spec.PodSelector, p.Spec.RedisRef.Name, p)
	}
	for i := range in.Caches {
		p := &in.Caches[i]
		add(render.KindCache, p.Name, p.Spec.PodSelector, p.Spec.RedisRef.Name, p)
	}
	return out
}

// selectedBy returns labels a selector selects, when it can select any.
func selectedBy(s metav1.LabelSelector) map[string]string {
	labels := maps.Clone(s.MatchLabels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, e := range s.MatchExpressions {
		switch {
		case e.Operator == metav1.LabelSelectorOpIn && len(e.Values) > 0:
			labels[e.Key] = e.Values[0]
		case e.Operator == metav1.LabelSelectorOpExists:
			labels[e.Key] = "x"
		}
	}
	return labels
}

// podLabels are the label sets of the pods the policies of in select, and
// a pod none selects.
func podLabels(in render.Input) []map[string]string {
	out := []map[string]string{{}}
	for _, p := range policiesOf(in) {
		out = append(out, selectedBy(p.selector))
	}
	return out
}

// policyGen builds a namespace of policies from fuzz input: every choice is
// one byte, among values at and around the bounds the API server and the
// sidecar draw, or a string taken from the input itself. Each choice lists
// the values the sidecar accepts first and takes one of them seven times in
// eight, so that whole policies pass as often as they fail.
type policyGen struct{ b []byte }

func (g *policyGen) byte() int {
	if len(g.b) == 0 {
		return 0
	}
	v := int(g.b[0])
	g.b = g.b[1:]
	return v
}

// n is a structural choice: one of k, uniformly.
func (g *policyGen) n(k int) int { return g.byte() % k }

// pick chooses among xs, whose first valid (at least one) are values the
// sidecar accepts.
func pick[T any](g *policyGen, valid int, xs ...T) T {
	b := g.byte()
	if b%8 != 0 {
		return xs[(b/8)%valid]
	}
	return xs[(b/8)%len(xs)]
}

// raw is a string of the input's own bytes.
func (g *policyGen) raw() string {
	n := min(g.n(24), len(g.b))
	s := string(g.b[:n])
	g.b = g.b[n:]
	return s
}

// str is pick over strings, with the input's own bytes among the others.
func (g *policyGen) str(valid int, xs ...string) string {
	if s := pick(g, valid, append(xs, "\x00raw")...); s != "\x00raw" {
		return s
	}
	return g.raw()
}

func (g *policyGen) dur(valid int, xs ...*metav1.Duration) *metav1.Duration {
	return pick(g, valid, xs...)
}

func d(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }

func (g *policyGen) quantity(valid int, xs ...string) *resource.Quantity {
	s := pick(g, valid, xs...)
	if s == "" {
		return nil
	}
	q := resource.MustParse(s)
	return &q
}

func (g *policyGen) boolp() *bool { return pick(g, 3, nil, new(true), new(false)) }

func (g *policyGen) list(item func() string) []string {
	var out []string
	for range g.n(4) {
		out = append(out, item())
	}
	return out
}

func (g *policyGen) path() string {
	return g.str(6, "/", "/api/", "/caf%C3%A9/", "/a//./b", "/%2F", "/ünï", "", "api", "/a%zz", "/a;b", `/a\b`, "/x?y")
}

var apps = []string{"web", "api", "admin", "shop", "cart", "search"}

func (g *policyGen) selector() metav1.LabelSelector {
	app := apps[g.n(len(apps))]
	switch g.n(5) {
	case 0:
		return metav1.LabelSelector{MatchLabels: map[string]string{g.str(2, "app", "example.com/app", "tier!", ""): app}}
	case 1:
		op := pick(g, 4, metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist, "Matches")
		var values []string
		if op == metav1.LabelSelectorOpIn || op == metav1.LabelSelectorOpNotIn {
			values = []string{app}
		}
		if g.n(8) == 0 {
			values = pick(g, 1, nil, []string{app})
		}
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: op, Values: values}}}
	case 2:
		if g.n(4) == 0 {
			return metav1.LabelSelector{}
		}
	}
	return metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func (g *policyGen) match(methods ...v1alpha1.HTTPMethod) v1alpha1.HTTPMatch {
	m := v1alpha1.HTTPMatch{PathPrefix: g.path(), CaseInsensitive: g.boolp()}
	for range g.n(3) {
		m.Methods = append(m.Methods, pick(g, len(methods), append(methods, "GET", "POST", "OPTIONS", "get")...))
	}
	if g.n(3) == 0 {
		m.Header = &v1alpha1.HeaderMatch{Name: g.str(1, "X-Tier", "bad name", ""), Value: g.str(2, "", "free")}
	}
	return m
}

func (g *policyGen) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(time.Unix(int64(1e9+g.n(4)), 0))}
}

func (g *policyGen) redisRef() v1alpha1.RedisReference {
	return v1alpha1.RedisReference{Name: pick(g, 1, fuzzCluster, "missing")}
}

func (g *policyGen) session(name string) v1alpha1.SessionPolicy {
	ms := time.Millisecond
	return v1alpha1.SessionPolicy{ObjectMeta: g.meta(name), Spec: v1alpha1.SessionPolicySpec{
		PodSelector: g.selector(),
		RedisRef:    g.redisRef(),
		Token: v1alpha1.SessionTokenSource{
			Header: pick(g, 4, nil, new("Authorization"), new("X-Token"), new(""), new("bad header")),
			Scheme: pick(g, 3, nil, new(""), new("Bearer"), new("bad scheme")),
			Cookie: g.str(2, "", "sid", "a;b"),
		},
		TTL:                  g.dur(5, nil, d(ms), d(time.Second), d(30*time.Minute), d(200*time.Hour), d(0), d(ms/2), d(9000*time.Hour), d(-time.Second)),
		Sliding:              g.boolp(),
		MaxLifetime:          g.dur(3, nil, d(168*time.Hour), d(8784*time.Hour), d(time.Minute), d(9000*time.Hour), d(-time.Minute)),
		RefreshBelow:         g.dur(2, nil, d(time.Minute), d(time.Hour), d(-time.Second)),
		RequireFor:           g.list(g.path),
		PublicPaths:          g.list(g.path),
		CaseInsensitivePaths: g.boolp(),
		ForwardClaims:        g.list(func() string { return g.str(2, "email", "tier", "Email", "bad claim", strings.Repeat("c", 65)) }),
	}}
}

func (g *policyGen) rateLimit(name string) v1alpha1.RateLimitPolicy {
	p := v1alpha1.RateLimitPolicy{ObjectMeta: g.meta(name), Spec: v1alpha1.RateLimitPolicySpec{PodSelector: g.selector(), RedisRef: g.redisRef(),
		Headers: pick(g, 4, "", v1alpha1.HeadersDraft, v1alpha1.HeadersLegacy, v1alpha1.HeadersBoth, "Fancy")}}
	us := time.Microsecond
	for i := range 1 + g.n(3) {
		if g.n(16) == 0 {
			break // a policy without rules
		}
		r := v1alpha1.RateLimitRule{
			Name:        pick(g, 1, fmt.Sprintf("r%d", i), "r0", "", "Bad/Name"),
			Match:       g.match("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
			Key:         v1alpha1.RateLimitKey{ClientIP: g.n(2) == 0, Header: g.str(2, "", "X-Key", "bad header"), Subject: g.n(2) == 0, Path: g.n(2) == 0},
			Limit:       pick[int64](g, 5, 1, 10, 1000, 5000, 1e9, 0, -1),
			Window:      metav1.Duration{Duration: pick(g, 5, time.Millisecond, time.Second, 1500*time.Millisecond, time.Hour, 24*time.Hour, 1500*us, 999*us, 0, -time.Second, time.Hour+1)},
			Algorithm:   pick(g, 4, v1alpha1.FixedWindow, v1alpha1.SlidingWindow, v1alpha1.TokenBucket, "", "LeakyBucket"),
			Burst:       pick(g, 1, nil, new(int64(1)), new(int64(1e9)), new(int64(0)), new(int64(-1))),
			Mode:        pick(g, 3, v1alpha1.Enforce, v1alpha1.Shadow, "", "Maybe"),
			FailureMode: pick(g, 3, v1alpha1.FailOpen, v1alpha1.FailClosed, "", "Sometimes"),
			// Leased is refused on a SlidingWindow rule.
			Quota: pick(g, 3, "", v1alpha1.QuotaStrict, v1alpha1.QuotaLeased, "Loose"),
		}
		if r.Algorithm == v1alpha1.TokenBucket && g.n(2) == 0 {
			r.Burst = pick(g, 2, new(int64(1)), new(int64(1e9)), nil, new(int64(0)))
		}
		p.Spec.Rules = append(p.Spec.Rules, r)
	}
	return p
}

func (g *policyGen) cache(name string) v1alpha1.CachePolicy {
	us := time.Microsecond
	p := v1alpha1.CachePolicy{ObjectMeta: g.meta(name), Spec: v1alpha1.CachePolicySpec{PodSelector: g.selector(), RedisRef: g.redisRef(),
		CanonicalHost: g.str(3, "", "shop.example", "[::1]:8080", "Shop.Example", "shop.example:x", strings.Repeat("a.", 127)+"a")}}
	if g.n(3) == 0 {
		p.Spec.InProcess = &v1alpha1.InProcessTier{MaxEntries: pick[int32](g, 2, 1, 10000, 0), MaxBytes: g.quantity(3, "", "1", "64Mi", "0", "-1")}
	}
	for i := range 1 + g.n(3) {
		if g.n(16) == 0 {
			break // a policy without rules
		}
		r := v1alpha1.CacheRule{
			Name:                 pick(g, 1, fmt.Sprintf("c%d", i), "c0", ""),
			Match:                g.match("GET", "HEAD"),
			TTL:                  metav1.Duration{Duration: pick(g, 2, time.Minute, time.Nanosecond, 0, -time.Second)},
			VaryHeaders:          g.list(func() string { return g.str(1, "Accept-Language", "bad header") }),
			VaryBySubject:        g.n(2) == 0,
			MaxBodyBytes:         g.quantity(5, "", "1", "1Mi", "64Mi", "1.5", "65Mi", "0", "-1", "100Ei"),
			HonorCacheControl:    g.boolp(),
			StaleWhileRevalidate: g.dur(3, nil, d(0), d(time.Second), d(-time.Second)),
			StaleIfError:         g.dur(3, nil, d(0), d(time.Minute), d(-time.Minute)),
			Tags:                 g.list(func() string { return g.str(1, "catalogue", "") }),
			Mode:                 pick(g, 3, "", v1alpha1.CacheModeStandard, v1alpha1.CacheModeOverride, "Heuristic"),
			SetCookie:            pick(g, 3, "", v1alpha1.SetCookieNotStored, v1alpha1.SetCookieStrip, "Keep"),
			MaxVariants:          pick(g, 3, nil, new(int32(1)), new(int32(10000)), new(int32(0)), new(int32(10001)), new(int32(-1))),
			LockTimeout:          g.dur(4, nil, d(time.Millisecond), d(1500*us), d(time.Minute), d(0), d(-time.Second), d(time.Nanosecond)),
		}
		p.Spec.Rules = append(p.Spec.Rules, r)
	}
	for i := range g.n(3) {
		inv := v1alpha1.InvalidateRule{
			Name:         pick(g, 1, fmt.Sprintf("i%d", i), "i0", ""),
			Match:        g.match("POST", "PUT", "PATCH", "DELETE"),
			RequestPath:  g.n(4) != 0,
			Paths:        g.list(g.path),
			PathPrefixes: g.list(g.path),
			Tags:         g.list(func() string { return g.str(1, "catalogue", "") }),
			GRPC:         g.n(4) == 0,
		}
		p.Spec.Invalidate = append(p.Spec.Invalidate, inv)
	}
	return p
}

func (g *policyGen) input() render.Input {
	in := render.Input{Namespace: "ns", InForce: map[render.Key]bool{}}
	if g.n(8) != 0 {
		rc := v1alpha1.RedisCluster{ObjectMeta: metav1.ObjectMeta{Name: fuzzCluster, Namespace: "ns"}}
		rc.Status.ClientService = "127.0.0.1:1"
		rc.Status.SidecarPoolSize = pick[int32](g, 2, 0, 5, -1)
		if g.n(8) != 0 {
			rc.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonClusterReady}}
		}
		in.RedisClusters = []v1alpha1.RedisCluster{rc}
	}
	for i := range g.n(3) {
		in.Sessions = append(in.Sessions, g.session(fmt.Sprintf("s%d", i)))
	}
	for i := range g.n(4) {
		in.RateLimits = append(in.RateLimits, g.rateLimit(fmt.Sprintf("rl%d", i)))
	}
	for i := range g.n(3) {
		in.Caches = append(in.Caches, g.cache(fmt.Sprintf("c%d", i)))
	}
	for _, p := range policiesOf(in) {
		if g.n(3) == 0 {
			in.InForce[p.key] = true
		}
	}
	return in
}
