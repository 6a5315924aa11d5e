package gate

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// valid returns a small document every part of which compiles.
func valid() *config.Config {
	return &config.Config{
		APIVersion: config.APIVersion,
		Kind:       config.Kind,
		Redis:      []config.RedisConnection{{Name: "main", Mode: config.RedisStandalone, Addrs: []string{"127.0.0.1:6379"}}},
		Sessions: []config.SessionPolicy{{
			PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "s", Redis: "main"},
			TTL:        config.Duration(time.Minute),
			Sliding:    true,
		}},
		RateLimits: []config.RateLimitPolicy{{
			PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "rl", Redis: "main"},
			Rules: []config.RateLimitRule{
				{Name: "a", Limit: 10, Window: config.Duration(time.Second)},
				{Name: "b", Limit: 10, Window: config.Duration(time.Second), Algorithm: config.TokenBucket},
			},
		}},
		Caches: []config.CachePolicy{{
			PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "c", Redis: "main"},
			Rules:      []config.CacheRule{{Name: "r", TTL: config.Duration(time.Minute)}},
			Invalidate: []config.InvalidateRule{{Name: "i", RequestPath: true}},
		}},
	}
}

// Every layer reports into one list, each problem at its document path: the
// structure (config.Validate), the proxy section, and each feature's section
// with its place in the document in front.
func TestCompileReportsEveryProblemWithItsDocumentPath(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string
	}{
		{name: "valid", mutate: func(*config.Config) {}},
		{
			name: "structure, proxy and sections together",
			mutate: func(c *config.Config) {
				c.Kind = ""
				c.Proxy.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33", "nope", "::1"}
				c.Proxy.WriteTimeout, c.Proxy.BodyReadTimeout = config.Duration(-1), config.Duration(-time.Second)
				c.Sessions[0].Redis = "other"
				c.Sessions[0].RefreshBelow = config.Duration(time.Hour)
				c.RateLimits[0].Rules[0].Window = config.Duration(1500 * time.Microsecond)
				c.RateLimits[0].Rules[1].Limit, c.RateLimits[0].Rules[1].Window = 5000, config.Duration(time.Millisecond)
				c.Caches[0].Rules[0].MaxBodyBytes = new(int64(65 << 20))
			},
			want: []string{
				`kind: must be "SidecarConfig", got ""`,
				`sessions[0].redis: unknown redis connection "other"`,
				`proxy.trustedProxies[1]: invalid CIDR "10.0.0.0/33"`,
				`proxy.trustedProxies[2]: invalid CIDR or address "nope"`,
				`proxy.writeTimeout: must be positive`,
				`proxy.bodyReadTimeout: must be positive`,
				`sessions[0].refreshBelow: must be less than ttl`,
				`rateLimits[0].rules[0].window: must be a positive whole number of milliseconds, got 1.5ms`,
				`rateLimits[0].rules[1].limit: 5000 per 1ms is more than one per microsecond, the finest rate a TokenBucket keeps: lower the limit or lengthen the window`,
				`caches[0].rules[0].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 68157440`,
			},
		},
		{
			// Before the one gate, config.Validate passed these and the
			// constructors refused them, so a document the operator had
			// validated was refused by every sidecar.
			name: "what only the constructors used to refuse",
			mutate: func(c *config.Config) {
				c.Sessions[0].TTL = config.Duration(500 * time.Microsecond)
				c.Sessions[0].ForwardClaims = []string{strings.Repeat("a", 64) + "x"}
			},
			want: []string{
				`sessions[0].ttl: must be at least 1ms, got 500µs`,
				`sessions[0].forwardClaims[0]: "` + strings.Repeat("a", 64) + `x" is not a valid header name of at most 64 characters`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			_, err := Compile(c)
			if diff := cmp.Diff(tt.want, config.Problems(err)); diff != "" {
				t.Errorf("Compile problems (-want +got):\n%s", diff)
			}
		})
	}
}

// The operator renders a document without defaults and keeps rendering
// from it: compiling must not change what it was given.
func TestCompileLeavesTheDocumentAlone(t *testing.T) {
	c := valid()
	before, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(c); err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(c)
	if diff := cmp.Diff(string(before), string(after)); diff != "" {
		t.Errorf("Compile changed its input (-before +after):\n%s", diff)
	}
}

func TestCompileProxy(t *testing.T) {
	got, err := CompileProxy(config.Proxy{TrustedProxies: []string{"10.1.2.3/8", "192.168.1.10", "::ffff:127.0.0.1", "fd00::/8"}})
	if err != nil {
		t.Fatal(err)
	}
	want := Proxy{
		TrustedProxies: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.10/32"),
			netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("fd00::/8"),
		},
		// The documented defaults.
		WriteTimeout: 30 * time.Second, BodyReadTimeout: 30 * time.Second,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("CompileProxy (-want +got):\n%s", diff)
	}
}

// The documented example (docs/sidecar-config.md, kept equal to
// testdata/full.json by sidecar/config's tests) loads in a sidecar.
func TestTheDocumentedExampleCompiles(t *testing.T) {
	c, err := config.Load("../config/testdata/full.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Compile(c)
	if err != nil {
		t.Fatalf("the documented example does not compile: %v", err)
	}
	if len(doc.RateLimits) != 1 || len(doc.Redis) != 3 || doc.Hash != c.Hash {
		t.Errorf("compiled %d rate-limit policies and %d connections, hash %q", len(doc.RateLimits), len(doc.Redis), doc.Hash)
	}
}

func TestRedisOptionsConvertEveryField(t *testing.T) {
	c := config.RedisConnection{
		Name: "r", Mode: config.RedisSentinel, Addrs: []string{"a:1", "b:2"}, MasterName: "m", Username: "u",
		PasswordEnv: "PW", DB: 2, PoolSize: 9, DialTimeout: config.Duration(time.Second),
		ReadTimeout: config.Duration(150 * time.Millisecond), WriteTimeout: config.Duration(250 * time.Millisecond), MaxRetries: 4,
		TLS: &config.RedisTLS{CAFile: "/ca.pem", ServerName: "redis", InsecureSkipVerify: true},
	}
	want := redisconn.Options{
		Name: "r", Mode: redisconn.Sentinel, Addrs: []string{"a:1", "b:2"}, MasterName: "m", Username: "u",
		PasswordEnv: "PW", DB: 2, PoolSize: 9, DialTimeout: time.Second,
		ReadTimeout: 150 * time.Millisecond, WriteTimeout: 250 * time.Millisecond, MaxRetries: 4,
		TLS: &redisconn.TLSOptions{CAFile: "/ca.pem", ServerName: "redis", InsecureSkipVerify: true},
	}
	if diff := cmp.Diff(want, redisOptions(c)); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	for from, to := range map[config.RedisMode]redisconn.Mode{
		config.RedisStandalone: redisconn.Standalone, config.RedisCluster: redisconn.Cluster, config.RedisSentinel: redisconn.Sentinel,
	} {
		if got := redisOptions(config.RedisConnection{Mode: from}).Mode; got != to {
			t.Errorf("mode %s converted to %s, want %s", from, got, to)
		}
	}
}
