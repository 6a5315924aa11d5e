package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SessionTokenSource says where the sidecar reads a session token.
// +kubebuilder:validation:XValidation:rule="!has(self.header) || size(self.header) > 0 || (has(self.cookie) && size(self.cookie) > 0)",message="token needs a header or a cookie to read the token from"
type SessionTokenSource struct {
	// header carrying the token. Set it to "" and give a cookie to read only the cookie.
	// +optional
	// +default="Authorization"
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]*$`
	Header *string `json:"header,omitempty"`

	// scheme that precedes the token in the header, such as "Bearer". Empty
	// accepts the bare token, except on the Authorization header, which
	// always carries a scheme (Bearer). Ignored when no header is read.
	// +optional
	// +default="Bearer"
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]*$`
	Scheme *string `json:"scheme,omitempty"`

	// cookie carrying the token, read when the header is absent.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]*$`
	Cookie string `json:"cookie,omitempty"`
}

// SessionPolicySpec defines sessions for the selected pods.
// +kubebuilder:validation:XValidation:rule="!has(self.refreshBelow) || duration(self.refreshBelow) < duration(self.ttl)",message="refreshBelow must be shorter than ttl"
// +kubebuilder:validation:XValidation:rule="!has(self.maxLifetime) || duration(self.maxLifetime) >= duration(self.ttl)",message="maxLifetime must not be shorter than ttl"
// +kubebuilder:validation:XValidation:rule="!has(self.refreshBelow) || !has(self.sliding) || self.sliding",message="refreshBelow applies only to sliding sessions"
type SessionPolicySpec struct {
	// podSelector selects the pods (with the Gatehouse sidecar) this policy
	// applies to. It must not be empty: to cover every pod of the namespace say
	// so with an Exists expression. At most one SessionPolicy applies to a pod;
	// when several select it, the oldest wins.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="podSelector must not be empty; use matchExpressions [{key: app, operator: Exists}] to select every app pod"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="podSelector operators are In, NotIn, Exists and DoesNotExist"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['In', 'NotIn']) || (has(e.values) && size(e.values) > 0))",message="podSelector In and NotIn expressions need values"
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, !(e.operator in ['Exists', 'DoesNotExist']) || !has(e.values) || size(e.values) == 0)",message="podSelector Exists and DoesNotExist expressions take no values"
	PodSelector metav1.LabelSelector `json:"podSelector,omitempty"`

	// redisRef names the RedisCluster holding the sessions.
	// +required
	RedisRef RedisReference `json:"redisRef,omitzero"`

	// token says where the token is read from.
	// +optional
	// +default={}
	Token SessionTokenSource `json:"token,omitzero"`

	// ttl is how long a session lives (since its last use when sliding).
	// +optional
	// +default="30m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="ttl must be at least 1s"
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// sliding extends a session by ttl on every request that uses it (a
	// sidecar serving it from its in-process tier sends at most one
	// extension per second, so the idle timeout restarts within a second of
	// the last use).
	// +optional
	// +default=true
	Sliding *bool `json:"sliding,omitempty"`

	// maxLifetime caps a sliding session: however often it is used, it ends
	// this long after login, so a stolen token cannot be kept alive forever.
	// The app can give a session a shorter lifetime when it creates it.
	// +optional
	// +default="168h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('8784h')",message="maxLifetime must be between 1m and 8784h (366 days)"
	MaxLifetime *metav1.Duration `json:"maxLifetime,omitempty"`

	// refreshBelow makes a sliding session extend only when less than
	// this remains, trading precision of the expiry for fewer Redis writes.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="refreshBelow must be positive"
	RefreshBelow *metav1.Duration `json:"refreshBelow,omitempty"`

	// requireFor lists path prefixes that need a valid session. Prefixes are
	// plain string prefixes of the canonical request path, as in a rule's
	// match.pathPrefix.
	// +optional
	// +default=["/"]
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^/([^?#;%\\\x00-\x1F\x7F]|%[0-9A-Fa-f]{2})*$`
	// +kubebuilder:validation:items:MaxLength=1024
	RequireFor []string `json:"requireFor,omitempty"`

	// publicPaths lists path prefixes that never need a session, such as a
	// login page or health endpoint. They win over requireFor.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^/([^?#;%\\\x00-\x1F\x7F]|%[0-9A-Fa-f]{2})*$`
	// +kubebuilder:validation:items:MaxLength=1024
	PublicPaths []string `json:"publicPaths,omitempty"`

	// caseInsensitivePaths compares requireFor and publicPaths with the
	// request path ignoring the case of ASCII letters, for apps whose router
	// does: otherwise "/ADMIN/" would miss a requireFor of "/admin/" and
	// reach the admin handler without a session.
	// +optional
	// +default=false
	CaseInsensitivePaths *bool `json:"caseInsensitivePaths,omitempty"`

	// forwardClaims lists auth-context claims sent to the app as
	// X-Gatehouse-Claim-<Name> headers. The subject is always sent as
	// X-Gatehouse-Subject.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9-]+$`
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(c, self.exists_one(d, d.lowerAscii() == c.lowerAscii()))",message="forwardClaims must differ in more than case: each becomes a header name"
	ForwardClaims []string `json:"forwardClaims,omitempty"`

	// forwardToken passes the session token on to the app. By default the
	// sidecar removes it once read, on every path: the token header's values
	// in the token's scheme (an Authorization header of another scheme
	// stays), and the token cookie from the Cookie header (other cookies
	// stay). The app learns who is calling from X-Gatehouse-Subject; an app
	// that logs or relays its request headers cannot leak a credential it
	// never received. Set it when the app needs the token itself, for example
	// to revoke the caller's own session through the admin API.
	// +optional
	// +default=false
	ForwardToken *bool `json:"forwardToken,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sessp,categories=gatehouse
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Redis",type=string,JSONPath=`.spec.redisRef.name`
// +kubebuilder:printcolumn:name="TTL",type=string,JSONPath=`.spec.ttl`
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.selectedPods`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// SessionPolicy gives the selected pods server-side sessions: the sidecar
// turns an opaque token into an authenticated subject stored in Redis.
type SessionPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines the sessions.
	// +required
	Spec SessionPolicySpec `json:"spec,omitzero"`

	// status reports whether the policy is in force.
	// +optional
	Status PolicyStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SessionPolicyList contains a list of SessionPolicy.
type SessionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SessionPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SessionPolicy{}, &SessionPolicyList{})
}
