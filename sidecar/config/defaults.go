package config

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// Defaults documented on the schema fields (docs/sidecar-config.md). This
// file is the one place they are applied: the operator renders a document
// without them, and every part of the sidecar that reads a section — the
// document compile (sidecar/gate) and each feature's Compile — applies its
// section's Default first, so both sides agree on the effective values.
const (
	DefaultDialTimeout   = Duration(time.Second)
	DefaultReadTimeout   = Duration(200 * time.Millisecond)
	DefaultWriteTimeout  = Duration(200 * time.Millisecond)
	DefaultMaxRetries    = 1
	DefaultSessionTTL    = Duration(30 * time.Minute)
	DefaultSessionPrefix = "auth:ctx:"
	DefaultTokenHeader   = "Authorization"
	DefaultTokenScheme   = "Bearer"
	// DefaultMaxLifetime caps a sliding session created without its own
	// ttl (or the policy's ttl, when longer). An absolute cap bounds how
	// long a stolen token stays useful and lets the per-subject index
	// expire.
	DefaultMaxLifetime  = Duration(7 * 24 * time.Hour)
	DefaultCachePrefix  = "cache:"
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxVariants  = 256
	DefaultLockTimeout  = Duration(5 * time.Second)
	DefaultCacheMode    = CacheStandard
	DefaultSetCookie    = SetCookieNotStored
	DefaultPathPrefix   = "/"
	DefaultAlgorithm    = FixedWindow
	DefaultMode         = Enforce
	DefaultFailureMode  = FailOpen
	DefaultQuota        = QuotaStrict
	DefaultHeaders      = HeadersDraft
)

// The proxy's progress deadlines towards the client (proxy.writeTimeout,
// proxy.bodyReadTimeout).
const (
	DefaultClientWriteTimeout = Duration(30 * time.Second)
	DefaultBodyReadTimeout    = Duration(30 * time.Second)
)

// MaxSessionLifetime bounds how long any session may live: a policy's ttl
// and maxLifetime, and the ttl the admin API accepts for one session.
const MaxSessionLifetime = 366 * 24 * time.Hour

var (
	// defaultCacheMethods are the safe methods a cache rule matches by default.
	defaultCacheMethods = []string{http.MethodGet, http.MethodHead}
	// defaultInvalidateMethods are the unsafe methods an invalidate rule matches by default.
	defaultInvalidateMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
)

// Default fills in every omitted optional field of the document with its
// documented default. It never overwrites a value that is set, and it is
// idempotent.
//
// Each section's Default below writes only into slices it allocated
// itself, so that defaulting a copy of a section (as Compile functions do)
// never changes the document it was copied from.
func (c *Config) Default() {
	c.Proxy.Default()
	for i := range c.Redis {
		c.Redis[i].Default()
	}
	for i := range c.Sessions {
		c.Sessions[i].Default()
	}
	for i := range c.RateLimits {
		c.RateLimits[i].Default()
	}
	for i := range c.Caches {
		c.Caches[i].Default()
	}
}

// Default fills in the proxy section's omitted fields.
func (p *Proxy) Default() {
	setDuration(&p.WriteTimeout, DefaultClientWriteTimeout)
	setDuration(&p.BodyReadTimeout, DefaultBodyReadTimeout)
}

// Default fills in a Redis connection's omitted fields.
func (r *RedisConnection) Default() {
	setDuration(&r.DialTimeout, DefaultDialTimeout)
	setDuration(&r.ReadTimeout, DefaultReadTimeout)
	setDuration(&r.WriteTimeout, DefaultWriteTimeout)
	// 0 means "default" so that an omitted field retries once; -1 disables retries.
	if r.MaxRetries == 0 {
		r.MaxRetries = DefaultMaxRetries
	}
}

// Default fills in a session policy's omitted fields.
func (s *SessionPolicy) Default() {
	setDuration(&s.TTL, DefaultSessionTTL)
	if s.MaxLifetime == 0 {
		// A cap below the ttl would end sessions before their first expiry.
		s.MaxLifetime = max(DefaultMaxLifetime, s.TTL)
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = DefaultSessionPrefix
	}
	// With neither a header nor a cookie the policy could never find a
	// token, so an empty source means the default Authorization: Bearer.
	if s.Token.Header == "" && s.Token.Cookie == "" {
		s.Token.Header = DefaultTokenHeader
	}
	// The Authorization header always carries a scheme (RFC 9110 §11.6.2);
	// other headers default to the bare token.
	if strings.EqualFold(s.Token.Header, DefaultTokenHeader) && s.Token.Scheme == "" {
		s.Token.Scheme = DefaultTokenScheme
	}
	if len(s.RequireFor) == 0 {
		s.RequireFor = []string{DefaultPathPrefix}
	}
}

// Default fills in a rate-limit policy's omitted fields.
func (p *RateLimitPolicy) Default() {
	if p.Headers == "" {
		p.Headers = DefaultHeaders
	}
	p.Rules = slices.Clone(p.Rules)
	for j := range p.Rules {
		r := &p.Rules[j]
		r.Match.Default(nil)
		if r.Algorithm == "" {
			r.Algorithm = DefaultAlgorithm
		}
		if r.Algorithm == TokenBucket && r.Burst == 0 {
			r.Burst = r.Limit
		}
		if r.Mode == "" {
			r.Mode = DefaultMode
		}
		if r.FailureMode == "" {
			r.FailureMode = DefaultFailureMode
		}
		if r.Quota == "" {
			r.Quota = DefaultQuota
		}
	}
}

// Default fills in a cache policy's omitted fields.
func (p *CachePolicy) Default() {
	if p.KeyPrefix == "" {
		p.KeyPrefix = DefaultCachePrefix
	}
	p.Rules = slices.Clone(p.Rules)
	for j := range p.Rules {
		r := &p.Rules[j]
		r.Match.Default(defaultCacheMethods)
		if r.MaxBodyBytes == nil {
			r.MaxBodyBytes = new(int64(DefaultMaxBodyBytes))
		}
		if r.Mode == "" {
			r.Mode = DefaultCacheMode
		}
		if r.SetCookie == "" {
			r.SetCookie = DefaultSetCookie
		}
		if r.MaxVariants == 0 {
			r.MaxVariants = DefaultMaxVariants
		}
		setDuration(&r.LockTimeout, DefaultLockTimeout)
		// The stale windows are caps on what the origin asks for; in
		// Standard mode an unset cap is the freshness cap, in Override
		// mode (where they are also defaults) unset means none. A new
		// pointer, so that the copied-from rule keeps its nil.
		staleCap := r.TTL
		if r.Mode == CacheOverride {
			staleCap = 0
		}
		if r.StaleWhileRevalidate == nil {
			r.StaleWhileRevalidate = new(staleCap)
		}
		if r.StaleIfError == nil {
			r.StaleIfError = new(staleCap)
		}
	}
	p.Invalidate = slices.Clone(p.Invalidate)
	for j := range p.Invalidate {
		p.Invalidate[j].Match.Default(defaultInvalidateMethods)
	}
}

// Default fills in a match's path prefix and, when methods is not nil and
// the match names none, its feature's default methods.
func (m *Match) Default(methods []string) {
	if m.PathPrefix == "" {
		m.PathPrefix = DefaultPathPrefix
	}
	if len(m.Methods) == 0 && methods != nil {
		m.Methods = slices.Clone(methods)
	}
}

func setDuration(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}
