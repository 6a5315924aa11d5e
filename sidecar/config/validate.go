package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with the document, at a path such as
// "rateLimits[0].rules[1].window".
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) String() string {
	if e.Path == "" {
		return e.Message
	}
	return e.Path + ": " + e.Message
}

// FieldErrors is every problem found in a document. Reporting all of them at
// once spares the operator (and a human editing a file) a fix-one-retry loop.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	return strings.Join(parts, "; ")
}

func (es *FieldErrors) add(path, msg string) {
	*es = append(*es, FieldError{Path: path, Message: msg})
}

// Validate checks the document (normally after Default) and returns every
// problem as FieldErrors, or nil.
func (c *Config) Validate() error {
	var v validator
	if c.APIVersion != APIVersion {
		v.add("apiVersion", fmt.Sprintf("must be %q, got %q", APIVersion, c.APIVersion))
	}
	if c.Kind != Kind {
		v.add("kind", fmt.Sprintf("must be %q, got %q", Kind, c.Kind))
	}
	for i, cidr := range c.Proxy.TrustedProxies {
		if _, err := ParseTrustedProxy(cidr); err != nil {
			v.add(fmt.Sprintf("proxy.trustedProxies[%d]", i), err.Error())
		}
	}
	v.positive("proxy.writeTimeout", c.Proxy.WriteTimeout)
	v.positive("proxy.bodyReadTimeout", c.Proxy.BodyReadTimeout)
	redis := map[string]bool{}
	for i, r := range c.Redis {
		p := fmt.Sprintf("redis[%d]", i)
		v.redis(p, r)
		if r.Name != "" {
			if redis[r.Name] {
				v.add(p+".name", fmt.Sprintf("duplicate connection name %q", r.Name))
			}
			redis[r.Name] = true
		}
	}
	v.redisNames = redis

	seen := map[string]bool{}
	for i, s := range c.Sessions {
		p := fmt.Sprintf("sessions[%d]", i)
		v.meta(p, s.PolicyMeta, seen)
		v.session(p, s)
	}
	seen = map[string]bool{}
	for i, r := range c.RateLimits {
		p := fmt.Sprintf("rateLimits[%d]", i)
		v.meta(p, r.PolicyMeta, seen)
		v.rateLimit(p, r)
	}
	seen = map[string]bool{}
	for i, cp := range c.Caches {
		p := fmt.Sprintf("caches[%d]", i)
		v.meta(p, cp.PolicyMeta, seen)
		v.cache(p, cp)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// ParseTrustedProxy parses one proxy.trustedProxies entry: a CIDR, or a
// single address meaning just that host.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR or address %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

type validator struct {
	errs       FieldErrors
	redisNames map[string]bool
}

func (v *validator) add(path, msg string) { v.errs.add(path, msg) }

var (
	// nameRE bounds policy and rule names: they become parts of Redis keys
	// and metric labels. It accepts Kubernetes object names and more.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)
	// tokenRE is an RFC 9110 token: header names and methods.
	tokenRE  = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	methodRE = regexp.MustCompile(`^[A-Z]+$`)
	// labelKeyRE accepts Kubernetes label keys: an optional DNS prefix and a name.
	labelKeyRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

func (v *validator) name(path, name string) {
	switch {
	case name == "":
		v.add(path, "required")
	case !nameRE.MatchString(name):
		v.add(path, fmt.Sprintf("%q must be alphanumeric with '.', '_' or '-' inside, at most 253 characters", name))
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be positive")
	}
}

func (v *validator) nonNegative(path string, d Duration) {
	if d < 0 {
		v.add(path, "must not be negative")
	}
}

func (v *validator) redis(p string, r RedisConnection) {
	v.name(p+".name", r.Name)
	switch r.Mode {
	case RedisStandalone, RedisCluster, RedisSentinel:
	case "":
		v.add(p+".mode", "required: Standalone, Cluster or Sentinel")
	default:
		v.add(p+".mode", fmt.Sprintf("unknown mode %q: must be Standalone, Cluster or Sentinel", r.Mode))
	}
	if len(r.Addrs) == 0 {
		v.add(p+".addrs", "at least one host:port is required")
	}
	if r.Mode == RedisStandalone && len(r.Addrs) > 1 {
		v.add(p+".addrs", "Standalone takes exactly one address")
	}
	for i, a := range r.Addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			v.add(fmt.Sprintf("%s.addrs[%d]", p, i), fmt.Sprintf("%q is not host:port", a))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			v.add(fmt.Sprintf("%s.addrs[%d]", p, i), fmt.Sprintf("invalid port in %q", a))
		}
	}
	if r.Mode == RedisSentinel && r.MasterName == "" {
		v.add(p+".masterName", "required in Sentinel mode")
	}
	if r.Mode != RedisSentinel && r.MasterName != "" {
		v.add(p+".masterName", "only valid in Sentinel mode")
	}
	if r.PasswordEnv != "" && !envRE.MatchString(r.PasswordEnv) {
		v.add(p+".passwordEnv", fmt.Sprintf("%q is not an environment variable name", r.PasswordEnv))
	}
	if r.DB < 0 {
		v.add(p+".db", "must not be negative")
	}
	if r.Mode == RedisCluster && r.DB != 0 {
		v.add(p+".db", "Redis Cluster only has database 0")
	}
	if r.PoolSize < 0 {
		v.add(p+".poolSize", "must not be negative")
	}
	v.positive(p+".dialTimeout", r.DialTimeout)
	v.positive(p+".readTimeout", r.ReadTimeout)
	v.positive(p+".writeTimeout", r.WriteTimeout)
	if r.MaxRetries < -1 {
		v.add(p+".maxRetries", "must be -1 (no retries) or more")
	}
	if r.TLS != nil && r.TLS.InsecureSkipVerify && r.TLS.CAFile != "" {
		v.add(p+".tls", "caFile and insecureSkipVerify are mutually exclusive")
	}
}

// meta checks what every policy shares; seen holds the namespace/name
// pairs of the list so far, which must be unique.
func (v *validator) meta(p string, m PolicyMeta, seen map[string]bool) {
	v.name(p+".namespace", m.Namespace)
	v.name(p+".name", m.Name)
	if m.Namespace != "" && m.Name != "" {
		id := m.Namespace + "/" + m.Name
		if seen[id] {
			v.add(p+".name", fmt.Sprintf("duplicate policy %q", id))
		}
		seen[id] = true
	}
	switch {
	case m.Redis == "":
		v.add(p+".redis", "required: the name of a redis connection")
	case !v.redisNames[m.Redis]:
		v.add(p+".redis", fmt.Sprintf("unknown redis connection %q", m.Redis))
	}
	v.selector(p+".selector", m.Selector)
}

func (v *validator) selector(p string, s Selector) {
	for k := range s.MatchLabels {
		if !labelKeyRE.MatchString(k) {
			v.add(p+".matchLabels", fmt.Sprintf("invalid label key %q", k))
		}
	}
	for i, r := range s.MatchExpressions {
		rp := fmt.Sprintf("%s.matchExpressions[%d]", p, i)
		if !labelKeyRE.MatchString(r.Key) {
			v.add(rp+".key", fmt.Sprintf("invalid label key %q", r.Key))
		}
		switch r.Operator {
		case SelectorIn, SelectorNotIn:
			if len(r.Values) == 0 {
				v.add(rp+".values", fmt.Sprintf("required for operator %s", r.Operator))
			}
		case SelectorExists, SelectorDoesNotExist:
			if len(r.Values) > 0 {
				v.add(rp+".values", fmt.Sprintf("must be empty for operator %s", r.Operator))
			}
		default:
			v.add(rp+".operator", fmt.Sprintf("unknown operator %q: must be In, NotIn, Exists or DoesNotExist", r.Operator))
		}
	}
}

func (v *validator) pathPrefixes(p string, paths []string) {
	for i, s := range paths {
		v.path(fmt.Sprintf("%s[%d]", p, i), s)
	}
}

// path checks a path or path prefix of a rule. Spellings the sidecar refuses
// in requests (sidecar/request) are refused here too; the rest is
// canonicalised when the rule is compiled.
func (v *validator) path(p, s string) {
	switch {
	case !strings.HasPrefix(s, "/"):
		v.add(p, fmt.Sprintf("%q must start with /", s))
	case strings.ContainsAny(s, "?#"):
		v.add(p, fmt.Sprintf("%q contains a query or fragment; paths are matched without them", s))
	case strings.ContainsAny(s, `\;`) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		v.add(p, fmt.Sprintf("%q contains a backslash, ';' or a control character, which no accepted request path has", s))
	default:
		if _, err := url.PathUnescape(s); err != nil {
			v.add(p, fmt.Sprintf("%q has a malformed percent-escape", s))
		}
	}
}

func (v *validator) header(p, h string) {
	if !tokenRE.MatchString(h) {
		v.add(p, fmt.Sprintf("%q is not a valid header name", h))
	}
}

// maxSessionLifetime bounds how long any session may live.
const maxSessionLifetime = 366 * 24 * time.Hour

func (v *validator) session(p string, s SessionPolicy) {
	v.positive(p+".ttl", s.TTL)
	v.nonNegative(p+".refreshBelow", s.RefreshBelow)
	v.nonNegative(p+".maxLifetime", s.MaxLifetime)
	if s.MaxLifetime.D() > maxSessionLifetime {
		v.add(p+".maxLifetime", fmt.Sprintf("must be at most %s", maxSessionLifetime))
	}
	if s.MaxLifetime > 0 && s.MaxLifetime < s.TTL {
		v.add(p+".maxLifetime", "must not be shorter than ttl")
	}
	if s.RefreshBelow > 0 {
		if !s.Sliding {
			v.add(p+".refreshBelow", "only meaningful when sliding is true")
		}
		if s.RefreshBelow >= s.TTL {
			v.add(p+".refreshBelow", "must be less than ttl")
		}
	}
	if s.Token.Header == "" && s.Token.Cookie == "" {
		v.add(p+".token", "header or cookie is required")
	}
	if s.Token.Header != "" {
		v.header(p+".token.header", s.Token.Header)
	}
	if s.Token.Scheme != "" && !tokenRE.MatchString(s.Token.Scheme) {
		v.add(p+".token.scheme", fmt.Sprintf("%q is not a valid auth scheme", s.Token.Scheme))
	}
	if s.Token.Scheme != "" && s.Token.Header == "" {
		v.add(p+".token.scheme", "needs token.header")
	}
	if s.Token.Cookie != "" && !tokenRE.MatchString(s.Token.Cookie) {
		v.add(p+".token.cookie", fmt.Sprintf("%q is not a valid cookie name", s.Token.Cookie))
	}
	if s.KeyPrefix == "" {
		v.add(p+".keyPrefix", "must not be empty")
	}
	v.pathPrefixes(p+".requireFor", s.RequireFor)
	v.pathPrefixes(p+".publicPaths", s.PublicPaths)
	seen := map[string]bool{}
	for i, c := range s.ForwardClaims {
		cp := fmt.Sprintf("%s.forwardClaims[%d]", p, i)
		v.header(cp, c)
		if seen[strings.ToLower(c)] {
			v.add(cp, fmt.Sprintf("duplicate claim %q", c))
		}
		seen[strings.ToLower(c)] = true
	}
}

func (v *validator) match(p string, m Match, allowed map[string]bool) {
	v.path(p+".pathPrefix", m.PathPrefix)
	for i, meth := range m.Methods {
		mp := fmt.Sprintf("%s.methods[%d]", p, i)
		switch {
		case !methodRE.MatchString(meth):
			v.add(mp, fmt.Sprintf("%q must be an upper-case HTTP method", meth))
		case allowed != nil && !allowed[meth]:
			v.add(mp, fmt.Sprintf("method %s is not allowed here", meth))
		}
	}
	if m.Header != nil {
		v.header(p+".header.name", m.Header.Name)
	}
}

func (v *validator) rateLimit(p string, rl RateLimitPolicy) {
	if len(rl.Rules) == 0 {
		v.add(p+".rules", "at least one rule is required")
	}
	switch rl.Headers {
	case HeadersDraft, HeadersLegacy, HeadersBoth:
	default:
		v.add(p+".headers", fmt.Sprintf("unknown header form %q: must be Draft, Legacy or Both", rl.Headers))
	}
	seen := map[string]bool{}
	for i, r := range rl.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, i)
		v.name(rp+".name", r.Name)
		if r.Name != "" && seen[r.Name] {
			v.add(rp+".name", fmt.Sprintf("duplicate rule name %q", r.Name))
		}
		seen[r.Name] = true
		v.match(rp+".match", r.Match, nil)
		if r.Key.Header != "" {
			v.header(rp+".key.header", r.Key.Header)
		}
		if r.Limit <= 0 {
			v.add(rp+".limit", "must be positive")
		}
		v.positive(rp+".window", r.Window)
		if r.Window > 0 && r.Window.D() < time.Millisecond {
			// Counters work in milliseconds.
			v.add(rp+".window", "must be at least 1ms")
		}
		switch r.Algorithm {
		case FixedWindow, SlidingWindow:
			if r.Burst != 0 {
				v.add(rp+".burst", "only valid with algorithm TokenBucket")
			}
		case TokenBucket:
			if r.Burst <= 0 {
				v.add(rp+".burst", "must be positive")
			}
		default:
			v.add(rp+".algorithm", fmt.Sprintf("unknown algorithm %q: must be FixedWindow, SlidingWindow or TokenBucket", r.Algorithm))
		}
		switch r.Mode {
		case Enforce, Shadow:
		default:
			v.add(rp+".mode", fmt.Sprintf("unknown mode %q: must be Enforce or Shadow", r.Mode))
		}
		switch r.FailureMode {
		case FailOpen, FailClosed:
		default:
			v.add(rp+".failureMode", fmt.Sprintf("unknown failure mode %q: must be Open or Closed", r.FailureMode))
		}
		switch r.Quota {
		case QuotaStrict:
		case QuotaLeased:
			if r.Algorithm == SlidingWindow {
				v.add(rp+".quota", "Leased applies to FixedWindow and TokenBucket only")
			}
		default:
			v.add(rp+".quota", fmt.Sprintf("unknown quota %q: must be Strict or Leased", r.Quota))
		}
	}
}

var (
	safeMethods   = map[string]bool{"GET": true, "HEAD": true}
	unsafeMethods = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true}
)

func (v *validator) cache(p string, c CachePolicy) {
	if c.KeyPrefix == "" {
		v.add(p+".keyPrefix", "must not be empty")
	}
	if c.CanonicalHost != "" && !validHost(c.CanonicalHost) {
		v.add(p+".canonicalHost", fmt.Sprintf("%q is not a host[:port]", c.CanonicalHost))
	}
	if c.InProcess != nil {
		if c.InProcess.MaxEntries <= 0 {
			v.add(p+".inProcess.maxEntries", "must be positive")
		}
		if c.InProcess.MaxBytes <= 0 {
			v.add(p+".inProcess.maxBytes", "must be positive")
		}
	}
	if len(c.Rules) == 0 {
		v.add(p+".rules", "at least one rule is required")
	}
	seen := map[string]bool{}
	for i, r := range c.Rules {
		rp := fmt.Sprintf("%s.rules[%d]", p, i)
		v.name(rp+".name", r.Name)
		if r.Name != "" && seen[r.Name] {
			v.add(rp+".name", fmt.Sprintf("duplicate rule name %q", r.Name))
		}
		seen[r.Name] = true
		v.match(rp+".match", r.Match, safeMethods)
		v.positive(rp+".ttl", r.TTL)
		for j, h := range r.VaryHeaders {
			v.header(fmt.Sprintf("%s.varyHeaders[%d]", rp, j), h)
		}
		if r.MaxBodyBytes <= 0 {
			v.add(rp+".maxBodyBytes", "must be positive")
		}
		if r.StaleWhileRevalidate != nil {
			v.nonNegative(rp+".staleWhileRevalidate", *r.StaleWhileRevalidate)
		}
		if r.StaleIfError != nil {
			v.nonNegative(rp+".staleIfError", *r.StaleIfError)
		}
		switch r.Mode {
		case CacheStandard, CacheOverride:
		default:
			v.add(rp+".mode", fmt.Sprintf("must be %s or %s, got %q", CacheStandard, CacheOverride, r.Mode))
		}
		if r.SetCookie != SetCookieNotStored && r.SetCookie != SetCookieStrip {
			v.add(rp+".setCookie", fmt.Sprintf("must be %s or %s, got %q", SetCookieNotStored, SetCookieStrip, r.SetCookie))
		}
		if r.MaxVariants < 1 || r.MaxVariants > MaxCacheVariants {
			v.add(rp+".maxVariants", fmt.Sprintf("must be between 1 and %d", MaxCacheVariants))
		}
		v.positive(rp+".lockTimeout", r.LockTimeout)
		for j, t := range r.Tags {
			if t == "" {
				v.add(fmt.Sprintf("%s.tags[%d]", rp, j), "must not be empty")
			}
		}
	}
	seen = map[string]bool{}
	for i, r := range c.Invalidate {
		rp := fmt.Sprintf("%s.invalidate[%d]", p, i)
		v.name(rp+".name", r.Name)
		if r.Name != "" && seen[r.Name] {
			v.add(rp+".name", fmt.Sprintf("duplicate rule name %q", r.Name))
		}
		seen[r.Name] = true
		v.match(rp+".match", r.Match, unsafeMethods)
		if !r.RequestPath && len(r.Paths) == 0 && len(r.PathPrefixes) == 0 && len(r.Tags) == 0 {
			v.add(rp, "evicts nothing: set requestPath, paths, pathPrefixes or tags")
		}
		v.pathPrefixes(rp+".paths", r.Paths)
		v.pathPrefixes(rp+".pathPrefixes", r.PathPrefixes)
	}
}

// MaxCacheVariants bounds a rule's maxVariants: the store script prunes a
// path's variant index in time that grows with it.
const MaxCacheVariants = 10000

// hostPattern is a DNS name or IP literal with an optional port, lower case
// as cache keys compare it.
var hostPattern = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`)

func validHost(h string) bool { return len(h) <= 253 && hostPattern.MatchString(h) }
