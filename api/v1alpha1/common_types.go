package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types shared by all Gatehouse kinds.
const (
	// ConditionAccepted says whether the spec is valid and can be put in force:
	// its references resolve and it does not conflict with an older object.
	ConditionAccepted = "Accepted"
	// ConditionReady says whether the object is in force: for policies, rendered
	// into the namespace's sidecar configuration; for a RedisCluster, serving.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a RedisCluster is being formed or scaled.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True while a RedisCluster serves with reduced redundancy.
	ConditionDegraded = "Degraded"
)

// Health condition types of a RedisCluster, decided from the nodes' INFO.
// Each is True while its problem lasts, False when it is gone, and Unknown
// while no node answers.
const (
	// ConditionMemoryPressure: a primary that never evicts (noeviction)
	// nears maxmemory; beyond it every write fails with OOM.
	ConditionMemoryPressure = "MemoryPressure"
	// ConditionFragmented: a node's mem_fragmentation_ratio exceeds
	// spec.thresholds.fragmentationRatio, with at least
	// fragmentationMinBytes lost to fragmentation.
	ConditionFragmented = "Fragmented"
	// ConditionPersistenceFailing: the last RDB snapshot, AOF write or AOF
	// rewrite of a node failed.
	ConditionPersistenceFailing = "PersistenceFailing"
	// ConditionClientsRejected: a node refused connections since the
	// previous observation because maxclients was reached.
	ConditionClientsRejected = "ClientsRejected"
	// ConditionReplicaLagging: a replica's link to its primary is down or
	// its offset trails by more than spec.thresholds.replicaLagBytes.
	ConditionReplicaLagging = "ReplicaLagging"
	// ConditionConnectionBudget: the sidecars using the cluster could open
	// more connections to a node than its maxclients allows at
	// spec.sidecarPoolSize, so the rendered pool size was lowered (or even
	// a pool of one would not fit).
	ConditionConnectionBudget = "ConnectionBudget"
)

// Condition reasons. They are CamelCase so tools can match on them.
const (
	ReasonAccepted             = "Accepted"
	ReasonConflicted           = "Conflicted"
	ReasonRedisClusterNotFound = "RedisClusterNotFound"
	ReasonRedisClusterNotReady = "RedisClusterNotReady"
	ReasonRendered             = "Rendered"
	ReasonNotAccepted          = "NotAccepted"
	ReasonRenderFailed         = "RenderFailed"
	ReasonInvalidSpec          = "InvalidSpec"

	ReasonClusterReady     = "ClusterReady"
	ReasonBootstrapping    = "Bootstrapping"
	ReasonScaling          = "Scaling"
	ReasonRepairing        = "Repairing"
	ReasonNodesNotReady    = "NodesNotReady"
	ReasonSlotsUncovered   = "SlotsUncovered"
	ReasonReplicasMissing  = "ReplicasMissing"
	ReasonClusterUnhealthy = "ClusterUnhealthy"
	ReasonScaleInRefused   = "ScaleInRefused"
	ReasonInvalidConfig    = "InvalidConfig"
	// ReasonPasswordUnavailable: the password Secret (given or generated)
	// cannot be read, so the operator cannot talk to the nodes.
	ReasonPasswordUnavailable = "PasswordUnavailable"
	ReasonAsExpected          = "AsExpected"
	// ReasonMaintenanceRestart: Progressing while fragmented nodes are
	// restarted in the maintenance window.
	ReasonMaintenanceRestart = "MaintenanceRestart"

	// Reasons of the health conditions. ReasonNotObserved: no node answered,
	// so the condition is Unknown.
	ReasonNotObserved       = "NotObserved"
	ReasonNearMaxMemory     = "NearMaxMemory"
	ReasonMaxMemoryReached  = "MaxMemoryReached"
	ReasonFragmentationHigh = "FragmentationHigh"
	ReasonRDBSaveFailed     = "RDBSaveFailed"
	ReasonAOFWriteFailed    = "AOFWriteFailed"
	ReasonAOFRewriteFailed  = "AOFRewriteFailed"
	ReasonMaxClientsReached = "MaxClientsReached"
	ReasonReplicaLinkDown   = "ReplicaLinkDown"
	ReasonReplicaSyncing    = "ReplicaSyncing"
	ReasonReplicaBehind     = "ReplicaBehind"
	ReasonPoolSizeCapped    = "PoolSizeCapped"
	ReasonBudgetExhausted   = "BudgetExhausted"
)

// RedisReference names a RedisCluster in the policy's namespace.
type RedisReference struct {
	// name of the RedisCluster.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name,omitempty"`
}

// HTTPMethod is an HTTP request method.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
type HTTPMethod string

// HeaderMatch matches a request header.
type HeaderMatch struct {
	// name of the header, case-insensitive.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Name string `json:"name,omitempty"`

	// value the header must equal. When empty, the header only has to be present.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`
}

// HTTPMatch selects requests. All given criteria must hold.
type HTTPMatch struct {
	// pathPrefix the request path must start with: a plain string prefix of
	// the canonical path the sidecar forwards to the app (dot segments
	// resolved, duplicate slashes merged, escapes of unreserved characters
	// decoded; docs/security.md), so "/api" also matches "/apiv2" (write
	// "/api/" for the directory). The prefix is canonicalised the same way.
	// It may not contain a query, a fragment, a backslash, ";", control
	// characters or a broken percent-escape.
	// +optional
	// +default="/"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/([^?#;%\\\x00-\x1F\x7F]|%[0-9A-Fa-f]{2})*$`
	PathPrefix string `json:"pathPrefix,omitempty"`

	// caseInsensitive compares pathPrefix with the request path ignoring the
	// case of ASCII letters, for apps whose router does (ASP.NET, IIS, Spring
	// MVC with case-insensitive matching): otherwise "/API/login" would escape
	// a rule on "/api/login" and still reach the same handler. Cache keys and
	// invalidation targets still compare paths exactly.
	// +optional
	// +default=false
	CaseInsensitive *bool `json:"caseInsensitive,omitempty"`

	// methods the request must use. Empty means the feature's default: any
	// method for rate limits, GET and HEAD for cache rules, POST, PUT, PATCH and
	// DELETE for invalidation rules.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	Methods []HTTPMethod `json:"methods,omitempty"`

	// header names a header that, when set, must be present on the request.
	// +optional
	Header *HeaderMatch `json:"header,omitempty"`
}

// PolicyStatus is the observed state shared by the three policy kinds.
type PolicyStatus struct {
	// conditions are Accepted and Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type" protobuf:"bytes,1,rep,name=conditions"`

	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// configHash is the content hash of the namespace's sidecar configuration
	// that includes this policy. Pods report the hash they run in the
	// gatehouse.dev/config-hash annotation and their /readyz.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// selectedPods is the number of running pods with the Gatehouse sidecar
	// that this policy selects.
	// +optional
	SelectedPods int32 `json:"selectedPods"`
}
