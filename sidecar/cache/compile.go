package cache

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	reqmatch "github.com/gatehouse-dev/gatehouse/sidecar/request" // this package has a request type of its own
)

// Bounds the sidecar enforces on a cache rule (docs/sidecar-config.md).
const (
	// MaxBodyBytesLimit bounds a rule's maxBodyBytes: larger bodies are
	// better served by the app than copied through Redis on every hit.
	MaxBodyBytesLimit = 64 << 20
	// MaxVariantsLimit bounds a rule's maxVariants: the store script prunes
	// a path's variant index in time that grows with it.
	MaxVariantsLimit = 10000
)

type rule struct {
	name      string
	match     *reqmatch.Matcher
	mode      config.CacheMode
	honor     bool
	ttl       time.Duration
	swr, sie  time.Duration
	vary      []string
	bySubject bool
	maxBody   int64
	setCookie config.SetCookiePolicy
	// maxVariants caps the variants kept per path.
	maxVariants int
	// lockTimeout bounds a collapsed request's wait for its leader.
	lockTimeout time.Duration
	tags        []string
}

type invRule struct {
	name        string
	match       *reqmatch.Matcher
	requestPath bool
	grpc        bool // fires on gRPC calls too
	t           targets
}

// Policy is a config.CachePolicy compiled: defaults applied, every rule
// checked and its matchers compiled. It is immutable and holds no
// connection or state; New gives it both. Compile is the only way to make
// one, so New never sees an invalid policy.
type Policy struct {
	namespace, name string
	// redis names the connection in the document's redis list.
	redis         string
	ks            keyspace
	canonicalHost string
	rules         []rule
	inv           []invRule
	// inProcess is nil without an in-process tier.
	inProcess *config.InProcessTier
	// maxLifetime is the longest an entry of the policy lives: the largest
	// ttl plus its larger stale window.
	maxLifetime time.Duration
}

var (
	cacheableMethods   = map[string]bool{http.MethodGet: true, http.MethodHead: true}
	invalidatedMethods = map[string]bool{http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}
	// hostPattern is a DNS name or IP literal with an optional port, lower
	// case as cache keys compare it (the CRD's canonicalHost pattern).
	hostPattern = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`)
)

// Compile checks p and compiles it for New. It does no I/O, so the operator
// runs it (through sidecar/gate) on every section it renders, and a policy
// it accepts is one every sidecar accepts. Omitted fields take the
// defaults of config (CachePolicy.Default). The error is config.FieldErrors
// with paths relative to the section ("rules[0].ttl").
func Compile(p config.CachePolicy) (*Policy, error) {
	p.Default()
	var errs config.FieldErrors
	c := &Policy{
		namespace: p.Namespace, name: p.Name, redis: p.Redis,
		ks:            newKeyspace(p.KeyPrefix, p.Namespace, p.Name),
		canonicalHost: p.CanonicalHost,
	}
	if h := p.CanonicalHost; h != "" && (len(h) > 253 || !hostPattern.MatchString(h)) {
		errs.Add("canonicalHost", fmt.Sprintf("%q is not a lower-case host[:port]", h))
	}
	if p.InProcess != nil {
		if p.InProcess.MaxEntries <= 0 {
			errs.Add("inProcess.maxEntries", "must be positive")
		}
		if p.InProcess.MaxBytes <= 0 {
			errs.Add("inProcess.maxBytes", "must be positive")
		}
		tier := *p.InProcess
		c.inProcess = &tier
	}
	if len(p.Rules) == 0 {
		errs.Add("rules", "at least one rule is required")
	}
	seen := map[string]bool{}
	for i, r := range p.Rules {
		path := fmt.Sprintf("rules[%d]", i)
		errs.Name(path+".name", r.Name)
		errs.Unique(path+".name", r.Name, "rule name", seen)
		rl := compileRule(&errs, path, r)
		c.rules = append(c.rules, rl)
		c.maxLifetime = max(c.maxLifetime, rl.ttl+max(rl.swr, rl.sie))
	}
	seen = map[string]bool{}
	for i, r := range p.Invalidate {
		path := fmt.Sprintf("invalidate[%d]", i)
		errs.Name(path+".name", r.Name)
		errs.Unique(path+".name", r.Name, "rule name", seen)
		c.inv = append(c.inv, compileInvalidate(&errs, path, r))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// compileRule checks the defaulted cache rule r at path into errs and
// compiles it.
func compileRule(errs *config.FieldErrors, path string, r config.CacheRule) rule {
	rl := rule{
		name:  r.Name,
		match: compileMatch(errs, path+".match", r.Match, cacheableMethods, "cacheable (GET and HEAD only)"),
		mode:  r.Mode, honor: r.HonorCacheControl, ttl: r.TTL.D(),
		vary: headerNames(r.VaryHeaders), bySubject: r.VaryBySubject,
		setCookie: r.SetCookie, maxVariants: r.MaxVariants,
		lockTimeout: r.LockTimeout.D(), tags: r.Tags,
	}
	errs.Positive(path+".ttl", r.TTL)
	for j, h := range r.VaryHeaders {
		errs.Header(fmt.Sprintf("%s.varyHeaders[%d]", path, j), h)
	}
	// Default gives the body cap a value; a rule that did not pass through
	// it has none.
	if r.MaxBodyBytes != nil {
		rl.maxBody = *r.MaxBodyBytes
		if rl.maxBody < 1 || rl.maxBody > MaxBodyBytesLimit {
			errs.Add(path+".maxBodyBytes", fmt.Sprintf("must be between 1 and %d (64Mi), got %d", MaxBodyBytesLimit, rl.maxBody))
		}
	}
	// Default gives the stale caps a value; a rule that did not pass
	// through it has none.
	if r.StaleWhileRevalidate != nil {
		rl.swr = r.StaleWhileRevalidate.D()
		errs.NonNegative(path+".staleWhileRevalidate", *r.StaleWhileRevalidate)
	}
	if r.StaleIfError != nil {
		rl.sie = r.StaleIfError.D()
		errs.NonNegative(path+".staleIfError", *r.StaleIfError)
	}
	switch r.Mode {
	case config.CacheStandard, config.CacheOverride:
	default:
		errs.Add(path+".mode", fmt.Sprintf("must be %s or %s, got %q", config.CacheStandard, config.CacheOverride, r.Mode))
	}
	switch r.SetCookie {
	case config.SetCookieNotStored, config.SetCookieStrip:
	default:
		errs.Add(path+".setCookie", fmt.Sprintf("must be %s or %s, got %q", config.SetCookieNotStored, config.SetCookieStrip, r.SetCookie))
	}
	if r.MaxVariants < 1 || r.MaxVariants > MaxVariantsLimit {
		errs.Add(path+".maxVariants", fmt.Sprintf("must be between 1 and %d, got %d", MaxVariantsLimit, r.MaxVariants))
	}
	errs.Positive(path+".lockTimeout", r.LockTimeout)
	for j, t := range r.Tags {
		if t == "" {
			errs.Add(fmt.Sprintf("%s.tags[%d]", path, j), "must not be empty")
		}
	}
	return rl
}

// compileInvalidate checks the defaulted invalidate rule r at path into
// errs and compiles it.
func compileInvalidate(errs *config.FieldErrors, path string, r config.InvalidateRule) invRule {
	ir := invRule{
		name:        r.Name,
		match:       compileMatch(errs, path+".match", r.Match, invalidatedMethods, "invalidating (POST, PUT, PATCH and DELETE only)"),
		requestPath: r.RequestPath,
		grpc:        r.GRPC,
		t:           targets{Paths: r.Paths, PathPrefixes: r.PathPrefixes, Tags: r.Tags},
	}
	if !ir.requestPath && ir.t.empty() {
		errs.Add(path, "evicts nothing: set requestPath, paths, pathPrefixes or tags")
	}
	checkPaths(errs, path+".paths", r.Paths)
	checkPaths(errs, path+".pathPrefixes", r.PathPrefixes)
	return ir
}

// compileMatch compiles a rule's match, whose methods (defaulted by
// config) must be among allowed.
func compileMatch(errs *config.FieldErrors, path string, m config.Match, allowed map[string]bool, what string) *reqmatch.Matcher {
	mt, err := reqmatch.Compile(m, nil)
	errs.Merge(path, err)
	for i, meth := range m.Methods {
		// A method that is not upper case is refused by Compile already.
		if !allowed[meth] && meth == strings.ToUpper(meth) {
			errs.Add(fmt.Sprintf("%s.methods[%d]", path, i), fmt.Sprintf("method %s is not %s", meth, what))
		}
	}
	return mt
}

// checkPaths checks the exact paths or path prefixes of an invalidate rule.
func checkPaths(errs *config.FieldErrors, path string, paths []string) {
	for j, s := range paths {
		if err := reqmatch.CheckPath(s); err != nil {
			errs.Add(fmt.Sprintf("%s[%d]", path, j), err.Error())
		}
	}
}
