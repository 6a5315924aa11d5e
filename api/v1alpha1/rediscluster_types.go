package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RedisProfile selects what the cluster is tuned for.
// +kubebuilder:validation:Enum=Cache;Durable
type RedisProfile string

const (
	// ProfileCache evicts least-recently-used keys under memory pressure
	// (allkeys-lru). Right for the response cache; wrong for sessions and
	// counters, which would silently vanish.
	ProfileCache RedisProfile = "Cache"
	// ProfileDurable never evicts (noeviction) and persists with AOF: writes fail
	// loudly when memory is full instead of losing sessions or counters.
	ProfileDurable RedisProfile = "Durable"
)

// RedisStorage gives each node a PersistentVolumeClaim.
type RedisStorage struct {
	// size of each node's volume.
	// +required
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).isGreaterThan(quantity('0'))",message="storage size must be positive"
	Size resource.Quantity `json:"size,omitempty"`

	// storageClassName of the claims; empty uses the cluster default.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// SecretKeyReference names a key in a Secret of the same namespace.
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// key within the Secret.
	// +optional
	// +default="password"
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// RedisClusterSpec defines a Redis Cluster run by the operator.
// +kubebuilder:validation:XValidation:rule="self.shards >= oldSelf.shards || self.shards >= 3",message="shards cannot go below 3"
type RedisClusterSpec struct {
	// shards is the number of primaries, each owning a share of the 16384
	// slots. Redis Cluster needs at least 3 for a majority to fail over.
	// +optional
	// +default=3
	// +kubebuilder:validation:Minimum=3
	// +kubebuilder:validation:Maximum=100
	Shards int32 `json:"shards,omitempty"`

	// replicasPerShard is the number of replicas of each primary.
	// +optional
	// +default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=5
	ReplicasPerShard *int32 `json:"replicasPerShard,omitempty"`

	// image of redis-server (7.0 or newer, for hostname announcement and
	// sharded Pub/Sub). Pin a digest in production.
	// +optional
	// +default="redis:7.2.5"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// resources of each redis-server container. Set a memory limit above the
	// maxmemory of the config, or the kernel kills the node before Redis evicts.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// storage gives each node a persistent volume; without it nodes use an
	// emptyDir and lose their data when rescheduled (replicas still hold it).
	// +optional
	Storage *RedisStorage `json:"storage,omitempty"`

	// profile is Cache (allkeys-lru eviction) or Durable (noeviction, AOF).
	// +optional
	// +default="Durable"
	Profile RedisProfile `json:"profile,omitempty"`

	// config holds redis.conf directives that override the baseline, such as
	// maxmemory: 2gb. Directives the operator owns (cluster-*, port, bind,
	// dir, requirepass, masterauth, include, rename-command, loadmodule) are refused.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['port', 'bind', 'dir', 'requirepass', 'masterauth', 'masteruser', 'include', 'rename-command', 'loadmodule', 'daemonize', 'pidfile', 'logfile', 'tls-port', 'unixsocket', 'aclfile']) && !k.startsWith('cluster-'))",message="config may not set directives the operator owns: port, bind, dir, requirepass, masterauth, masteruser, include, rename-command, loadmodule, daemonize, pidfile, logfile, tls-port, unixsocket, aclfile or cluster-*"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-z][a-z0-9-]*$'))",message="config keys must be lowercase redis.conf directive names"
	Config map[string]string `json:"config,omitempty"`

	// passwordSecretRef names an existing Secret holding the password. When
	// unset, the operator generates a Secret named <cluster>-password.
	// +optional
	PasswordSecretRef *SecretKeyReference `json:"passwordSecretRef,omitempty"`
}

// RedisClusterStatus is the observed state of a RedisCluster.
type RedisClusterStatus struct {
	// conditions are Ready, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type" protobuf:"bytes,1,rep,name=conditions"`

	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// readyNodes is the number of redis-server pods that are ready.
	// +optional
	ReadyNodes int32 `json:"readyNodes"`

	// shards is the number of primaries that own slots.
	// +optional
	Shards int32 `json:"shards,omitempty"`

	// clusterState is Redis' own verdict (CLUSTER INFO cluster_state: ok or fail).
	// +optional
	ClusterState string `json:"clusterState,omitempty"`

	// slotsAssigned is the number of the 16384 slots owned by a primary.
	// +optional
	SlotsAssigned int32 `json:"slotsAssigned"`

	// configHash is the hash of the redis.conf the nodes run.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// passwordSecret is the Secret the password is read from.
	// +optional
	PasswordSecret string `json:"passwordSecret,omitempty"`

	// clientService is the Service clients connect to, as host:port.
	// +optional
	ClientService string `json:"clientService,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rdc,categories=gatehouse
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Shards",type=integer,JSONPath=`.spec.shards`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicasPerShard`
// +kubebuilder:printcolumn:name="Profile",type=string,JSONPath=`.spec.profile`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.clusterState`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.readyNodes`
// +kubebuilder:printcolumn:name="Slots",type=integer,JSONPath=`.status.slotsAssigned`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// RedisCluster is a Redis Cluster run by the operator for the sidecars:
// formed, repaired and scaled without manual steps.
type RedisCluster struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec defines the cluster.
	// +required
	Spec RedisClusterSpec `json:"spec,omitempty"`

	// status reports the cluster's health.
	// +optional
	Status RedisClusterStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// RedisClusterList contains a list of RedisCluster.
type RedisClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RedisCluster `json:"items"`
}

func init() {
	SchemeBuilder.Register(&RedisCluster{}, &RedisClusterList{})
}
