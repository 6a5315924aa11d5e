package config

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// valid returns a small document that passes Validate after Default.
func valid() *Config {
	return &Config{
		APIVersion: APIVersion,
		Kind:       Kind,
		Redis:      []RedisConnection{{Name: "main", Mode: RedisStandalone, Addrs: []string{"127.0.0.1:6379"}}},
		Sessions: []SessionPolicy{{
			PolicyMeta: PolicyMeta{Namespace: "ns", Name: "s", Redis: "main"},
			TTL:        Duration(time.Minute),
			Sliding:    true,
		}},
		RateLimits: []RateLimitPolicy{{
			PolicyMeta: PolicyMeta{Namespace: "ns", Name: "rl", Redis: "main"},
			Rules: []RateLimitRule{
				{Name: "a", Limit: 10, Window: Duration(time.Second)},
				{Name: "b", Limit: 10, Window: Duration(time.Second), Algorithm: TokenBucket},
			},
		}},
		Caches: []CachePolicy{{
			PolicyMeta: PolicyMeta{Namespace: "ns", Name: "c", Redis: "main"},
			Rules:      []CacheRule{{Name: "r", TTL: Duration(time.Minute)}},
			Invalidate: []InvalidateRule{{Name: "i", RequestPath: true}},
		}},
	}
}

func problems(err error) []string {
	if err == nil {
		return nil
	}
	var fe FieldErrors
	if !errors.As(err, &fe) {
		return []string{"not FieldErrors: " + err.Error()}
	}
	out := make([]string, len(fe))
	for i, e := range fe {
		out[i] = e.String()
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string
	}{
		{name: "valid", mutate: func(c *Config) {}},
		{
			name: "apiVersion and kind",
			mutate: func(c *Config) {
				c.APIVersion = "v1"
				c.Kind = ""
			},
			want: []string{
				`apiVersion: must be "sidecar.gatehouse.dev/v1alpha1", got "v1"`,
				`kind: must be "SidecarConfig", got ""`,
			},
		},
		{
			name:   "trusted proxies",
			mutate: func(c *Config) { c.Proxy.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33", "nope", "::1"} },
			want: []string{
				`proxy.trustedProxies[1]: invalid CIDR "10.0.0.0/33"`,
				`proxy.trustedProxies[2]: invalid CIDR or address "nope"`,
			},
		},
		{
			name:   "proxy deadlines",
			mutate: func(c *Config) { c.Proxy.WriteTimeout, c.Proxy.BodyReadTimeout = Duration(-1), Duration(-time.Second) },
			want: []string{
				`proxy.writeTimeout: must be positive`,
				`proxy.bodyReadTimeout: must be positive`,
			},
		},
		{
			// Spellings the request normaliser refuses can never be matched.
			name: "rule paths no accepted request has",
			mutate: func(c *Config) {
				c.Sessions[0].PublicPaths = []string{"/public/", `/public\admin`, "/a;jsessionid=1"}
				c.Sessions[0].RequireFor = []string{"/a?b", "/x%zz", "/nul\x00"}
				c.RateLimits[0].Rules[0].Match.PathPrefix = "/api#frag"
			},
			want: []string{
				`sessions[0].requireFor[0]: "/a?b" contains a query or fragment; paths are matched without them`,
				`sessions[0].requireFor[1]: "/x%zz" has a malformed percent-escape`,
				`sessions[0].requireFor[2]: "/nul\x00" contains a backslash, ';' or a control character, which no accepted request path has`,
				`sessions[0].publicPaths[1]: "/public\\admin" contains a backslash, ';' or a control character, which no accepted request path has`,
				`sessions[0].publicPaths[2]: "/a;jsessionid=1" contains a backslash, ';' or a control character, which no accepted request path has`,
				`rateLimits[0].rules[0].match.pathPrefix: "/api#frag" contains a query or fragment; paths are matched without them`,
			},
		},
		{
			name: "unknown and missing redis reference",
			mutate: func(c *Config) {
				c.Sessions[0].Redis = "other"
				c.Caches[0].Redis = ""
			},
			want: []string{
				`sessions[0].redis: unknown redis connection "other"`,
				`caches[0].redis: required: the name of a redis connection`,
			},
		},
		{
			name: "redis connection problems",
			mutate: func(c *Config) {
				c.Redis = append(c.Redis,
					RedisConnection{Name: "main", Mode: "Replicated", Addrs: []string{"nohost", "h:99999"}},
					RedisConnection{Name: "s", Mode: RedisSentinel, Addrs: []string{"h:1"}, PasswordEnv: "1BAD", MaxRetries: -2},
					RedisConnection{Name: "c", Mode: RedisCluster, Addrs: []string{"h:1"}, DB: 3, MasterName: "m", PoolSize: -1, TLS: &RedisTLS{CAFile: "x", InsecureSkipVerify: true}},
				)
			},
			want: []string{
				`redis[1].mode: unknown mode "Replicated": must be Standalone, Cluster or Sentinel`,
				`redis[1].addrs[0]: "nohost" is not host:port`,
				`redis[1].addrs[1]: invalid port in "h:99999"`,
				`redis[1].name: duplicate connection name "main"`,
				`redis[2].masterName: required in Sentinel mode`,
				`redis[2].passwordEnv: "1BAD" is not an environment variable name`,
				`redis[2].maxRetries: must be -1 (no retries) or more`,
				`redis[3].masterName: only valid in Sentinel mode`,
				`redis[3].db: Redis Cluster only has database 0`,
				`redis[3].poolSize: must not be negative`,
				`redis[3].tls: caFile and insecureSkipVerify are mutually exclusive`,
			},
		},
		{
			name: "standalone takes one address, timeouts positive",
			mutate: func(c *Config) {
				c.Redis[0].Addrs = append(c.Redis[0].Addrs, "h:2")
				c.Redis[0].ReadTimeout = Duration(-time.Second)
			},
			want: []string{
				`redis[0].addrs: Standalone takes exactly one address`,
				`redis[0].readTimeout: must be positive`,
			},
		},
		{
			name: "duplicate policy names",
			mutate: func(c *Config) {
				c.Sessions = append(c.Sessions, c.Sessions[0])
				c.RateLimits = append(c.RateLimits, c.RateLimits[0])
				c.Caches = append(c.Caches, c.Caches[0])
				c.Caches[1].Namespace = "other" // same name, other namespace: allowed
			},
			want: []string{
				`sessions[1].name: duplicate policy "ns/s"`,
				`rateLimits[1].name: duplicate policy "ns/rl"`,
			},
		},
		{
			name: "policy names",
			mutate: func(c *Config) {
				c.Sessions[0].Name = ""
				c.Sessions[0].Namespace = "bad name"
			},
			want: []string{
				`sessions[0].namespace: "bad name" must be alphanumeric with '.', '_' or '-' inside, at most 253 characters`,
				`sessions[0].name: required`,
			},
		},
		{
			name: "selector operators",
			mutate: func(c *Config) {
				c.RateLimits[0].Selector = Selector{
					MatchLabels: map[string]string{"bad key!": "x"},
					MatchExpressions: []SelectorRequirement{
						{Key: "app", Operator: "Matches", Values: []string{"x"}},
						{Key: "app", Operator: SelectorIn},
						{Key: "app", Operator: SelectorExists, Values: []string{"x"}},
						{Key: "", Operator: SelectorDoesNotExist},
						{Key: "gatehouse.dev/tier", Operator: SelectorNotIn, Values: []string{"a"}},
					},
				}
			},
			want: []string{
				`rateLimits[0].selector.matchLabels: invalid label key "bad key!"`,
				`rateLimits[0].selector.matchExpressions[0].operator: unknown operator "Matches": must be In, NotIn, Exists or DoesNotExist`,
				`rateLimits[0].selector.matchExpressions[1].values: required for operator In`,
				`rateLimits[0].selector.matchExpressions[2].values: must be empty for operator Exists`,
				`rateLimits[0].selector.matchExpressions[3].key: invalid label key ""`,
			},
		},
		{
			name: "session fields",
			mutate: func(c *Config) {
				s := &c.Sessions[0]
				s.TTL = Duration(-time.Second)
				s.RefreshBelow = Duration(time.Second)
				s.Sliding = false
				s.Token = TokenSource{Header: "Bad Header", Cookie: "a;b"}
				s.RequireFor = []string{"api"}
				s.PublicPaths = []string{"/ok", "nope"}
				s.ForwardClaims = []string{"email", "Email", "bad claim"}
			},
			want: []string{
				`sessions[0].ttl: must be positive`,
				`sessions[0].refreshBelow: only meaningful when sliding is true`,
				`sessions[0].refreshBelow: must be less than ttl`,
				`sessions[0].token.header: "Bad Header" is not a valid header name`,
				`sessions[0].token.cookie: "a;b" is not a valid cookie name`,
				`sessions[0].requireFor[0]: "api" must start with /`,
				`sessions[0].publicPaths[1]: "nope" must start with /`,
				`sessions[0].forwardClaims[1]: duplicate claim "Email"`,
				`sessions[0].forwardClaims[2]: "bad claim" is not a valid header name`,
			},
		},
		{
			name: "rate limit rules",
			mutate: func(c *Config) {
				rs := c.RateLimits[0].Rules
				rs[0].Window = 0
				rs[0].Limit = -1
				rs[0].Burst = 5
				rs[0].Match = Match{PathPrefix: "api", Methods: []string{"get"}, Header: &HeaderMatch{Name: ""}}
				rs[1].Name = "a"
				rs[1].Window = Duration(time.Microsecond)
				rs[1].Algorithm = "LeakyBucket"
				rs[1].Mode = "Maybe"
				rs[1].FailureMode = "Sometimes"
				rs[1].Key.Header = "x y"
			},
			want: []string{
				`rateLimits[0].rules[0].match.pathPrefix: "api" must start with /`,
				`rateLimits[0].rules[0].match.methods[0]: "get" must be an upper-case HTTP method`,
				`rateLimits[0].rules[0].match.header.name: "" is not a valid header name`,
				`rateLimits[0].rules[0].limit: must be positive`,
				`rateLimits[0].rules[0].window: must be positive`,
				`rateLimits[0].rules[0].burst: only valid with algorithm TokenBucket`,
				`rateLimits[0].rules[1].name: duplicate rule name "a"`,
				`rateLimits[0].rules[1].key.header: "x y" is not a valid header name`,
				`rateLimits[0].rules[1].window: must be at least 1ms`,
				`rateLimits[0].rules[1].algorithm: unknown algorithm "LeakyBucket": must be FixedWindow, SlidingWindow or TokenBucket`,
				`rateLimits[0].rules[1].mode: unknown mode "Maybe": must be Enforce or Shadow`,
				`rateLimits[0].rules[1].failureMode: unknown failure mode "Sometimes": must be Open or Closed`,
			},
		},
		{
			name:   "rate limit policy without rules",
			mutate: func(c *Config) { c.RateLimits[0].Rules = nil },
			want:   []string{`rateLimits[0].rules: at least one rule is required`},
		},
		{
			name: "rate limit quota and headers",
			mutate: func(c *Config) {
				c.RateLimits[0].Headers = "Fancy"
				c.RateLimits[0].Rules[0].Algorithm, c.RateLimits[0].Rules[0].Quota = SlidingWindow, QuotaLeased
				c.RateLimits[0].Rules[1].Quota = "Loose"
			},
			want: []string{
				`rateLimits[0].headers: unknown header form "Fancy": must be Draft, Legacy or Both`,
				`rateLimits[0].rules[0].quota: Leased applies to FixedWindow and TokenBucket only`,
				`rateLimits[0].rules[1].quota: unknown quota "Loose": must be Strict or Leased`,
			},
		},
		{
			name: "cache rules",
			mutate: func(c *Config) {
				p := &c.Caches[0]
				p.InProcess = &InProcessTier{}
				p.Rules = append(p.Rules, CacheRule{Name: "r", TTL: 0, Match: Match{Methods: []string{"POST"}}, VaryHeaders: []string{"a b"}, StaleIfError: new(Duration(-1)), Tags: []string{""},
					Mode: "Heuristic", SetCookie: "Keep", MaxVariants: MaxCacheVariants + 1, LockTimeout: Duration(-time.Second)})
				p.CanonicalHost = "Shop.Example:x"
				p.Invalidate = append(p.Invalidate, InvalidateRule{Name: "j", Match: Match{Methods: []string{"GET"}}, Paths: []string{"x"}}, InvalidateRule{Name: "k"})
			},
			want: []string{
				`caches[0].canonicalHost: "Shop.Example:x" is not a host[:port]`,
				`caches[0].inProcess.maxEntries: must be positive`,
				`caches[0].inProcess.maxBytes: must be positive`,
				`caches[0].rules[1].name: duplicate rule name "r"`,
				`caches[0].rules[1].match.methods[0]: method POST is not allowed here`,
				`caches[0].rules[1].ttl: must be positive`,
				`caches[0].rules[1].varyHeaders[0]: "a b" is not a valid header name`,
				`caches[0].rules[1].staleIfError: must not be negative`,
				`caches[0].rules[1].mode: must be Standard or Override, got "Heuristic"`,
				`caches[0].rules[1].setCookie: must be NotStored or Strip, got "Keep"`,
				`caches[0].rules[1].maxVariants: must be between 1 and 10000`,
				`caches[0].rules[1].lockTimeout: must be positive`,
				`caches[0].rules[1].tags[0]: must not be empty`,
				`caches[0].invalidate[1].match.methods[0]: method GET is not allowed here`,
				`caches[0].invalidate[1].paths[0]: "x" must start with /`,
				`caches[0].invalidate[2]: evicts nothing: set requestPath, paths, pathPrefixes or tags`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			c.Default()
			if diff := cmp.Diff(tt.want, problems(c.Validate())); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateWithoutDefaultsReportsMissingEnums(t *testing.T) {
	c := valid()
	c.Caches = nil
	c.Sessions = nil
	got := problems(c.Validate())
	want := []string{
		`proxy.writeTimeout: must be positive`,
		`proxy.bodyReadTimeout: must be positive`,
		`redis[0].dialTimeout: must be positive`,
		`redis[0].readTimeout: must be positive`,
		`redis[0].writeTimeout: must be positive`,
		`rateLimits[0].headers: unknown header form "": must be Draft, Legacy or Both`,
		`rateLimits[0].rules[0].match.pathPrefix: "" must start with /`,
		`rateLimits[0].rules[0].algorithm: unknown algorithm "": must be FixedWindow, SlidingWindow or TokenBucket`,
		`rateLimits[0].rules[0].mode: unknown mode "": must be Enforce or Shadow`,
		`rateLimits[0].rules[0].failureMode: unknown failure mode "": must be Open or Closed`,
		`rateLimits[0].rules[0].quota: unknown quota "": must be Strict or Leased`,
		`rateLimits[0].rules[1].match.pathPrefix: "" must start with /`,
		`rateLimits[0].rules[1].burst: must be positive`,
		`rateLimits[0].rules[1].mode: unknown mode "": must be Enforce or Shadow`,
		`rateLimits[0].rules[1].failureMode: unknown failure mode "": must be Open or Closed`,
		`rateLimits[0].rules[1].quota: unknown quota "": must be Strict or Leased`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Validate() without Default (-want +got):\n%s", diff)
	}
}

func TestDefault(t *testing.T) {
	c := valid()
	c.Sessions[0].TTL = 0
	c.Sessions = append(c.Sessions, SessionPolicy{
		PolicyMeta: PolicyMeta{Namespace: "ns", Name: "cookie", Redis: "main"},
		Token:      TokenSource{Cookie: "sid"},
	})
	c.Default()
	c2 := *c
	c2.Default() // idempotent
	if diff := cmp.Diff(c, &c2); diff != "" {
		t.Errorf("Default is not idempotent (-first +second):\n%s", diff)
	}
	want := valid()
	want.Proxy.WriteTimeout = Duration(30 * time.Second)
	want.Proxy.BodyReadTimeout = Duration(30 * time.Second)
	want.Redis[0].DialTimeout = Duration(time.Second)
	want.Redis[0].ReadTimeout = Duration(200 * time.Millisecond)
	want.Redis[0].WriteTimeout = Duration(200 * time.Millisecond)
	want.Redis[0].MaxRetries = 1
	want.Sessions[0].TTL = Duration(30 * time.Minute)
	want.Sessions[0].KeyPrefix = "auth:ctx:"
	want.Sessions[0].Token = TokenSource{Header: "Authorization", Scheme: "Bearer"}
	want.Sessions[0].RequireFor = []string{"/"}
	want.Sessions = append(want.Sessions, SessionPolicy{
		PolicyMeta: PolicyMeta{Namespace: "ns", Name: "cookie", Redis: "main"},
		Token:      TokenSource{Cookie: "sid"}, // a cookie-only source stays cookie-only
		TTL:        Duration(30 * time.Minute),
		KeyPrefix:  "auth:ctx:",
		RequireFor: []string{"/"},
	})
	want.RateLimits[0].Headers = HeadersDraft
	rs := want.RateLimits[0].Rules
	rs[0].Match.PathPrefix, rs[0].Algorithm, rs[0].Mode, rs[0].FailureMode, rs[0].Quota = "/", FixedWindow, Enforce, FailOpen, QuotaStrict
	rs[1].Match.PathPrefix, rs[1].Burst, rs[1].Mode, rs[1].FailureMode, rs[1].Quota = "/", 10, Enforce, FailOpen, QuotaStrict
	want.Caches[0].KeyPrefix = "cache:"
	want.Caches[0].Rules[0].Match = Match{PathPrefix: "/", Methods: []string{"GET", "HEAD"}}
	want.Caches[0].Rules[0].MaxBodyBytes = 1 << 20
	want.Caches[0].Rules[0].Mode = CacheStandard
	want.Caches[0].Rules[0].SetCookie = SetCookieNotStored
	want.Caches[0].Rules[0].MaxVariants = 256
	want.Caches[0].Rules[0].LockTimeout = Duration(5 * time.Second)
	// Standard mode: the stale caps default to the freshness cap.
	want.Caches[0].Rules[0].StaleWhileRevalidate = new(Duration(time.Minute))
	want.Caches[0].Rules[0].StaleIfError = new(Duration(time.Minute))
	want.Caches[0].Invalidate[0].Match = Match{PathPrefix: "/", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Default() (-want +got):\n%s", diff)
	}
}

func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8":       "10.0.0.0/8",
		"192.168.1.10":     "192.168.1.10/32",
		"::ffff:127.0.0.1": "127.0.0.1/32",
		"fd00::/8":         "fd00::/8",
	} {
		got, err := ParseTrustedProxy(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

func TestFullExampleIsValid(t *testing.T) {
	c, err := Load("testdata/full.json")
	if err != nil {
		t.Fatalf("Load(full.json): %v", err)
	}
	if len(c.Redis) != 3 || len(c.RateLimits[0].Rules) != 3 || c.Caches[0].Rules[1].MaxBodyBytes != 1<<20 {
		t.Errorf("full.json did not load as written: %+v", c)
	}
	// The documented example in docs/sidecar-config.md is this very file, so
	// the docs cannot drift into an invalid example.
	doc, err := os.ReadFile("../../docs/sidecar-config.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	example := extractJSONBlock(t, string(doc), "<!-- docs-test: config full ")
	c2, err := Parse([]byte(example))
	if err != nil {
		t.Fatalf("documented example does not parse: %v", err)
	}
	c2.Default()
	if err := c2.Validate(); err != nil {
		t.Fatalf("documented example is invalid: %v", err)
	}
	if diff := cmp.Diff(c, c2); diff != "" {
		t.Errorf("docs example differs from testdata/full.json (-file +docs):\n%s", diff)
	}
}
