package config

import (
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			c.Default()
			if diff := cmp.Diff(tt.want, Problems(c.Validate())); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}

// Validate checks the document's structure only: what a section says is
// its feature's business (sidecar/gate runs both), so a section no feature
// would accept still passes here.
func TestValidateLeavesSectionsToTheirFeatures(t *testing.T) {
	c := valid()
	c.Default()
	c.RateLimits[0].Rules[0].Window = Duration(1500 * time.Microsecond)
	c.Caches[0].Rules = nil
	c.Sessions[0].TTL = Duration(-1)
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v, want the sections left to their features", err)
	}
}

func TestValidateWithoutDefaultsReportsMissingTimeouts(t *testing.T) {
	c := valid()
	got := Problems(c.Validate())
	want := []string{
		`redis[0].dialTimeout: must be positive`,
		`redis[0].readTimeout: must be positive`,
		`redis[0].writeTimeout: must be positive`,
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
	want.Sessions[0].MaxLifetime = Duration(168 * time.Hour)
	want.Sessions[0].KeyPrefix = "auth:ctx:"
	want.Sessions[0].Token = TokenSource{Header: "Authorization", Scheme: "Bearer"}
	want.Sessions[0].RequireFor = []string{"/"}
	want.Sessions = append(want.Sessions, SessionPolicy{
		PolicyMeta:  PolicyMeta{Namespace: "ns", Name: "cookie", Redis: "main"},
		Token:       TokenSource{Cookie: "sid"}, // a cookie-only source stays cookie-only
		TTL:         Duration(30 * time.Minute),
		MaxLifetime: Duration(168 * time.Hour),
		KeyPrefix:   "auth:ctx:",
		RequireFor:  []string{"/"},
	})
	want.RateLimits[0].Headers = HeadersDraft
	rs := want.RateLimits[0].Rules
	rs[0].Match.PathPrefix, rs[0].Algorithm, rs[0].Mode, rs[0].FailureMode, rs[0].Quota = "/", FixedWindow, Enforce, FailOpen, QuotaStrict
	rs[1].Match.PathPrefix, rs[1].Burst, rs[1].Mode, rs[1].FailureMode, rs[1].Quota = "/", 10, Enforce, FailOpen, QuotaStrict
	want.Caches[0].KeyPrefix = "cache:"
	want.Caches[0].Rules[0].Match = Match{PathPrefix: "/", Methods: []string{"GET", "HEAD"}}
	want.Caches[0].Rules[0].MaxBodyBytes = new(int64(1 << 20))
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

func TestFullExampleIsValid(t *testing.T) {
	c, err := Load("testdata/full.json")
	if err != nil {
		t.Fatalf("Load(full.json): %v", err)
	}
	if len(c.Redis) != 3 || len(c.RateLimits[0].Rules) != 3 || *c.Caches[0].Rules[1].MaxBodyBytes != 1<<20 {
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

func TestProxyOverlay(t *testing.T) {
	doc := Proxy{TrustedProxies: []string{"10.0.0.0/8"}, WriteTimeout: Duration(time.Minute), BodyReadTimeout: Duration(time.Hour)}
	tests := []struct {
		name string
		over Proxy
		want Proxy
	}{
		{"nothing set keeps the document", Proxy{}, doc},
		{"each set field replaces the document's", Proxy{TrustedProxies: []string{"fd00::/8"}, BodyReadTimeout: Duration(time.Second)},
			Proxy{TrustedProxies: []string{"fd00::/8"}, WriteTimeout: Duration(time.Minute), BodyReadTimeout: Duration(time.Second)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, doc.Overlay(tt.over)); diff != "" {
				t.Errorf("Overlay (-want +got):\n%s", diff)
			}
		})
	}
}

// Compile functions default a copy of a section; the document it was
// copied from must keep what it said.
func TestSectionDefaultsLeaveTheOriginalAlone(t *testing.T) {
	c := valid()
	rl, cp := c.RateLimits[0], c.Caches[0]
	rl.Default()
	cp.Default()
	if c.RateLimits[0].Rules[0].Algorithm != "" || c.Caches[0].Rules[0].MaxBodyBytes != nil || c.Caches[0].Invalidate[0].Match.Methods != nil {
		t.Errorf("defaulting a copy changed the document: %+v %+v", c.RateLimits[0].Rules[0], c.Caches[0])
	}
	if rl.Rules[0].Algorithm != FixedWindow || *cp.Rules[0].MaxBodyBytes != DefaultMaxBodyBytes {
		t.Errorf("the copy was not defaulted: %+v %+v", rl.Rules[0], cp.Rules[0])
	}
}
