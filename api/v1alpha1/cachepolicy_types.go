package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CacheMode says where a cache rule takes freshness from.
// +kubebuilder:validation:Enum=Standard;Override
type CacheMode string

// Cache modes.
const (
	// CacheModeStandard is RFC 9111: the origin's caching headers decide
	// what is stored, for how long and whether it may be served stale; the
	// rule's ttl and stale windows only cap them.
	CacheModeStandard CacheMode = "Standard"
	// CacheModeOverride is for origins that send no caching headers: a
	// response without explicit freshness is fresh for the rule's ttl and
	// may be served stale within the rule's windows (the behaviour before
	// Standard mode existed).
	CacheModeOverride CacheMode = "Override"
)

// SetCookiePolicy says what a cache rule does with responses that set cookies.
// +kubebuilder:validation:Enum=NotStored;Strip
type SetCookiePolicy string

// Set-Cookie policies.
const (
	// SetCookieNotStored never stores a response carrying Set-Cookie.
	SetCookieNotStored SetCookiePolicy = "NotStored"
	// SetCookieStrip stores such a response without its Set-Cookie fields:
	// the client whose request fetched it gets the cookie, no one else.
	SetCookieStrip SetCookiePolicy = "Strip"
)

// CacheRule caches the upstream responses to matching requests.
// +kubebuilder:validation:XValidation:rule="!has(self.match.methods) || self.match.methods.all(m, m == 'GET' || m == 'HEAD')",message="cache rules match only GET and HEAD; use invalidate rules for writes"
// +kubebuilder:validation:XValidation:rule="!has(self.honorCacheControl) || self.honorCacheControl || (has(self.mode) && self.mode == 'Override')",message="honorCacheControl: false ignores the origin's caching headers, which only mode: Override allows"
type CacheRule struct {
	// name identifies the rule within the policy and in metrics.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// match selects cacheable requests; methods default to GET and HEAD.
	// +optional
	// +default={}
	Match HTTPMatch `json:"match,omitzero"`

	// mode is Standard (the default: RFC 9111, the origin's Cache-Control,
	// Expires, Last-Modified and validators decide, the rule only caps) or
	// Override (the rule's ttl and stale windows apply to responses that
	// carry no explicit freshness: for origins that send no caching headers).
	// +optional
	// +default="Standard"
	Mode CacheMode `json:"mode,omitempty"`

	// ttl caps the freshness lifetime of every entry, whatever the origin
	// asks for. In Override mode it is also the lifetime of responses
	// without explicit freshness. Every entry expires: there is no rule
	// without a ttl.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('720h')",message="ttl must be between 1s and 720h"
	TTL metav1.Duration `json:"ttl,omitempty"`

	// varyHeaders are request headers whose values select different entries,
	// in addition to the upstream's Vary.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	VaryHeaders []string `json:"varyHeaders,omitempty"`

	// varyBySubject keeps one entry per session subject. Without it, responses
	// to requests with a session are not cached.
	// +optional
	VaryBySubject bool `json:"varyBySubject,omitempty"`

	// maxBodyBytes bounds the responses stored: larger ones pass through
	// uncached. Between 1 and 64Mi; the sidecars refuse a value outside that
	// range and the policy is reported Accepted=False, naming the field (a
	// CEL rule on a quantity in a list exceeds the API server's cost budget).
	// +optional
	// +default="1Mi"
	MaxBodyBytes *resource.Quantity `json:"maxBodyBytes,omitempty"`

	// honorCacheControl obeys, in Override mode, the origin's caching
	// headers: no-store, private and no-cache are honoured and explicit
	// freshness (s-maxage, max-age, Expires) replaces the ttl, capped by it.
	// false (Override mode only) ignores them: every response is fresh for
	// the ttl. Standard mode always obeys them.
	// +optional
	// +default=true
	HonorCacheControl *bool `json:"honorCacheControl,omitempty"`

	// staleWhileRevalidate caps the origin's stale-while-revalidate (RFC
	// 5861): how long after its freshness an entry may be served while one
	// request revalidates it in the background. Unset, the cap is the ttl.
	// In Override mode it is also the window of responses that name none
	// (unset: none).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="staleWhileRevalidate must not be negative"
	StaleWhileRevalidate *metav1.Duration `json:"staleWhileRevalidate,omitempty"`

	// staleIfError caps the origin's stale-if-error (RFC 5861): how long
	// after its freshness an entry may answer when the app fails (500, 502,
	// 503, 504). Unset, the cap is the ttl. In Override mode it is also the
	// window of responses that name none (unset: none).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="staleIfError must not be negative"
	StaleIfError *metav1.Duration `json:"staleIfError,omitempty"`

	// setCookie says what happens to a response carrying Set-Cookie:
	// NotStored (the default) or Strip (stored without its Set-Cookie
	// fields; only the client that caused the fetch gets the cookie).
	// +optional
	// +default="NotStored"
	SetCookie SetCookiePolicy `json:"setCookie,omitempty"`

	// maxVariants caps the entries kept per path (query strings, Vary
	// values and subjects each make one); storing one more evicts the one
	// stored longest ago.
	// +optional
	// +default=256
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxVariants *int32 `json:"maxVariants,omitempty"`

	// lockTimeout bounds how long a request waits for a concurrent request's
	// fetch of the same response (request collapsing) before asking the app
	// itself, like nginx's proxy_cache_lock_timeout. A fetch whose response
	// headers show it will not be stored releases its waiters at once.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('60s')",message="lockTimeout must be between 1ms and 60s"
	LockTimeout *metav1.Duration `json:"lockTimeout,omitempty"`

	// tags label the entries this rule stores, so invalidate rules and the
	// purge API can evict them together.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Tags []string `json:"tags,omitempty"`
}

// InvalidateRule evicts cached entries after a matching write succeeds (2xx).
// +kubebuilder:validation:XValidation:rule="(has(self.requestPath) && self.requestPath) || (has(self.paths) && size(self.paths) > 0) || (has(self.pathPrefixes) && size(self.pathPrefixes) > 0) || (has(self.tags) && size(self.tags) > 0)",message="invalidate rule must evict something: set requestPath, paths, pathPrefixes or tags"
// +kubebuilder:validation:XValidation:rule="!has(self.match.methods) || self.match.methods.all(m, m in ['POST', 'PUT', 'PATCH', 'DELETE'])",message="invalidate rules match only POST, PUT, PATCH and DELETE"
type InvalidateRule struct {
	// name identifies the rule within the policy and in metrics.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// match selects the writes; methods default to POST, PUT, PATCH and DELETE.
	// +optional
	// +default={}
	Match HTTPMatch `json:"match,omitzero"`

	// requestPath evicts the entries of the written path itself.
	// +optional
	RequestPath bool `json:"requestPath,omitempty"`

	// paths evicts the entries of these exact paths.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^/([^?#;%\\\x00-\x1F\x7F]|%[0-9A-Fa-f]{2})*$`
	// +kubebuilder:validation:items:MaxLength=1024
	Paths []string `json:"paths,omitempty"`

	// pathPrefixes evicts the entries whose path starts with one of these.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^/([^?#;%\\\x00-\x1F\x7F]|%[0-9A-Fa-f]{2})*$`
	// +kubebuilder:validation:items:MaxLength=1024
	PathPrefixes []string `json:"pathPrefixes,omitempty"`

	// tags evicts the entries stored by rules carrying one of these tags.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Tags []string `json:"tags,omitempty"`

	// grpc lets the rule fire on gRPC calls too (Content-Type
	// application/grpc…), once a call it matches ends with grpc-status 0
	// (OK). Every gRPC call is a POST answered HTTP 200 whatever its
	// outcome, so without it gRPC calls never invalidate.
	// +optional
	GRPC bool `json:"grpc,omitempty"`
}

// InProcessTier is a bounded in-memory cache in each sidecar, in front of
// Redis, kept coherent by invalidation messages over Redis Pub/Sub.
type InProcessTier struct {
	// maxEntries caps the number of entries per sidecar.
	// +optional
	// +default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	MaxEntries int32 `json:"maxEntries,omitempty"`

	// maxBytes caps the memory the entries' bodies use per sidecar.
	// +optional
	// +default="64Mi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0')) && quantity(string(self)).compareTo(quantity('4Gi')) <= 0",message="maxBytes must be between 1 and 4Gi"
	MaxBytes *resource.Quantity `json:"maxBytes,omitempty"`
}

// CachePolicySpec defines response caching for the selected pods.
type CachePolicySpec struct {
	// podSelector selects the pods (with the Gatehouse sidecar) this policy
	// applies to. It must not be empty. At most one CachePolicy applies to a
	// pod; when several select it, the oldest wins.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="podSelector must not be empty; use matchExpressions [{key: app, operator: Exists}] to select every app pod"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="podSelector operators are In, NotIn, Exists and DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="podSelector In and NotIn expressions need values"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="podSelector Exists and DoesNotExist expressions take no values"
	PodSelector metav1.LabelSelector `json:"podSelector,omitempty"`

	// redisRef names the RedisCluster holding the shared cache tier.
	// +required
	RedisRef RedisReference `json:"redisRef,omitzero"`

	// canonicalHost replaces, when set, the request's Host header in every
	// cache key, so that replicas reached under different host names (a
	// Service name, an Ingress host, a pod IP) share their entries. Leave it
	// unset when the app serves different content per host.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$`
	CanonicalHost string `json:"canonicalHost,omitempty"`

	// inProcess adds, when set, a per-sidecar in-memory tier in front of Redis.
	// +optional
	InProcess *InProcessTier `json:"inProcess,omitempty"`

	// rules say what is cached and for how long.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules []CacheRule `json:"rules,omitempty"`

	// invalidate rules say which writes evict which entries.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Invalidate []InvalidateRule `json:"invalidate,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cachep,categories=gatehouse
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Redis",type=string,JSONPath=`.spec.redisRef.name`
// +kubebuilder:printcolumn:name="TTL",type=string,JSONPath=`.spec.rules[0].ttl`,priority=1
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.selectedPods`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// CachePolicy caches the selected pods' responses in Redis, with explicit
// invalidation on writes across every replica.
type CachePolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines the cache.
	// +required
	Spec CachePolicySpec `json:"spec,omitzero"`

	// status reports whether the policy is in force.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CachePolicyList contains a list of CachePolicy.
type CachePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CachePolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&CachePolicy{}, &CachePolicyList{})
}
