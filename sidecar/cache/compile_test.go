package cache

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// compiled is Compile of p, which must be valid.
func compiled(t testing.TB, p config.CachePolicy) *Policy {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestCompileReportsEveryProblem(t *testing.T) {
	minute := config.Duration(time.Minute)
	tests := []struct {
		name string
		p    config.CachePolicy
		want []string
	}{
		{name: "valid", p: policy([]config.CacheRule{cacheRule("r", time.Minute)}, []config.InvalidateRule{{Name: "i", RequestPath: true}})},
		{name: "no rules", p: policy(nil, nil), want: []string{`rules: at least one rule is required`}},
		{
			name: "every field wrong",
			p: func() config.CachePolicy {
				p := policy([]config.CacheRule{
					cacheRule("r", time.Minute),
					{Name: "r", TTL: 0, Match: config.Match{Methods: []string{"POST"}}, VaryHeaders: []string{"a b"}, StaleIfError: new(config.Duration(-1)), Tags: []string{""},
						Mode: "Heuristic", SetCookie: "Keep", MaxVariants: MaxVariantsLimit + 1, LockTimeout: config.Duration(-time.Second)},
				}, []config.InvalidateRule{
					{Name: "i", RequestPath: true},
					{Name: "j", Match: config.Match{Methods: []string{"GET"}}, Paths: []string{"x"}, PathPrefixes: []string{"/a;b"}},
					{Name: "k"},
				})
				p.InProcess = &config.InProcessTier{}
				p.CanonicalHost = "Shop.Example"
				return p
			}(),
			want: []string{
				`canonicalHost: "Shop.Example" is not a lower-case host[:port]`,
				`inProcess.maxEntries: must be positive`,
				`inProcess.maxBytes: must be positive`,
				`rules[1].name: duplicate rule name "r"`,
				`rules[1].match.methods[0]: method POST is not cacheable (GET and HEAD only)`,
				`rules[1].ttl: must be positive`,
				`rules[1].varyHeaders[0]: "a b" is not a valid header name`,
				`rules[1].staleIfError: must not be negative`,
				`rules[1].mode: must be Standard or Override, got "Heuristic"`,
				`rules[1].setCookie: must be NotStored or Strip, got "Keep"`,
				`rules[1].maxVariants: must be between 1 and 10000, got 10001`,
				`rules[1].lockTimeout: must be positive`,
				`rules[1].tags[0]: must not be empty`,
				`invalidate[1].match.methods[0]: method GET is not invalidating (POST, PUT, PATCH and DELETE only)`,
				`invalidate[1].paths[0]: "x" must start with /`,
				`invalidate[1].pathPrefixes[0]: "/a;b" contains a backslash, ';' or a control character, which no accepted request path has`,
				`invalidate[2]: evicts nothing: set requestPath, paths, pathPrefixes or tags`,
			},
		},
		{
			// The bound the operator used to check alone, in render. An
			// explicit 0 is a value (the CRD admits it), not "default".
			name: "a body cap outside 1 to 64Mi",
			p:    policy([]config.CacheRule{{Name: "r", TTL: minute, MaxBodyBytes: new(int64(64<<20 + 1))}, {Name: "s", TTL: minute, MaxBodyBytes: new(int64(-1))}, {Name: "z", TTL: minute, MaxBodyBytes: new(int64(0))}}, nil),
			want: []string{
				`rules[0].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 67108865`,
				`rules[1].maxBodyBytes: must be between 1 and 67108864 (64Mi), got -1`,
				`rules[2].maxBodyBytes: must be between 1 and 67108864 (64Mi), got 0`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.p)
			if diff := cmp.Diff(tt.want, config.Problems(err)); diff != "" {
				t.Errorf("Compile problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileAppliesTheDocumentedDefaults(t *testing.T) {
	c := compiled(t, policy([]config.CacheRule{cacheRule("r", time.Minute)}, []config.InvalidateRule{{Name: "i", RequestPath: true}}))
	if c.rules[0].maxBody != config.DefaultMaxBodyBytes || c.ks.base != config.DefaultCachePrefix {
		t.Errorf("maxBody %d, key prefix %q: want the documented %d and %q", c.rules[0].maxBody, c.ks.base, config.DefaultMaxBodyBytes, config.DefaultCachePrefix)
	}
	r := c.rules[0]
	if r.mode != config.CacheStandard || r.setCookie != config.SetCookieNotStored || r.maxVariants != config.DefaultMaxVariants || r.lockTimeout != config.DefaultLockTimeout.D() {
		t.Errorf("mode %s, setCookie %s, maxVariants %d, lockTimeout %s: want the documented defaults", r.mode, r.setCookie, r.maxVariants, r.lockTimeout)
	}
	// Standard mode caps the origin's stale windows at the ttl when the
	// rule sets none; Override mode, where they are also the defaults,
	// has none.
	if r.swr != time.Minute || r.sie != time.Minute || c.maxLifetime != 2*time.Minute {
		t.Errorf("Standard: swr %s, sie %s, maxLifetime %s; want the ttl as both caps", r.swr, r.sie, c.maxLifetime)
	}
	over := cacheRule("o", time.Minute)
	over.Mode = config.CacheOverride
	if o := compiled(t, policy([]config.CacheRule{over}, nil)); o.rules[0].swr != 0 || o.rules[0].sie != 0 || o.maxLifetime != time.Minute {
		t.Errorf("Override: swr %s, sie %s, maxLifetime %s; want no stale windows", o.rules[0].swr, o.rules[0].sie, o.maxLifetime)
	}
	for method, want := range map[string]bool{"GET": true, "HEAD": true, "POST": false} {
		if got := c.rules[0].match.Match(httptest.NewRequest(method, "/x", nil)); got != want {
			t.Errorf("cache rule matches %s: %v, want %v", method, got, want)
		}
	}
	for method, want := range map[string]bool{"GET": false, "POST": true, "PUT": true, "PATCH": true, "DELETE": true} {
		if got := c.inv[0].match.Match(httptest.NewRequest(method, "/x", nil)); got != want {
			t.Errorf("invalidate rule matches %s: %v, want %v", method, got, want)
		}
	}
}
