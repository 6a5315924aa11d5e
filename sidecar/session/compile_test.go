package session

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

func mustCompile(t testing.TB, p config.SessionPolicy) *Policy {
	t.Helper()
	c, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestCompileReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		p    config.SessionPolicy
		want []string
	}{
		{name: "defaults alone are valid", p: config.SessionPolicy{}},
		{
			name: "every field wrong",
			p: config.SessionPolicy{
				TTL:           config.Duration(-time.Second),
				RefreshBelow:  config.Duration(time.Second),
				Token:         config.TokenSource{Header: "Bad Header", Cookie: "a;b"},
				RequireFor:    []string{"api"},
				PublicPaths:   []string{"/ok", "nope"},
				ForwardClaims: []string{"email", "Email", "bad claim"},
			},
			want: []string{
				`ttl: must be at least 1ms, got -1s`,
				`refreshBelow: only meaningful when sliding is true`,
				`refreshBelow: must be less than ttl`,
				`token.header: "Bad Header" is not a valid header name`,
				`token.cookie: "a;b" is not a valid cookie name`,
				`requireFor[0]: "api" must start with /`,
				`publicPaths[1]: "nope" must start with /`,
				`forwardClaims[1]: duplicate claim (ignoring case) "email"`,
				`forwardClaims[2]: "bad claim" is not a valid header name of at most 64 characters`,
			},
		},
		{
			// Sessions expire in milliseconds: a sub-millisecond ttl would be
			// truncated to none by PEXPIRE.
			name: "ttl below a millisecond",
			p:    config.SessionPolicy{TTL: config.Duration(500 * time.Microsecond)},
			want: []string{`ttl: must be at least 1ms, got 500µs`},
		},
		{
			name: "lifetimes beyond the bound",
			p:    config.SessionPolicy{TTL: config.Duration(400 * 24 * time.Hour), MaxLifetime: config.Duration(time.Hour)},
			want: []string{
				`ttl: must be at most 8784h0m0s, got 9600h0m0s`,
				`maxLifetime: must not be shorter than ttl`,
			},
		},
		{
			name: "scheme without a header",
			p:    config.SessionPolicy{Token: config.TokenSource{Cookie: "sid", Scheme: "Bearer token"}},
			want: []string{`token.scheme: "Bearer token" is not a valid auth scheme`, `token.scheme: needs token.header`},
		},
		{
			// Spellings the request normaliser refuses can never be matched.
			name: "rule paths no accepted request has",
			p: config.SessionPolicy{
				PublicPaths: []string{"/public/", `/public\admin`, "/a;jsessionid=1"},
				RequireFor:  []string{"/a?b", "/x%zz", "/nul\x00"},
			},
			want: []string{
				`requireFor[0]: "/a?b" contains a query or fragment; paths are matched without them`,
				`requireFor[1]: "/x%zz" has a malformed percent-escape`,
				`requireFor[2]: "/nul\x00" contains a backslash, ';' or a control character, which no accepted request path has`,
				`publicPaths[1]: "/public\\admin" contains a backslash, ';' or a control character, which no accepted request path has`,
				`publicPaths[2]: "/a;jsessionid=1" contains a backslash, ';' or a control character, which no accepted request path has`,
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

// The defaults a policy compiles with are config's (sidecar/config
// defaults.go), the ones docs/sidecar-config.md lists.
func TestCompileAppliesTheDocumentedDefaults(t *testing.T) {
	type view struct {
		TTL, MaxLifetime       time.Duration
		Base, Header, Scheme   string
		RequiredRoot, Publicly bool
	}
	tests := []struct {
		name string
		p    config.SessionPolicy
		want view
	}{
		{"nothing set", config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "p"}},
			view{30 * time.Minute, 168 * time.Hour, "auth:ctx:ns:p:", "Authorization", "Bearer", true, false}},
		{"a custom header carries the bare token", config.SessionPolicy{Token: config.TokenSource{Header: "x-session"}},
			view{30 * time.Minute, 168 * time.Hour, "auth:ctx:::", "X-Session", "", true, false}},
		{"a ttl above the default cap raises the cap", config.SessionPolicy{TTL: config.Duration(200 * time.Hour)},
			view{200 * time.Hour, 200 * time.Hour, "auth:ctx:::", "Authorization", "Bearer", true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCompile(t, tt.p)
			got := view{c.ttl, c.maxLifetime, c.base, c.header, c.scheme, len(c.requireFor) == 1 && c.requireFor[0].MatchPath("/"), len(c.public) > 0}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("compiled (-want +got):\n%s", diff)
			}
		})
	}
}
