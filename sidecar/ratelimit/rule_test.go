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

func mustCompile(t testing.TB, p config.RateLimitPolicy, r config.RateLimitRule) *rule {
	t.Helper()
	c, err := compile(p, r)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
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
		{"method any case", config.Match{Methods: []string{"post", "PUT"}}, req("POST", "/", "", ""), true},
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
// moving a "/" between namespace, policy and rule.
func TestKeyPrefixEscaping(t *testing.T) {
	tests := []struct {
		ns, policy, rule string
		want             string
	}{
		{"shop", "api", "per-ip", "rl:{shop/api/per-ip/"},
		{"shop", "api", "a/b", "rl:{shop/api/a%2Fb/"},
		{"shop", "api", "}{", "rl:{shop/api/%7D%7B/"},
		{"shop", "api", "100%", "rl:{shop/api/100%25/"},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			ru := mustCompile(t, testPolicy(tt.ns, tt.policy, "c"), config.RateLimitRule{Name: tt.rule, Limit: 1, Window: config.Duration(time.Second)})
			if diff := cmp.Diff(tt.want, ru.keyPrefix); diff != "" {
				t.Errorf("prefix (-want +got):\n%s", diff)
			}
			key := ru.counterKey(req("GET", "/", "10.0.0.1", ""))
			if strings.Count(key, "{") != 1 || strings.Count(key, "}") != 1 || !strings.HasSuffix(key, "}") {
				t.Errorf("key %q: hash tag is not exactly the braced tail", key)
			}
		})
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
	t.Run("reports every problem", func(t *testing.T) {
		_, err := compile(p, config.RateLimitRule{Name: "r", Limit: 0, Window: config.Duration(1500 * time.Microsecond), Mode: "Sometimes", Burst: 3})
		if err == nil {
			t.Fatal("compile accepted an invalid rule")
		}
		for _, want := range []string{"limit must be positive", "whole number of milliseconds", `unknown mode "Sometimes"`, "burst is only valid"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	})
}

func TestNewRejects(t *testing.T) {
	r := config.RateLimitRule{Name: "r", Limit: 1, Window: config.Duration(time.Second)}
	_, err := New([]config.RateLimitPolicy{
		testPolicy("ns", "a", "missing", r),
		testPolicy("ns", "b", "c", r, r),
	}, map[string]*redisconn.Conn{"c": connFor(t, redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadTimeout: time.Second}), nil)}, nil, nil)
	if err == nil {
		t.Fatal("New accepted an unknown connection and a duplicate rule")
	}
	for _, want := range []string{`unknown redis connection "missing"`, `rule "r": duplicate name`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
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
	f.Add("shop", "api", "per-ip", "shop", "api/per", "ip", "k1")
	f.Add("a", "b/c", "d", "a/b", "c", "d", "{x}")
	f.Add("%7B", "}", "{", "{", "}", "%7B", "")
	f.Fuzz(func(t *testing.T, ns1, pol1, rule1, ns2, pol2, rule2, value string) {
		build := func(ns, pol, name string) *rule {
			return mustCompile(t, testPolicy(ns, pol, "c"), config.RateLimitRule{
				Name: "r" + name, Limit: 1, Window: config.Duration(time.Second), // rule names are required
				Key: config.RateLimitKey{Header: "X-Key", Subject: true, Path: true},
			})
		}
		a, b := build(ns1, pol1, rule1), build(ns2, pol2, rule2)
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
		{"quoted name", config.RateLimitRule{Name: `a"b\c`, Limit: 1, Window: config.Duration(time.Hour)},
			view{`"api/a\"b\\c";q=1;w=3600`, 0, nil}},
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
	if _, err := compile(p, config.RateLimitRule{Name: "sw", Limit: 1, Window: config.Duration(time.Second), Algorithm: config.SlidingWindow, Quota: config.QuotaLeased}); err == nil {
		t.Error("a leased SlidingWindow compiled")
	}
}
