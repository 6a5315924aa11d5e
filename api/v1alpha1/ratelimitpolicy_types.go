package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RateLimitAlgorithm is how a rule counts requests.
// +kubebuilder:validation:Enum=FixedWindow;SlidingWindow;TokenBucket
type RateLimitAlgorithm string

const (
	// FixedWindow counts requests per window aligned to the window length.
	// Cheapest; a client can get up to twice the limit across a window boundary.
	FixedWindow RateLimitAlgorithm = "FixedWindow"
	// SlidingWindow weighs the previous window's count, so no window-length
	// interval admits more than the limit.
	SlidingWindow RateLimitAlgorithm = "SlidingWindow"
	// TokenBucket is GCRA: a steady rate of limit per window with bursts up to burst.
	TokenBucket RateLimitAlgorithm = "TokenBucket"
)

// RateLimitMode says whether a rule denies requests.
// +kubebuilder:validation:Enum=Enforce;Shadow
type RateLimitMode string

const (
	// Enforce answers 429 when a request is over the limit.
	Enforce RateLimitMode = "Enforce"
	// Shadow only records what would have been denied, to try a limit safely.
	Shadow RateLimitMode = "Shadow"
)

// FailureMode says what the sidecar does when Redis cannot answer in time.
// +kubebuilder:validation:Enum=Open;Closed
type FailureMode string

const (
	// FailOpen admits requests, capped by a per-sidecar fallback limiter.
	FailOpen FailureMode = "Open"
	// FailClosed answers 503 until Redis is back.
	FailClosed FailureMode = "Closed"
)

// RateLimitQuota says how a rule's decisions reach Redis.
// +kubebuilder:validation:Enum=Strict;Leased
type RateLimitQuota string

const (
	// QuotaStrict decides every request in Redis: one script call per
	// request and rule.
	QuotaStrict RateLimitQuota = "Strict"
	// QuotaLeased lets each sidecar take a slice of the quota from Redis in
	// one call and spend it locally. The fleet never admits more than
	// Strict would; unspent slices only under-admit (docs/rate-limiting.md
	// states the bounds). FixedWindow and TokenBucket only.
	QuotaLeased RateLimitQuota = "Leased"
)

// RateLimitHeaders is the form of the rate-limit response headers.
// +kubebuilder:validation:Enum=Draft;Legacy;Both
type RateLimitHeaders string

const (
	// HeadersDraft sends the structured RateLimit and RateLimit-Policy
	// fields of draft-ietf-httpapi-ratelimit-headers.
	HeadersDraft RateLimitHeaders = "Draft"
	// HeadersLegacy sends RateLimit-Limit, RateLimit-Remaining,
	// RateLimit-Reset and RateLimit-Policy in the form of earlier drafts,
	// for clients written against them.
	HeadersLegacy RateLimitHeaders = "Legacy"
	// HeadersBoth sends both forms.
	HeadersBoth RateLimitHeaders = "Both"
)

// RateLimitKey says what a counter is kept per. The attributes combine (a
// counter per client IP and path, say); global means one counter for all.
// +kubebuilder:validation:XValidation:rule="(has(self.global) && self.global) ? !((has(self.clientIP) && self.clientIP) || (has(self.subject) && self.subject) || (has(self.path) && self.path) || (has(self.header) && size(self.header) > 0)) : ((has(self.clientIP) && self.clientIP) || (has(self.subject) && self.subject) || (has(self.path) && self.path) || (has(self.header) && size(self.header) > 0))",message="key needs at least one of clientIP, header, subject or path, or global: true alone"
type RateLimitKey struct {
	// clientIP keys the counter by the client address.
	// +optional
	ClientIP bool `json:"clientIP,omitempty"`

	// header keys the counter by the value of this request header (an API key, say).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]*$`
	Header string `json:"header,omitempty"`

	// subject keys the counter by the session subject. Requests without a
	// session are counted by client IP instead.
	// +optional
	Subject bool `json:"subject,omitempty"`

	// path keys the counter by the request path.
	// +optional
	Path bool `json:"path,omitempty"`

	// global keeps one counter for every request the rule matches.
	// +optional
	Global bool `json:"global,omitempty"`
}

// RateLimitRule is one limit.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.algorithm == 'TokenBucket'",message="burst applies only to the TokenBucket algorithm"
// +kubebuilder:validation:XValidation:rule="!has(self.quota) || self.quota != 'Leased' || self.algorithm != 'SlidingWindow'",message="quota Leased applies to FixedWindow and TokenBucket only"
// +kubebuilder:validation:XValidation:rule="!has(self.algorithm) || self.algorithm != 'TokenBucket' || int(duration(self.window)) / 1000 >= self.limit",message="a TokenBucket admits at most one request per microsecond: limit must not exceed the window in microseconds"
type RateLimitRule struct {
	// name identifies the rule within the policy; it is part of the counter key
	// and of metrics labels.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// match selects the requests the rule counts. A request is counted only
	// against the rules it matches.
	// +optional
	// +default={}
	Match HTTPMatch `json:"match,omitzero"`

	// key says what a counter is kept per.
	// +required
	Key RateLimitKey `json:"key,omitempty"`

	// limit is how many requests a key may make per window. A TokenBucket
	// keeps time in microseconds, so its limit is at most one per
	// microsecond of the window (1000 per 1ms).
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Limit int64 `json:"limit,omitempty"`

	// window is the length of a window: any whole number of milliseconds
	// from 1ms to 24h, such as 1500ms, 30s, 5m or 1h (counters keep
	// milliseconds, so 1.5ms is refused rather than truncated).
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('24h')",message="window must be between 1ms and 24h"
	// +kubebuilder:validation:XValidation:rule="int(duration(self)) % 1000000 == 0",message="window must be a whole number of milliseconds, such as 1500ms"
	Window metav1.Duration `json:"window,omitempty"`

	// algorithm is FixedWindow, SlidingWindow or TokenBucket.
	// +optional
	// +default="FixedWindow"
	Algorithm RateLimitAlgorithm `json:"algorithm,omitempty"`

	// burst is how many requests a TokenBucket admits at once; defaults to limit.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Burst *int64 `json:"burst,omitempty"`

	// mode is Enforce or Shadow.
	// +optional
	// +default="Enforce"
	Mode RateLimitMode `json:"mode,omitempty"`

	// failureMode is what happens when Redis cannot answer: Open admits
	// (capped by a per-sidecar fallback limiter), Closed answers 503.
	// +optional
	// +default="Open"
	FailureMode FailureMode `json:"failureMode,omitempty"`

	// quota is Strict (every request decided in Redis) or Leased (each
	// sidecar spends slices of the quota taken from Redis: about no Redis
	// call per request on a busy key, never more admitted than Strict).
	// +optional
	// +default="Strict"
	Quota RateLimitQuota `json:"quota,omitempty"`
}

// RateLimitPolicySpec defines limits for the selected pods.
type RateLimitPolicySpec struct {
	// podSelector selects the pods (with the Gatehouse sidecar) this policy
	// applies to. It must not be empty. Several RateLimitPolicies may select
	// one pod; a request must pass every matching rule of all of them.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="podSelector must not be empty; use matchExpressions [{key: app, operator: Exists}] to select every app pod"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="podSelector operators are In, NotIn, Exists and DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="podSelector In and NotIn expressions need values"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="podSelector Exists and DoesNotExist expressions take no values"
	PodSelector metav1.LabelSelector `json:"podSelector,omitempty"`

	// redisRef names the RedisCluster holding the counters.
	// +required
	RedisRef RedisReference `json:"redisRef,omitzero"`

	// headers is the form of the rate-limit response headers: Draft (the
	// structured RateLimit and RateLimit-Policy fields of the current IETF
	// draft), Legacy (RateLimit-Limit, -Remaining, -Reset of earlier
	// drafts) or Both.
	// +optional
	// +default="Draft"
	Headers RateLimitHeaders `json:"headers,omitempty"`

	// rules are the limits. Names are unique within the policy.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules []RateLimitRule `json:"rules,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rlp,categories=gatehouse
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Redis",type=string,JSONPath=`.spec.redisRef.name`
// +kubebuilder:printcolumn:name="First-Rule",type=string,JSONPath=`.spec.rules[0].name`,priority=1
// +kubebuilder:printcolumn:name="Limit",type=integer,JSONPath=`.spec.rules[0].limit`,priority=1
// +kubebuilder:printcolumn:name="Window",type=string,JSONPath=`.spec.rules[0].window`,priority=1
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.selectedPods`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// RateLimitPolicy limits request rates across every replica of the selected
// pods, with counters in Redis.
type RateLimitPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines the limits.
	// +required
	Spec RateLimitPolicySpec `json:"spec,omitzero"`

	// status reports whether the policy is in force.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RateLimitPolicyList contains a list of RateLimitPolicy.
type RateLimitPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RateLimitPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RateLimitPolicy{}, &RateLimitPolicyList{})
}
