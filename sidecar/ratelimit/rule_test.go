package ratelimit

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

func testPolicy(ns, name, conn string, rules ...config.RateLimitRule) config.RateLimitPolicy {
	return config.RateLimitPolicy{
		PolicyMeta: config.PolicyMeta{Namespace: ns, Name: name, Redis: conn},
		Rules:      rules,
	}
}

// mustCompile compiles r as the one rule of p.
func mustCompile(t testing.TB, p config.RateLimitPolicy, r config.RateLimitRule) *rule {
	t.Helper()
	p.Rules = []config.RateLimitRule{r}
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c.rules[0]
}

// req builds a request from ip (as the identity middleware would have
// recorded it) with optional subject and headers ("Name: value").
func req(method, path, ip, subject string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	ctx := r.Context()
	if ip != "" {
		ctx = identity.WithClientIP(ctx, netip.MustParseAddr(ip))
	}
	if subject != "" {
		ctx = identity.WithSubject(ctx, subject)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Add(k, v)
	}
	return r.WithContext(ctx)
}

func TestMatches(t *testing.T) {
	tests := []struct {
		name  string
		match config.Match
		req   *http.Request
		want  bool
	}{
		{"empty matches everything", config.Match{}, req("DELETE", "/x/y", "", ""), true},
		{"prefix", config.Match{PathPrefix: "/api/"}, req("GET", "/api/users", "", ""), true},
		{"prefix miss", config.Match{PathPrefix: "/api/"}, req("GET", "/apx/users", "", ""), false},
		{"method in list", config.Match{Methods: []string{"POST", "PUT"}}, req("POST", "/", "", ""), true},
		{"method miss", config.Match{Methods: []string{"POST"}}, req("GET", "/", "", ""), false},
		{"header present", config.Match{Header: &config.HeaderMatch{Name: "x-api-key"}}, req("GET", "/", "", "", "X-Api-Key: k"), true},
		{"header absent", config.Match{Header: &config.HeaderMatch{Name: "x-api-key"}}, req("GET", "/", "", ""), false},
		{"header value", config.Match{Header: &config.HeaderMatch{Name: "X-Tier", Value: "free"}}, req("GET", "/", "", "", "X-Tier: paid", "X-Tier: free"), true},
		{"header wrong value", config.Match{Header: &config.HeaderMatch{Name: "X-Tier", Value: "free"}}, req("GET", "/", "", "", "X-Tier: paid"), false},
		{"all conditions", config.Match{PathPrefix: "/login", Methods: []string{"POST"}, Header: &config.HeaderMatch{Name: "X-Tier"}}, req("POST", "/login", "", "", "X-Tier: a"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ru := mustCompile(t, testPolicy("ns", "p", "c"), config.RateLimitRule{Name: "r", Match: tt.match, Limit: 1, Window: config.Duration(time.Second)})
			if got := ru.match.Match(tt.req); got != tt.want {
				t.Errorf("matches = %v, want %v", got, tt.want)
			}
		})
	}
}

var keyShape = regexp.MustCompile(`^rl:\{([^{}]*)/[0-9a-f]{32}\}$`)

func TestCounterKey(t *testing.T) {
	type pair struct{ a, b *http.Request }
	tests := []struct {
		name string
		key  config.RateLimitKey
		reqs pair
		same bool
	}{
		{"global: everyone shares", config.RateLimitKey{}, pair{req("GET", "/a", "10.0.0.1", ""), req("POST", "/b", "10.0.0.2", "bob")}, true},
		{"ip: same address", config.RateLimitKey{ClientIP: true}, pair{req("GET", "/a", "10.0.0.1", "alice"), req("GET", "/b", "10.0.0.1", "bob")}, true},
		{"ip: different address", config.RateLimitKey{ClientIP: true}, pair{req("GET", "/", "10.0.0.1", ""), req("GET", "/", "10.0.0.2", "")}, false},
		{"ip: falls back to the peer address", config.RateLimitKey{ClientIP: true}, pair{req("GET", "/", "192.0.2.1", ""), req("GET", "/", "", "")}, true},
		{"subject: same subject, different address", config.RateLimitKey{Subject: true}, pair{req("GET", "/", "10.0.0.1", "alice"), req("GET", "/", "10.0.0.2", "alice")}, true},
		{"subject: different subjects", config.RateLimitKey{Subject: true}, pair{req("GET", "/", "10.0.0.1", "alice"), req("GET", "/", "10.0.0.1", "bob")}, false},
		{"subject: anonymous falls back to address", config.RateLimitKey{Subject: true}, pair{req("GET", "/", "10.0.0.1", ""), req("GET", "/", "10.0.0.2", "")}, false},
		{"subject: anonymous never equals a subject spelled like its address", config.RateLimitKey{Subject: true}, pair{req("GET", "/", "10.0.0.1", ""), req("GET", "/", "10.0.0.9", "10.0.0.1")}, false},
		{"header: same value", config.RateLimitKey{Header: "x-api-key"}, pair{req("GET", "/", "10.0.0.1", "", "X-Api-Key: k1"), req("GET", "/", "10.0.0.2", "", "X-Api-Key: k1")}, true},
		{"header: different values", config.RateLimitKey{Header: "X-Api-Key"}, pair{req("GET", "/", "10.0.0.1", "", "X-Api-Key: k1"), req("GET", "/", "10.0.0.1", "", "X-Api-Key: k2")}, false},
		{"header: missing falls back to address", config.RateLimitKey{Header: "X-Api-Key"}, pair{req("GET", "/", "10.0.0.1", ""), req("GET", "/", "10.0.0.2", "")}, false},
		{"path: same path", config.RateLimitKey{Path: true}, pair{req("GET", "/a", "10.0.0.1", ""), req("POST", "/a", "10.0.0.2", "")}, true},
		{"path: different paths", config.RateLimitKey{Path: true}, pair{req("GET", "/a", "10.0.0.1", ""), req("GET", "/b", "10.0.0.1", "")}, false},
		{"ip+path: both must agree", config.RateLimitKey{ClientIP: true, Path: true}, pair{req("GET", "/a", "10.0.0.1", ""), req("GET", "/a", "10.0.0.2", "")}, false},
		{"ip+header: value boundaries cannot be shifted", config.RateLimitKey{ClientIP: true, Header: "X-K"}, pair{req("GET", "/", "10.0.0.1", "", "X-K: 1"), req("GET", "/", "10.0.0.11", "", "X-K: ")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ru := mustCompile(t, testPolicy("ns", "pol", "c"), config.RateLimitRule{Name: "r", Key: tt.key, Limit: 1, Window: config.Duration(time.Second)})
			a, b := ru.counterKey(tt.reqs.a), ru.counterKey(tt.reqs.b)
			if (a == b) != tt.same {
				t.Errorf("keys %q and %q: same = %v, want %v", a, b, a == b, tt.same)
			}
			for _, k := range []string{a, b} {
				m := keyShape.FindStringSubmatch(k)
				if m == nil || m[1] != "ns/pol/r" {
					t.Errorf("key %q does not have the shape rl:{ns/pol/r/<hash>}", k)
				}
			}
		})
	}
}

// TestKeyPrefixEscaping: names cannot break the hash tag or collide by
// moving a "/" between namespace, policy and rule. Compile refuses such
// names already; the escaping keeps the key layout sound on its own.
func TestKeyPrefixEscaping(t *testing.T) {
	for in, want := range map[string]string{"per-ip": "per-ip", "a/b": "a%2Fb", "}{": "%7D%7B", "100%": "100%25"} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
	ru := mustCompile(t, testPolicy("shop", "api", "c"), config.RateLimitRule{Name: "per-ip", Limit: 1, Window: config.Duration(time.Second)})
	if diff := cmp.Diff("rl:{shop/api/per-ip/", ru.keyPrefix); diff != "" {
		t.Errorf("prefix (-want +got):\n%s", diff)
	}
	key := ru.counterKey(req("GET", "/", "10.0.0.1", ""))
	if strings.Count(key, "{") != 1 || strings.Count(key, "}") != 1 || !strings.HasSuffix(key, "}") {
		t.Errorf("key %q: hash tag is not exactly the braced tail", key)
	}
}

func TestCompile(t *testing.T) {
	p := testPolicy("ns", "p", "c")
	t.Run("defaults and headers", func(t *testing.T) {
		type view struct {
			Algorithm           config.Algorithm
			Burst               int64
			Shadow, FailClosed  bool
			MatchesEveryPath    bool
			Args                []any
			LimitHdr, PolicyHdr string
		}
		tests := []struct {
			name string
			rule config.RateLimitRule
			want view
		}{
			{"zero values", config.RateLimitRule{Name: "r", Limit: 100, Window: config.Duration(time.Minute)},
				view{config.FixedWindow, 0, false, false, true, nil, "100", "100;w=60"}},
			{"sliding 1500ms", config.RateLimitRule{Name: "r", Limit: 10, Window: config.Duration(1500 * time.Millisecond), Algorithm: config.SlidingWindow, Mode: config.Shadow, FailureMode: config.FailClosed},
				view{config.SlidingWindow, 0, true, true, true, []any{int64(75), int64(20), int64(10)}, "10", "10;w=2"}},
			{"token bucket default burst", config.RateLimitRule{Name: "r", Limit: 7, Window: config.Duration(time.Hour), Algorithm: config.TokenBucket},
				view{config.TokenBucket, 7, false, false, true, []any{"514285714.28571427", int64(7)}, "7", "7;w=3600;burst=7"}},
			{"token bucket burst", config.RateLimitRule{Name: "r", Limit: 50, Window: config.Duration(time.Second), Algorithm: config.TokenBucket, Burst: 20},
				view{config.TokenBucket, 20, false, false, true, []any{"20000", int64(20)}, "20", "50;w=1;burst=20"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := mustCompile(t, p, tt.rule)
				got := view{c.algorithm, c.burst, c.shadow, c.failClosed, c.match.MatchPath("/any/path"), c.args, c.limitHeader, c.policyHeader}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("compiled rule (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestCompileReportsEveryProblem(t *testing.T) {
	second := config.Duration(time.Second)
	tests := []struct {
		name    string
		rules   []config.RateLimitRule
		headers config.HeaderForm
		want    []string
	}{
		{name: "no rules", want: []string{`rules: at least one rule is required`}},
		{
			name: "every field wrong",
			rules: []config.RateLimitRule{
				{Name: "a", Limit: -1, Burst: 5, Match: config.Match{PathPrefix: "api", Methods: []string{"get"}, Header: &config.HeaderMatch{Name: ""}}},
				{Name: "a", Limit: 10, Window: config.Duration(time.Microsecond), Algorithm: "LeakyBucket", Mode: "Maybe", FailureMode: "Sometimes", Key: config.RateLimitKey{Header: "x y"}},
				{Name: "", Limit: 1, Window: second},
			},
			want: []string{
				`rules[0].match.pathPrefix: "api" must start with /`,
				`rules[0].match.methods[0]: "get" must be an upper-case HTTP method`,
				`rules[0].match.header.name: "" is not a valid header name`,
				`rules[0].limit: must be positive, got -1`,
				`rules[0].window: must be a positive whole number of milliseconds, got 0s`,
				`rules[0].burst: only valid with algorithm TokenBucket`,
				`rules[1].name: duplicate rule name "a"`,
				`rules[1].key.header: "x y" is not a valid header name`,
				`rules[1].window: must be a positive whole number of milliseconds, got 1µs`,
				`rules[1].algorithm: unknown algorithm "LeakyBucket": must be FixedWindow, SlidingWindow or TokenBucket`,
				`rules[1].mode: unknown mode "Maybe": must be Enforce or Shadow`,
				`rules[1].failureMode: unknown failure mode "Sometimes": must be Open or Closed`,
				`rules[2].name: required`,
			},
		},
		{
			name:    "an unknown header form",
			rules:   []config.RateLimitRule{{Name: "r", Limit: 1, Window: second}},
			headers: "Fancy",
			want:    []string{`headers: unknown header form "Fancy": must be Draft, Legacy or Both`},
		},
		{
			// A sliding window's slots cannot be handed out in slices.
			name: "quotas",
			rules: []config.RateLimitRule{
				{Name: "sw", Limit: 1, Window: second, Algorithm: config.SlidingWindow, Quota: config.QuotaLeased},
				{Name: "loose", Limit: 1, Window: second, Quota: "Loose"},
				{Name: "fw", Limit: 1, Window: second, Quota: config.QuotaLeased},
				{Name: "tb", Limit: 1, Window: second, Algorithm: config.TokenBucket, Quota: config.QuotaLeased},
			},
			want: []string{
				`rules[0].quota: Leased applies to FixedWindow and TokenBucket only`,
				`rules[1].quota: unknown quota "Loose": must be Strict or Leased`,
			},
		},
		{
			// The counters' scripts take whole milliseconds: 1.5ms would be
			// truncated to a 1ms window nobody configured.
			name:  "a window of 1.5ms",
			rules: []config.RateLimitRule{{Name: "r", Limit: 10, Window: config.Duration(1500 * time.Microsecond)}},
			want:  []string{`rules[0].window: must be a positive whole number of milliseconds, got 1.5ms`},
		},
		{
			// GCRA keeps its theoretical arrival time in microseconds: an
			// emission interval below one would be zero, admitting everything.
			name:  "a TokenBucket faster than one per microsecond",
			rules: []config.RateLimitRule{{Name: "r", Limit: 5000, Window: config.Duration(time.Millisecond), Algorithm: config.TokenBucket}},
			want:  []string{`rules[0].limit: 5000 per 1ms is more than one per microsecond, the finest rate a TokenBucket keeps: lower the limit or lengthen the window`},
		},
		{
			name:  "one per microsecond exactly",
			rules: []config.RateLimitRule{{Name: "r", Limit: 1000, Window: config.Duration(time.Millisecond), Algorithm: config.TokenBucket}},
		},
		{
			name:  "a negative burst",
			rules: []config.RateLimitRule{{Name: "r", Limit: 10, Window: second, Algorithm: config.TokenBucket, Burst: -1}},
			want:  []string{`rules[0].burst: must be positive, got -1`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy("ns", "p", "c", tt.rules...)
			p.Headers = tt.headers
			_, err := Compile(p)
			if diff := cmp.Diff(tt.want, config.Problems(err)); diff != "" {
				t.Errorf("Compile problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsAMissingConnection(t *testing.T) {
	r := config.RateLimitRule{Name: "r", Limit: 1, Window: config.Duration(time.Second)}
	p, err := Compile(testPolicy("ns", "a", "missing", r))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New([]*Policy{p}, map[string]*redisconn.Conn{"c": connFor(t, redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second}), nil)}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `unknown redis connection "missing"`) {
		t.Fatalf("New = %v, want the unknown connection refused", err)
	}
}

// TestCounterKeyShape: changing a rule's algorithm or window on reload
// starts new counters; changing its limit keeps them.
func TestCounterKeyShape(t *testing.T) {
	p := testPolicy("ns", "p", "c")
	base := config.RateLimitRule{Name: "r", Limit: 10, Window: config.Duration(time.Minute), Algorithm: config.FixedWindow}
	key := func(r config.RateLimitRule) string {
		return mustCompile(t, p, r).counterKey(req("GET", "/", "10.0.0.1", ""))
	}
	alg, win, lim := base, base, base
	alg.Algorithm = config.SlidingWindow
	win.Window = config.Duration(time.Hour)
	lim.Limit = 20
	got := []bool{key(alg) == key(base), key(win) == key(base), key(lim) == key(base)}
	if diff := cmp.Diff([]bool{false, false, true}, got); diff != "" {
		t.Errorf("same key after changing algorithm, window, limit (-want +got):\n%s", diff)
	}
}

// FuzzCounterKey: whatever the names and client-supplied values, a key has
// exactly one hash tag spanning its tail, and distinct name triples never
// share a prefix.
//
//	go test ./sidecar/ratelimit -run '^$' -fuzz FuzzCounterKey -fuzztime 30s
func FuzzCounterKey(f *testing.F) {
	f.Add("shop", "api", "per-ip", "shop", "api-per", "ip", "k1")
	f.Add("shop", "api", "per.ip", "shop", "api.per", "ip", "k1")
	f.Add("a", "b/c", "d", "a/b", "c", "d", "{x}")
	f.Add("%7B", "}", "{", "{", "}", "%7B", "")
	f.Fuzz(func(t *testing.T, ns1, pol1, rule1, ns2, pol2, rule2, value string) {
		// Names Compile refuses never reach a key; the others must be
		// kept apart whatever they contain.
		build := func(ns, pol, name string) *rule {
			p := testPolicy(ns, pol, "c", config.RateLimitRule{
				Name: "r" + name, Limit: 1, Window: config.Duration(time.Second), // rule names are required
				Key: config.RateLimitKey{Header: "X-Key", Subject: true, Path: true},
			})
			c, err := Compile(p)
			if err != nil {
				return nil
			}
			return c.rules[0]
		}
		a, b := build(ns1, pol1, rule1), build(ns2, pol2, rule2)
		if a == nil || b == nil {
			return
		}
		r := req("GET", "/", "10.0.0.1", value)
		r.Header.Set("X-Key", value)
		key := a.counterKey(r)
		open := strings.IndexByte(key, '{')
		if open != 3 || strings.IndexByte(key[open+1:], '}') != len(key)-open-2 {
			t.Fatalf("key %q: the hash tag is not the braced tail", key)
		}
		if (ns1 != ns2 || pol1 != pol2 || rule1 != rule2) && a.keyPrefix == b.keyPrefix {
			t.Fatalf("%q/%q/%q and %q/%q/%q share the prefix %q", ns1, pol1, rule1, ns2, pol2, rule2, a.keyPrefix)
		}
	})
}

// TestCompileDraftAndLease: the draft's RateLimit-Policy member of each
// algorithm (q and w, TokenBucket's being its burst and refill time), and a
// leased TokenBucket's lifetime and reduced burst (lease.go): the tokens one
// lifetime adds come off the burst, and a burst of 1 cannot be leased.
func TestCompileDraftAndLease(t *testing.T) {
	p := testPolicy("ns", "api", "c")
	type view struct {
		Draft string
		Life  time.Duration
		Args  []any
	}
	tests := []struct {
		name string
		rule config.RateLimitRule
		want view
	}{
		{"fixed", config.RateLimitRule{Name: "fixed", Limit: 100, Window: config.Duration(time.Minute)},
			view{`"api/fixed";q=100;w=60`, 0, nil}},
		{"leased fixed", config.RateLimitRule{Name: "lf", Limit: 100, Window: config.Duration(1500 * time.Millisecond), Quota: config.QuotaLeased},
			view{`"api/lf";q=100;w=2`, 0, []any{int64(1500), int64(100)}}},
		{"bucket", config.RateLimitRule{Name: "tb", Limit: 50, Window: config.Duration(time.Second), Algorithm: config.TokenBucket, Burst: 20},
			view{`"api/tb";q=20;w=1`, 0, []any{"20000", int64(20)}}},
		// 20ms per token, burst 20: life min(100ms, 10 tokens' 200ms) =
		// 100ms, 5 tokens, so the lease takes from a bucket of 15.
		{"leased bucket", config.RateLimitRule{Name: "ltb", Limit: 50, Window: config.Duration(time.Second), Algorithm: config.TokenBucket, Burst: 20, Quota: config.QuotaLeased},
			view{`"api/ltb";q=20;w=1`, 100 * time.Millisecond, []any{"20000", int64(15)}}},
		{"leased bucket of one", config.RateLimitRule{Name: "one", Limit: 10, Window: config.Duration(time.Second), Algorithm: config.TokenBucket, Burst: 1, Quota: config.QuotaLeased},
			view{`"api/one";q=1;w=1`, 0, []any{"100000", int64(1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, p, tt.rule)
			got := view{c.draftPolicy, c.leaseLife, c.args}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("compiled (-want +got):\n%s", diff)
			}
		})
	}
	// Compile refuses names outside [A-Za-z0-9._-]; the quoting keeps the
	// field well-formed on its own.
	if got, want := sfString(`api/a"b\c`+"\n"), `"api/a\"b\\c?"`; got != want {
		t.Errorf("sfString = %s, want %s", got, want)
	}
}
