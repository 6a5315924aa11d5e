// Package config is the contract between the Gatehouse operator and its
// sidecar: the versioned document the operator renders into the
// "gatehouse-sidecar" ConfigMap of a namespace and the sidecar loads, validates
// and hot-reloads.
//
// A document carries every policy of a namespace. Each sidecar selects the
// policies whose selector matches its own pod labels (mounted through the
// downward API), so relabelling a pod needs no re-injection and one ConfigMap
// serves every workload of the namespace.
//
// The package has no Kubernetes dependencies: it is compiled into the sidecar,
// whose image size and start-up time matter.
package config

import (
	"encoding/json"
	"fmt"
	"time"
)

const (
	// APIVersion is the only schema version this sidecar understands.
	APIVersion = "sidecar.gatehouse.dev/v1alpha1"
	// Kind names the document.
	Kind = "SidecarConfig"
)

// Config is the whole sidecar configuration document.
type Config struct {
	// apiVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// kind must be Kind.
	Kind string `json:"kind"`
	// hash is the operator's content hash of everything below it. The sidecar
	// reports it in /readyz and metrics so users can tell which config is in force.
	Hash string `json:"hash,omitempty"`
	// proxy holds settings of the proxy itself.
	Proxy Proxy `json:"proxy,omitempty"`
	// redis lists the named Redis connections policies refer to. One client is
	// created per connection and shared by all features.
	Redis []RedisConnection `json:"redis,omitempty"`
	// sessions lists session policies; at most one applies to a pod.
	Sessions []SessionPolicy `json:"sessions,omitempty"`
	// rateLimits lists rate-limit policies; all that select a pod apply.
	RateLimits []RateLimitPolicy `json:"rateLimits,omitempty"`
	// caches lists cache policies; at most one applies to a pod.
	Caches []CachePolicy `json:"caches,omitempty"`
}

// Proxy configures the request path that is independent of any policy.
type Proxy struct {
	// trustedProxies lists CIDRs of peers whose X-Forwarded-For is believed
	// and whose X-Forwarded-* headers are passed on to the app. Requests from
	// any other peer are identified by the connection address, and the app
	// gets X-Forwarded-* describing that connection.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	// writeTimeout bounds each write to the client (of at most 32 KiB): a
	// client that does not take the bytes within it loses the response and
	// its connection (default 30s). Idle time between writes does not count,
	// so a stream that keeps moving is never cut.
	WriteTimeout Duration `json:"writeTimeout,omitempty"`
	// bodyReadTimeout bounds reading the request body: the client must send
	// at least 1 KiB (or the rest of the body) within it, or the request is
	// aborted (default 30s).
	BodyReadTimeout Duration `json:"bodyReadTimeout,omitempty"`
}

// Overlay returns p with every field that o sets replacing p's. The
// sidecar's command line (sidecar/contract) overrides the document's proxy
// section this way, field by field.
func (p Proxy) Overlay(o Proxy) Proxy {
	if o.TrustedProxies != nil {
		p.TrustedProxies = o.TrustedProxies
	}
	if o.WriteTimeout != 0 {
		p.WriteTimeout = o.WriteTimeout
	}
	if o.BodyReadTimeout != 0 {
		p.BodyReadTimeout = o.BodyReadTimeout
	}
	return p
}

// PolicyMeta identifies the custom resource a policy was rendered from.
type PolicyMeta struct {
	// namespace of the source object. Part of every Redis key prefix, so that
	// two namespaces never share state by accident.
	Namespace string `json:"namespace"`
	// name of the source object.
	Name string `json:"name"`
	// selector chooses the pods (by their labels) the policy applies to.
	Selector Selector `json:"selector"`
	// redis is the name of the connection in Config.Redis the policy uses.
	Redis string `json:"redis"`
}

// RedisMode says how to talk to Redis.
type RedisMode string

const (
	RedisStandalone RedisMode = "Standalone"
	RedisCluster    RedisMode = "Cluster"
	RedisSentinel   RedisMode = "Sentinel"
)

// RedisConnection describes one Redis deployment.
type RedisConnection struct {
	// name is how policies refer to this connection.
	Name string `json:"name"`
	// mode is Standalone, Cluster or Sentinel.
	Mode RedisMode `json:"mode"`
	// addrs are host:port seeds. For a cluster, any subset of nodes.
	Addrs []string `json:"addrs"`
	// masterName is the Sentinel master set name (Sentinel mode only).
	MasterName string `json:"masterName,omitempty"`
	// username for ACL authentication, if any.
	Username string `json:"username,omitempty"`
	// passwordEnv names the environment variable that holds the password.
	// Passwords never appear in the document itself.
	PasswordEnv string `json:"passwordEnv,omitempty"`
	// db selects the logical database (Standalone and Sentinel only).
	DB int `json:"db,omitempty"`
	// tls enables TLS to Redis when set.
	TLS *RedisTLS `json:"tls,omitempty"`
	// poolSize caps connections per node; 0 means go-redis' default.
	PoolSize int `json:"poolSize,omitempty"`
	// dialTimeout bounds connecting (default 1s).
	DialTimeout Duration `json:"dialTimeout,omitempty"`
	// readTimeout bounds each command read (default 200ms). It is the upper
	// bound on how long a request waits for Redis before the failure mode applies.
	ReadTimeout Duration `json:"readTimeout,omitempty"`
	// writeTimeout bounds each command write (default 200ms).
	WriteTimeout Duration `json:"writeTimeout,omitempty"`
	// maxRetries is how often a failed command is retried (default 1).
	MaxRetries int `json:"maxRetries,omitempty"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// caFile is a PEM bundle to verify the server with; empty uses system roots.
	CAFile string `json:"caFile,omitempty"`
	// serverName overrides the name checked in the server certificate.
	ServerName string `json:"serverName,omitempty"`
	// insecureSkipVerify disables verification. For tests only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// SessionPolicy turns opaque tokens into an authenticated subject.
type SessionPolicy struct {
	PolicyMeta `json:",inline"`
	// token says where the token is read from.
	Token TokenSource `json:"token"`
	// ttl is the session lifetime (sliding when Sliding is true).
	TTL Duration `json:"ttl"`
	// sliding extends the session on every use (from the in-process tier: at
	// most once per second per sidecar).
	Sliding bool `json:"sliding"`
	// maxLifetime caps a sliding session created without its own ttl: however
	// often it is used, it ends this long after creation (default 168h).
	MaxLifetime Duration `json:"maxLifetime,omitempty"`
	// refreshBelow, when positive, extends a sliding session only when less than
	// this remains of it, saving a write per request.
	RefreshBelow Duration `json:"refreshBelow,omitempty"`
	// keyPrefix prefixes session keys in Redis (default "auth:ctx:").
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// requireFor lists path prefixes that need a valid session. Empty means "/".
	RequireFor []string `json:"requireFor,omitempty"`
	// publicPaths lists path prefixes that never need a session; they win over requireFor.
	PublicPaths []string `json:"publicPaths,omitempty"`
	// caseInsensitivePaths compares requireFor and publicPaths ignoring the
	// case of ASCII letters, for apps whose router does.
	CaseInsensitivePaths bool `json:"caseInsensitivePaths,omitempty"`
	// forwardClaims lists auth-context claims sent to the app as
	// X-Gatehouse-Claim-<Name> headers. The subject is always sent as X-Gatehouse-Subject.
	ForwardClaims []string `json:"forwardClaims,omitempty"`
	// forwardToken passes the session token on to the app. By default the
	// sidecar removes it once read (the token header's values in the token's
	// scheme, and the token cookie from the Cookie header), so an app that
	// logs or relays its request headers cannot leak a credential it never
	// needed: it learns who is calling from X-Gatehouse-Subject.
	ForwardToken bool `json:"forwardToken,omitempty"`
}

// TokenSource says where a session token is carried.
type TokenSource struct {
	// header carrying the token (default "Authorization"); empty string with
	// cookie set disables header lookup.
	Header string `json:"header,omitempty"`
	// scheme expected before the token in the header. Empty means "Bearer" on
	// the Authorization header and the bare token on any other header.
	Scheme string `json:"scheme,omitempty"`
	// cookie carrying the token, if any.
	Cookie string `json:"cookie,omitempty"`
}

// Algorithm is a rate-limiting algorithm.
type Algorithm string

const (
	FixedWindow   Algorithm = "FixedWindow"
	SlidingWindow Algorithm = "SlidingWindow"
	TokenBucket   Algorithm = "TokenBucket"
)

// Mode says whether a limit is enforced.
type Mode string

const (
	Enforce Mode = "Enforce"
	Shadow  Mode = "Shadow"
)

// FailureMode says what happens when Redis cannot answer.
type FailureMode string

const (
	FailOpen   FailureMode = "Open"
	FailClosed FailureMode = "Closed"
)

// Quota says how a rule's decisions reach Redis.
type Quota string

const (
	// QuotaStrict decides every request in Redis.
	QuotaStrict Quota = "Strict"
	// QuotaLeased lets each sidecar take slices of the quota from Redis and
	// spend them locally; it never admits more than Strict would.
	QuotaLeased Quota = "Leased"
)

// HeaderForm is the form of the rate-limit response headers.
type HeaderForm string

const (
	// HeadersDraft sends the structured RateLimit and RateLimit-Policy
	// fields of the current IETF draft.
	HeadersDraft HeaderForm = "Draft"
	// HeadersLegacy sends the separate RateLimit-Limit, RateLimit-Remaining,
	// RateLimit-Reset (and the old RateLimit-Policy) of earlier drafts.
	HeadersLegacy HeaderForm = "Legacy"
	// HeadersBoth sends both forms.
	HeadersBoth HeaderForm = "Both"
)

// RateLimitPolicy is a set of limits shared by every replica.
type RateLimitPolicy struct {
	PolicyMeta `json:",inline"`
	// headers is the form of the response headers: Draft (default), Legacy or Both.
	Headers HeaderForm `json:"headers,omitempty"`
	// rules are evaluated together; every matching rule must admit a request.
	Rules []RateLimitRule `json:"rules"`
}

// RateLimitRule is one limit.
type RateLimitRule struct {
	// name is unique within the policy and part of the counter key.
	Name string `json:"name"`
	// match selects the requests the rule counts.
	Match Match `json:"match,omitempty"`
	// key says what a counter is kept per.
	Key RateLimitKey `json:"key"`
	// limit is the number of requests admitted per window (TokenBucket: the rate per window).
	Limit int64 `json:"limit"`
	// window is the length of a window; any positive duration.
	Window Duration `json:"window"`
	// algorithm is FixedWindow, SlidingWindow or TokenBucket.
	Algorithm Algorithm `json:"algorithm"`
	// burst is the TokenBucket burst size (defaults to limit).
	Burst int64 `json:"burst,omitempty"`
	// mode is Enforce or Shadow.
	Mode Mode `json:"mode"`
	// failureMode is Open or Closed.
	FailureMode FailureMode `json:"failureMode"`
	// quota is Strict (default: every request decided in Redis) or Leased
	// (FixedWindow and TokenBucket only: slices of the quota spent locally).
	Quota Quota `json:"quota,omitempty"`
}

// RateLimitKey lists the request attributes a counter is kept per. Attributes
// combine; with none set the limit is global (one counter for everyone).
type RateLimitKey struct {
	// clientIP keys by the client address.
	ClientIP bool `json:"clientIP,omitempty"`
	// header keys by the value of this request header.
	Header string `json:"header,omitempty"`
	// subject keys by the session subject.
	Subject bool `json:"subject,omitempty"`
	// path keys by the request path.
	Path bool `json:"path,omitempty"`
}

// Match selects requests.
type Match struct {
	// pathPrefix the request path must start with (default "/"). It is
	// compared, as a plain string prefix, with the canonical request path
	// (sidecar/request), and is itself canonicalised the same way.
	PathPrefix string `json:"pathPrefix,omitempty"`
	// caseInsensitive compares pathPrefix ignoring the case of ASCII
	// letters, for apps whose router does (ASP.NET, IIS, Spring MVC with
	// case-insensitive matching).
	CaseInsensitive bool `json:"caseInsensitive,omitempty"`
	// methods the request must use; empty means any (for rate limits) or a
	// feature-specific default (GET/HEAD for caching).
	Methods []string `json:"methods,omitempty"`
	// header, when set, must be present (and equal Value when Value is set).
	Header *HeaderMatch `json:"header,omitempty"`
}

// HeaderMatch matches a request header.
type HeaderMatch struct {
	// name of the header.
	Name string `json:"name"`
	// value the header must equal; empty means any value.
	Value string `json:"value,omitempty"`
}

// CachePolicy caches upstream responses.
type CachePolicy struct {
	PolicyMeta `json:",inline"`
	// keyPrefix prefixes cache keys in Redis (default "cache:").
	KeyPrefix string `json:"keyPrefix,omitempty"`
	// canonicalHost, when set, replaces the request's Host in every cache
	// key, so replicas reached under several host names share entries. Leave
	// it empty when the app serves different content per host.
	CanonicalHost string `json:"canonicalHost,omitempty"`
	// inProcess, when set, adds a bounded in-memory tier in front of Redis.
	InProcess *InProcessTier `json:"inProcess,omitempty"`
	// rules say what is cached and for how long.
	Rules []CacheRule `json:"rules"`
	// invalidate rules say which writes evict which entries.
	Invalidate []InvalidateRule `json:"invalidate,omitempty"`
}

// InProcessTier bounds the in-memory tier.
type InProcessTier struct {
	// maxEntries caps the number of entries.
	MaxEntries int `json:"maxEntries"`
	// maxBytes caps the bytes of bodies held.
	MaxBytes int64 `json:"maxBytes"`
}

// CacheMode says where a cache rule takes freshness from.
type CacheMode string

// Cache modes.
const (
	// CacheStandard is RFC 9111: the origin's headers decide freshness,
	// storage and stale serving; the rule's values only cap them.
	CacheStandard CacheMode = "Standard"
	// CacheOverride is for origins that send no caching headers: the
	// rule's ttl and stale windows are the defaults for responses without
	// explicit freshness (and, without honorCacheControl, for every
	// response).
	CacheOverride CacheMode = "Override"
)

// SetCookiePolicy says what a cache rule does with responses that set cookies.
type SetCookiePolicy string

// Set-Cookie policies.
const (
	// SetCookieNotStored never stores a response carrying Set-Cookie.
	SetCookieNotStored SetCookiePolicy = "NotStored"
	// SetCookieStrip stores such a response without its Set-Cookie fields:
	// the client that caused the fetch gets its cookie, nobody else does.
	SetCookieStrip SetCookiePolicy = "Strip"
)

// CacheRule caches matching responses.
type CacheRule struct {
	// name is unique within the policy.
	Name string `json:"name"`
	// match selects cacheable requests; Methods default to GET and HEAD.
	Match Match `json:"match,omitempty"`
	// mode is Standard (RFC 9111, the default) or Override.
	Mode CacheMode `json:"mode,omitempty"`
	// ttl caps every entry's freshness lifetime (Standard); in Override
	// mode it is also the lifetime of responses without explicit freshness.
	// Required and positive: no entry lives without expiry.
	TTL Duration `json:"ttl"`
	// varyHeaders are request headers that select different entries.
	VaryHeaders []string `json:"varyHeaders,omitempty"`
	// varyBySubject keeps one entry per session subject, allowing caching of
	// responses that depend on the session.
	VaryBySubject bool `json:"varyBySubject,omitempty"`
	// maxBodyBytes: larger bodies pass through uncached (default 1 MiB).
	// A pointer, so that an explicit 0 (which the CRD admits) is refused
	// rather than read as "default".
	MaxBodyBytes *int64 `json:"maxBodyBytes,omitempty"`
	// honorCacheControl obeys the origin's caching headers in Override
	// mode; Standard mode always obeys them.
	HonorCacheControl bool `json:"honorCacheControl,omitempty"`
	// staleWhileRevalidate caps the origin's stale-while-revalidate
	// (Standard; default: ttl), and is its default in Override mode
	// (default 0).
	StaleWhileRevalidate *Duration `json:"staleWhileRevalidate,omitempty"`
	// staleIfError caps the origin's stale-if-error the same way.
	StaleIfError *Duration `json:"staleIfError,omitempty"`
	// setCookie is NotStored (default) or Strip.
	SetCookie SetCookiePolicy `json:"setCookie,omitempty"`
	// maxVariants caps the variants (query strings, Vary values, subjects)
	// kept per path; storing one more evicts the one expiring soonest
	// (default 256).
	MaxVariants int `json:"maxVariants,omitempty"`
	// lockTimeout bounds how long a request waits for a concurrent fetch of
	// the same response before it asks the app itself (default 5s).
	LockTimeout Duration `json:"lockTimeout,omitempty"`
	// tags label entries stored by this rule, for tag invalidation.
	Tags []string `json:"tags,omitempty"`
}

// InvalidateRule evicts entries after a successful write.
type InvalidateRule struct {
	// name is unique within the policy.
	Name string `json:"name"`
	// match selects the writes; Methods default to POST, PUT, PATCH and DELETE.
	Match Match `json:"match,omitempty"`
	// requestPath evicts the entries of the written path itself.
	RequestPath bool `json:"requestPath,omitempty"`
	// paths evicts entries of these exact paths.
	Paths []string `json:"paths,omitempty"`
	// pathPrefixes evicts entries whose path starts with any of these.
	PathPrefixes []string `json:"pathPrefixes,omitempty"`
	// tags evicts entries stored by rules carrying any of these tags.
	Tags []string `json:"tags,omitempty"`
	// grpc lets the rule fire on gRPC calls too, once one ends with
	// grpc-status 0; by default gRPC calls never invalidate.
	GRPC bool `json:"grpc,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("1500ms", "30s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
