package session

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// Policy is a config.SessionPolicy compiled: defaults applied, every field
// checked, paths turned into matchers and header names canonicalised. It is
// immutable and holds no connection; New gives it one. Compile is the only
// way to make one, so New never sees an invalid policy.
type Policy struct {
	namespace, name string
	// redis names the connection in the document's redis list.
	redis   string
	ttl     time.Duration
	sliding bool
	// maxLifetime caps sliding sessions created without their own ttl.
	maxLifetime time.Duration
	refresh     time.Duration
	// base is keyPrefix + namespace + ":" + name + ":"; see sessionKey and
	// indexKey for what follows.
	base       string
	header     string
	scheme     string // "" means the bare token
	cookie     string
	requireFor []*request.Matcher
	public     []*request.Matcher
	forward    []forwardedClaim
	// forwardToken passes the token on to the app; by default it is removed.
	forwardToken bool
	// channel carries the policy's revocations to every sidecar's
	// in-process tier (tier.go).
	channel string
	// slide spaces the extensions of a busy sliding session.
	slide time.Duration
}

type forwardedClaim struct {
	name   string
	header string
}

// maxClaimName bounds a claim's name, which becomes part of a header name.
const maxClaimName = 64

// Compile checks p and compiles it for New. It does no I/O, so the operator
// runs it (through sidecar/gate) on every section it renders, and a policy
// it accepts is one every sidecar accepts. The error is config.FieldErrors
// with paths relative to the section ("ttl", "requireFor[0]").
func Compile(p config.SessionPolicy) (*Policy, error) {
	p.Default()
	var errs config.FieldErrors
	c := &Policy{
		namespace:   p.Namespace,
		name:        p.Name,
		redis:       p.Redis,
		ttl:         p.TTL.D(),
		sliding:     p.Sliding,
		maxLifetime: p.MaxLifetime.D(),
		refresh:     p.RefreshBelow.D(),
		base:        p.KeyPrefix + p.Namespace + ":" + p.Name + ":",
		header:      http.CanonicalHeaderKey(p.Token.Header),
		scheme:      p.Token.Scheme,
		cookie:      p.Token.Cookie,

		forwardToken: p.ForwardToken,
	}
	c.channel = c.base + "revoked"
	c.slide = min(slideEvery, c.ttl/100)
	// Keys and expiries are kept in milliseconds.
	switch {
	case c.ttl < time.Millisecond:
		errs.Add("ttl", fmt.Sprintf("must be at least 1ms, got %s", c.ttl))
	case c.ttl > config.MaxSessionLifetime:
		errs.Add("ttl", fmt.Sprintf("must be at most %s, got %s", config.MaxSessionLifetime, c.ttl))
	}
	switch {
	case c.maxLifetime < 0:
		errs.Add("maxLifetime", "must not be negative")
	case c.maxLifetime > config.MaxSessionLifetime:
		errs.Add("maxLifetime", fmt.Sprintf("must be at most %s", config.MaxSessionLifetime))
	case c.maxLifetime < c.ttl:
		errs.Add("maxLifetime", "must not be shorter than ttl")
	}
	errs.NonNegative("refreshBelow", p.RefreshBelow)
	if c.refresh > 0 {
		if !c.sliding {
			errs.Add("refreshBelow", "only meaningful when sliding is true")
		}
		if c.refresh >= c.ttl {
			errs.Add("refreshBelow", "must be less than ttl")
		}
	}
	if p.Token.Header != "" {
		errs.Header("token.header", p.Token.Header)
	}
	if p.Token.Scheme != "" {
		if !config.IsToken(p.Token.Scheme) {
			errs.Add("token.scheme", fmt.Sprintf("%q is not a valid auth scheme", p.Token.Scheme))
		}
		if p.Token.Header == "" {
			errs.Add("token.scheme", "needs token.header")
		}
	}
	if p.Token.Cookie != "" && !config.IsToken(p.Token.Cookie) {
		errs.Add("token.cookie", fmt.Sprintf("%q is not a valid cookie name", p.Token.Cookie))
	}
	c.requireFor = compilePaths(&errs, "requireFor", p.RequireFor, p.CaseInsensitivePaths)
	c.public = compilePaths(&errs, "publicPaths", p.PublicPaths, p.CaseInsensitivePaths)
	seen := map[string]bool{}
	for i, claim := range p.ForwardClaims {
		path := fmt.Sprintf("forwardClaims[%d]", i)
		if !validHeaderName(claim) {
			errs.Add(path, fmt.Sprintf("%q is not a valid header name of at most %d characters", claim, maxClaimName))
			continue
		}
		errs.Unique(path, strings.ToLower(claim), "claim (ignoring case)", seen)
		c.forward = append(c.forward, forwardedClaim{name: claim, header: http.CanonicalHeaderKey(claimHeaderPrefix + claim)})
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// compilePaths compiles path prefixes (requireFor, publicPaths) into the
// matchers every feature uses, any method.
func compilePaths(errs *config.FieldErrors, field string, prefixes []string, caseInsensitive bool) []*request.Matcher {
	ms := make([]*request.Matcher, 0, len(prefixes))
	for i, p := range prefixes {
		m, err := request.CompilePrefix(p, caseInsensitive)
		if err != nil {
			errs.Add(fmt.Sprintf("%s[%d]", field, i), err.Error())
			continue
		}
		ms = append(ms, m)
	}
	return ms
}

// validHeaderName reports whether s can be a claim's name: an RFC 9110
// token, which makes it usable in a header field name, and short.
func validHeaderName(s string) bool {
	return len(s) <= maxClaimName && config.IsToken(s)
}
