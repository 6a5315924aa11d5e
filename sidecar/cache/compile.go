package cache

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	reqmatch "github.com/gatehouse-dev/gatehouse/sidecar/request" // this package has a request type of its own
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

// compiled is a CachePolicy checked and turned into what a Cache runs.
type compiled struct {
	ks            keyspace
	canonicalHost string
	rules         []rule
	inv           []invRule
	inProcess     *config.InProcessTier
	// maxLifetime is the longest an entry of the policy lives: the largest
	// ttl plus its larger stale window.
	maxLifetime time.Duration
}

// compile validates p and reports every problem at once; it does no I/O.
// Omitted fields take the defaults of config.Default, so a policy that did
// not pass through it still compiles to the documented behaviour.
func compile(p config.CachePolicy) (*compiled, error) {
	prefix := p.KeyPrefix
	if prefix == "" {
		prefix = config.DefaultCachePrefix
	}
	cp := &compiled{ks: newKeyspace(prefix, p.Namespace, p.Name), canonicalHost: strings.ToLower(p.CanonicalHost), inProcess: p.InProcess}
	var errs []error
	for i, r := range p.Rules {
		rl, rerrs := compileRule(r)
		for _, err := range rerrs {
			errs = append(errs, fmt.Errorf("rules[%d] %q: %w", i, r.Name, err))
		}
		cp.rules = append(cp.rules, rl)
		cp.maxLifetime = max(cp.maxLifetime, rl.ttl+max(rl.swr, rl.sie))
	}
	for i, r := range p.Invalidate {
		mt, err := reqmatch.Compile(r.Match, []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete})
		if err != nil {
			errs = append(errs, fmt.Errorf("invalidate[%d] %q: match: %w", i, r.Name, err))
		}
		ir := invRule{
			name:        r.Name,
			match:       mt,
			requestPath: r.RequestPath,
			grpc:        r.GRPC,
			t:           targets{Paths: r.Paths, PathPrefixes: r.PathPrefixes, Tags: r.Tags},
		}
		if !ir.requestPath && ir.t.empty() {
			errs = append(errs, fmt.Errorf("invalidate[%d] %q: names nothing to evict", i, r.Name))
		}
		cp.inv = append(cp.inv, ir)
	}
	if p.InProcess != nil && (p.InProcess.MaxEntries <= 0 || p.InProcess.MaxBytes <= 0) {
		errs = append(errs, errors.New("inProcess: maxEntries and maxBytes must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache policy %s/%s: %w", p.Namespace, p.Name, err)
	}
	return cp, nil
}

// compileRule checks one cache rule and fills in its defaults.
func compileRule(r config.CacheRule) (rule, []error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if r.TTL.D() <= 0 {
		bad("ttl must be positive")
	}
	mt, err := reqmatch.Compile(r.Match, []string{http.MethodGet, http.MethodHead})
	if err != nil {
		bad("match: %w", err)
	}
	for _, meth := range r.Match.Methods {
		if meth = strings.ToUpper(meth); meth != http.MethodGet && meth != http.MethodHead {
			bad("method %s is not cacheable (GET and HEAD only)", meth)
		}
	}
	rl := rule{
		name: r.Name, match: mt, mode: cmp.Or(r.Mode, config.CacheStandard), honor: r.HonorCacheControl, ttl: r.TTL.D(),
		vary: headerNames(r.VaryHeaders), bySubject: r.VaryBySubject,
		maxBody:     cmp.Or(r.MaxBodyBytes, config.DefaultMaxBodyBytes),
		setCookie:   cmp.Or(r.SetCookie, config.SetCookieNotStored),
		maxVariants: cmp.Or(r.MaxVariants, config.DefaultMaxVariants),
		lockTimeout: cmp.Or(r.LockTimeout.D(), config.DefaultLockTimeout.D()),
		tags:        r.Tags,
	}
	if rl.mode != config.CacheStandard && rl.mode != config.CacheOverride {
		bad("mode must be %s or %s, got %q", config.CacheStandard, config.CacheOverride, rl.mode)
	}
	if rl.setCookie != config.SetCookieNotStored && rl.setCookie != config.SetCookieStrip {
		bad("setCookie must be %s or %s, got %q", config.SetCookieNotStored, config.SetCookieStrip, rl.setCookie)
	}
	if rl.maxBody < 0 || rl.maxVariants < 0 || rl.maxVariants > config.MaxCacheVariants {
		bad("maxBodyBytes must be positive and maxVariants between 1 and %d", config.MaxCacheVariants)
	}
	if rl.lockTimeout < 0 {
		bad("lockTimeout must be positive")
	}
	// Unset stale caps: the freshness cap in Standard mode, none in
	// Override mode (where they are also the defaults), as config.Default.
	rl.swr, rl.sie = rl.ttl, rl.ttl
	if rl.mode == config.CacheOverride {
		rl.swr, rl.sie = 0, 0
	}
	if r.StaleWhileRevalidate != nil {
		rl.swr = r.StaleWhileRevalidate.D()
	}
	if r.StaleIfError != nil {
		rl.sie = r.StaleIfError.D()
	}
	if rl.swr < 0 || rl.sie < 0 {
		bad("negative staleWhileRevalidate or staleIfError")
	}
	return rl, errs
}
