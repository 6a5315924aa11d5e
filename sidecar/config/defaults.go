package config

import (
	"net/http"
	"strings"
	"time"
)

// Defaults documented on the schema fields. They are applied by Default, a
// separate step from Validate, so that the operator can render a document
// without defaults and the sidecar still sees the same effective values.
const (
	DefaultDialTimeout     = Duration(time.Second)
	DefaultReadTimeout     = Duration(200 * time.Millisecond)
	DefaultWriteTimeout    = Duration(200 * time.Millisecond)
	DefaultMaxRetries      = 1
	DefaultSessionTTL      = Duration(30 * time.Minute)
	DefaultSessionPrefix   = "auth:ctx:"
	DefaultTokenHeader     = "Authorization"
	DefaultTokenScheme     = "Bearer"
	DefaultCachePrefix     = "cache:"
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxVariants     = 256
	DefaultLockTimeout     = Duration(5 * time.Second)
	DefaultPathPrefix      = "/"
	DefaultAlgorithm       = FixedWindow
	DefaultMode            = Enforce
	DefaultFailureMode     = FailOpen
	DefaultQuota           = QuotaStrict
	DefaultHeaders         = HeadersDraft
	defaultRequireForPath  = "/"
	authorizationHeaderKey = "Authorization"
)

// The proxy's progress deadlines towards the client (proxy.writeTimeout,
// proxy.bodyReadTimeout).
const (
	DefaultClientWriteTimeout = Duration(30 * time.Second)
	DefaultBodyReadTimeout    = Duration(30 * time.Second)
)

var (
	// defaultCacheMethods are the safe methods a cache rule matches by default.
	defaultCacheMethods = []string{http.MethodGet, http.MethodHead}
	// defaultInvalidateMethods are the unsafe methods an invalidate rule matches by default.
	defaultInvalidateMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
)

// Default fills in omitted optional fields with their documented defaults.
// It never overwrites a value that is set, and it is idempotent.
func (c *Config) Default() {
	setDuration(&c.Proxy.WriteTimeout, DefaultClientWriteTimeout)
	setDuration(&c.Proxy.BodyReadTimeout, DefaultBodyReadTimeout)
	for i := range c.Redis {
		r := &c.Redis[i]
		setDuration(&r.DialTimeout, DefaultDialTimeout)
		setDuration(&r.ReadTimeout, DefaultReadTimeout)
		setDuration(&r.WriteTimeout, DefaultWriteTimeout)
		// 0 means "default" so that an omitted field retries once; -1 disables retries.
		if r.MaxRetries == 0 {
			r.MaxRetries = DefaultMaxRetries
		}
	}
	for i := range c.Sessions {
		s := &c.Sessions[i]
		setDuration(&s.TTL, DefaultSessionTTL)
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
		if strings.EqualFold(s.Token.Header, authorizationHeaderKey) && s.Token.Scheme == "" {
			s.Token.Scheme = DefaultTokenScheme
		}
		if len(s.RequireFor) == 0 {
			s.RequireFor = []string{defaultRequireForPath}
		}
	}
	for i := range c.RateLimits {
		if c.RateLimits[i].Headers == "" {
			c.RateLimits[i].Headers = DefaultHeaders
		}
		for j := range c.RateLimits[i].Rules {
			r := &c.RateLimits[i].Rules[j]
			defaultMatch(&r.Match, nil)
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
	for i := range c.Caches {
		p := &c.Caches[i]
		if p.KeyPrefix == "" {
			p.KeyPrefix = DefaultCachePrefix
		}
		for j := range p.Rules {
			r := &p.Rules[j]
			defaultMatch(&r.Match, defaultCacheMethods)
			if r.MaxBodyBytes == 0 {
				r.MaxBodyBytes = DefaultMaxBodyBytes
			}
			if r.Mode == "" {
				r.Mode = CacheStandard
			}
			if r.SetCookie == "" {
				r.SetCookie = SetCookieNotStored
			}
			if r.MaxVariants == 0 {
				r.MaxVariants = DefaultMaxVariants
			}
			setDuration(&r.LockTimeout, DefaultLockTimeout)
			// The stale windows are caps on what the origin asks for; in
			// Standard mode an unset cap is the freshness cap, in Override
			// mode (where they are also defaults) unset means none.
			staleCap := r.TTL
			if r.Mode == CacheOverride {
				staleCap = 0
			}
			for _, d := range []**Duration{&r.StaleWhileRevalidate, &r.StaleIfError} {
				if *d == nil {
					v := staleCap
					*d = &v
				}
			}
		}
		for j := range p.Invalidate {
			defaultMatch(&p.Invalidate[j].Match, defaultInvalidateMethods)
		}
	}
}

func setDuration(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}

func defaultMatch(m *Match, methods []string) {
	if m.PathPrefix == "" {
		m.PathPrefix = DefaultPathPrefix
	}
	if len(m.Methods) == 0 && methods != nil {
		m.Methods = append([]string(nil), methods...)
	}
}
