package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CacheRule caches the upstream responses to matching requests.
// +kubebuilder:validation:XValidation:rule="!has(self.match.methods) || self.match.methods.all(m, m == 'GET' || m == 'HEAD')",message="cache rules match only GET and HEAD; use invalidate rules for writes"
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

	// ttl is how long an entry stays fresh. Every entry expires: there is no
	// rule without a ttl.
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

	// maxBodyBytes bounds the responses stored: larger ones pass through uncached. Between 1 and 64Mi;
	// the operator reports a value outside that range as Accepted=False.
	// +optional
	// +default="1Mi"
	MaxBodyBytes *resource.Quantity `json:"maxBodyBytes,omitempty"`

	// honorCacheControl obeys the upstream's Cache-Control: no-store and
	// private are not stored in the shared tier, s-maxage and max-age shorten
	// the ttl.
	// +optional
	// +default=true
	HonorCacheControl *bool `json:"honorCacheControl,omitempty"`

	// staleWhileRevalidate serves an expired entry for this long while one
	// request refreshes it in the background.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="staleWhileRevalidate must not be negative"
	StaleWhileRevalidate *metav1.Duration `json:"staleWhileRevalidate,omitempty"`

	// staleIfError serves an expired entry for this long when the upstream fails.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="staleIfError must not be negative"
	StaleIfError *metav1.Duration `json:"staleIfError,omitempty"`

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
	// +kubebuilder:validation:items:Pattern=`^/[^?#;\\\x00-\x1F\x7F]*$`
	// +kubebuilder:validation:items:MaxLength=1024
	Paths []string `json:"paths,omitempty"`

	// pathPrefixes evicts the entries whose path starts with one of these.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^/[^?#;\\\x00-\x1F\x7F]*$`
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
	PodSelector metav1.LabelSelector `json:"podSelector,omitempty"`

	// redisRef names the RedisCluster holding the shared cache tier.
	// +required
	RedisRef RedisReference `json:"redisRef,omitzero"`

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
