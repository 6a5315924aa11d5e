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

// ActiveDefragMode says whether the operator turns on Redis' active
// defragmentation.
// +kubebuilder:validation:Enum=Auto;Disabled
type ActiveDefragMode string

const (
	// ActiveDefragAuto turns activedefrag on, with CONFIG SET, on every node
	// whose build supports it (redis-server linked with the jemalloc Redis
	// ships, as the official images are). A build without it (Debian's,
	// which links the system jemalloc) refuses; the operator reports that
	// in status.health.activeDefrag and leaves the node as it is.
	ActiveDefragAuto ActiveDefragMode = "Auto"
	// ActiveDefragDisabled keeps activedefrag off.
	ActiveDefragDisabled ActiveDefragMode = "Disabled"
)

// Weekday is a day of the week.
// +kubebuilder:validation:Enum=Monday;Tuesday;Wednesday;Thursday;Friday;Saturday;Sunday
type Weekday string

// RedisThresholds say when the health conditions turn on.
type RedisThresholds struct {
	// memoryPressurePercent is the share of maxmemory a primary that never
	// evicts (noeviction, the Durable profile) may use before MemoryPressure
	// turns on: past 100% every write fails with OOM.
	// +optional
	// +default=90
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MemoryPressurePercent *int32 `json:"memoryPressurePercent,omitempty"`

	// fragmentationRatio is the mem_fragmentation_ratio (RSS / used_memory)
	// above which Fragmented turns on.
	// +optional
	// +default="1.5"
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('1'))",message="fragmentationRatio must be at least 1"
	FragmentationRatio *resource.Quantity `json:"fragmentationRatio,omitempty"`

	// fragmentationMinBytes is how much memory (RSS - used_memory) a node
	// must lose to fragmentation before its ratio counts, here and for
	// maintenance restarts: a nearly empty node always shows a large,
	// meaningless ratio. Redis' own active defragmentation ignores the
	// same amount (active-defrag-ignore-bytes).
	// +optional
	// +default="100Mi"
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="fragmentationMinBytes must not be negative"
	FragmentationMinBytes *resource.Quantity `json:"fragmentationMinBytes,omitempty"`

	// replicaLagBytes is how far a replica's replication offset may trail
	// its primary's before ReplicaLagging turns on.
	// +optional
	// +default="1Mi"
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="replicaLagBytes must not be negative"
	ReplicaLagBytes *resource.Quantity `json:"replicaLagBytes,omitempty"`
}

// RedisMaintenance is a weekly window in which the operator may restart
// nodes whose memory is fragmented, one at a time and without losing
// acknowledged writes: a replica directly, a primary only after a manual
// CLUSTER FAILOVER has handed its slots to an in-sync replica.
type RedisMaintenance struct {
	// days on which the window opens, in UTC; empty means every day.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=7
	Days []Weekday `json:"days,omitempty"`

	// start is when the window opens, as HH:MM in UTC.
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start,omitempty"`

	// duration of the window, at most 24h.
	// +optional
	// +default="2h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="duration must be between 1m and 24h"
	Duration *metav1.Duration `json:"duration,omitempty"`

	// fragmentationRatio is the mem_fragmentation_ratio above which a node
	// is restarted in the window (when it also loses at least
	// thresholds.fragmentationMinBytes). A restart returns the memory to the
	// kernel; each node is restarted at most once per window.
	// +optional
	// +default="2"
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('1'))",message="fragmentationRatio must be at least 1"
	FragmentationRatio *resource.Quantity `json:"fragmentationRatio,omitempty"`
}

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
	// dir, requirepass, masterauth, include, rename-command, loadmodule,
	// activedefrag: see activeDefrag) are refused.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['port', 'bind', 'dir', 'requirepass', 'masterauth', 'masteruser', 'include', 'rename-command', 'loadmodule', 'daemonize', 'pidfile', 'logfile', 'tls-port', 'unixsocket', 'aclfile', 'activedefrag']) && !k.startsWith('cluster-'))",message="config may not set directives the operator owns: port, bind, dir, requirepass, masterauth, masteruser, include, rename-command, loadmodule, daemonize, pidfile, logfile, tls-port, unixsocket, aclfile, activedefrag (use spec.activeDefrag) or cluster-*"
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.matches('^[a-z][a-z0-9-]*$'))",message="config keys must be lowercase redis.conf directive names"
	Config map[string]string `json:"config,omitempty"`

	// passwordSecretRef names an existing Secret holding the password. When
	// unset, the operator generates a Secret named <cluster>-password.
	// +optional
	PasswordSecretRef *SecretKeyReference `json:"passwordSecretRef,omitempty"`

	// thresholds say when the health conditions (MemoryPressure, Fragmented,
	// ReplicaLagging) turn on.
	// +optional
	// +default={}
	Thresholds *RedisThresholds `json:"thresholds,omitempty"`

	// activeDefrag is Auto (turn Redis' active defragmentation on where the
	// build supports it, with the thresholds of the rendered redis.conf) or
	// Disabled.
	// +optional
	// +default="Auto"
	ActiveDefrag ActiveDefragMode `json:"activeDefrag,omitempty"`

	// maintenance is a weekly window in which the operator restarts
	// fragmented nodes. Unset (the default), it restarts nothing.
	// +optional
	Maintenance *RedisMaintenance `json:"maintenance,omitempty"`

	// sidecarPoolSize is the most connections each sidecar opens to one node
	// (go-redis PoolSize). The operator lowers it, and reports
	// ConnectionBudget, when the sidecars using this cluster could
	// otherwise exceed the nodes' maxclients.
	// +optional
	// +default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	SidecarPoolSize *int32 `json:"sidecarPoolSize,omitempty"`
}

// RedisClusterHealth is the compact summary of the nodes' INFO at the last
// observation; docs/redis-cluster.md lists the metrics with the detail.
type RedisClusterHealth struct {
	// memoryUsedPercent is the highest share of maxmemory any primary uses
	// (used_memory less the buffers Redis does not count for eviction),
	// in percent; absent when no primary has a maxmemory.
	// +optional
	MemoryUsedPercent *int32 `json:"memoryUsedPercent,omitempty"`

	// memoryUsed is used_memory summed over the primaries, in MiB steps.
	// +optional
	MemoryUsed *resource.Quantity `json:"memoryUsed,omitempty"`

	// memoryMax is maxmemory summed over the primaries.
	// +optional
	MemoryMax *resource.Quantity `json:"memoryMax,omitempty"`

	// maxFragmentationRatio is the highest mem_fragmentation_ratio of any
	// node, such as "1.42". A node holding little memory shows a large
	// ratio that means nothing; Fragmented applies
	// thresholds.fragmentationMinBytes.
	// +optional
	MaxFragmentationRatio string `json:"maxFragmentationRatio,omitempty"`

	// keyspaceHitRatio is keyspace_hits / (keyspace_hits + keyspace_misses)
	// over the primaries since they started, such as "0.97"; absent before
	// the first lookup.
	// +optional
	KeyspaceHitRatio string `json:"keyspaceHitRatio,omitempty"`

	// rejectedConnections is how many connections the nodes refused
	// (maxclients reached) since the previous observation.
	// +optional
	RejectedConnections int64 `json:"rejectedConnections"`

	// activeDefrag is Enabled, Disabled or Unsupported (the build of
	// redis-server cannot defragment; see spec.activeDefrag).
	// +optional
	ActiveDefrag string `json:"activeDefrag,omitempty"`
}

// RedisConnectionBudget compares what the sidecars may open to one node
// with what the node accepts.
type RedisConnectionBudget struct {
	// sidecars is the number of pods with the Gatehouse sidecar whose
	// policies use this cluster.
	// +optional
	Sidecars int32 `json:"sidecars"`

	// perNode is the most connections those sidecars may open to one node:
	// sidecars × (sidecarPoolSize + 2 Pub/Sub connections).
	// +optional
	PerNode int64 `json:"perNode"`

	// available is maxclients less what the cluster itself needs (cluster
	// bus links, replicas, the operator and a reserve for people).
	// +optional
	Available int64 `json:"available"`
}

// RedisMaintenanceStatus reports the fragmentation restarts.
type RedisMaintenanceStatus struct {
	// windowOpen is true while the maintenance window is open.
	// +optional
	WindowOpen bool `json:"windowOpen"`

	// nextWindow is when the window opens next.
	// +optional
	NextWindow *metav1.Time `json:"nextWindow,omitempty"`

	// pending lists the nodes still to be restarted in this window.
	// +optional
	// +listType=set
	Pending []string `json:"pending,omitempty"`

	// lastRestart is the node restarted last, and when.
	// +optional
	LastRestart *RedisNodeRestart `json:"lastRestart,omitempty"`
}

// RedisNodeRestart is one maintenance restart.
type RedisNodeRestart struct {
	// node is the member restarted (a pod name).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node,omitempty"`

	// time of the restart.
	// +required
	Time metav1.Time `json:"time,omitempty"`

	// fragmentationRatio of the node before the restart.
	// +optional
	FragmentationRatio string `json:"fragmentationRatio,omitempty"`
}

// RedisClusterStatus is the observed state of a RedisCluster.
type RedisClusterStatus struct {
	// conditions are Ready, Progressing and Degraded, and the health
	// conditions MemoryPressure, Fragmented, PersistenceFailing,
	// ClientsRejected, ReplicaLagging and ConnectionBudget (True while the
	// problem lasts).
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

	// health summarises the nodes' INFO at the last observation.
	// +optional
	Health *RedisClusterHealth `json:"health,omitempty"`

	// sidecarPoolSize is the pool size per node rendered into the sidecars'
	// configuration: spec.sidecarPoolSize, lowered so that the sidecars
	// using this cluster fit in maxclients.
	// +optional
	SidecarPoolSize int32 `json:"sidecarPoolSize,omitempty"`

	// connections is the sidecars' connection budget per node.
	// +optional
	Connections *RedisConnectionBudget `json:"connections,omitempty"`

	// maintenance reports the restarts of spec.maintenance.
	// +optional
	Maintenance *RedisMaintenanceStatus `json:"maintenance,omitempty"`
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
// +kubebuilder:printcolumn:name="Mem%",type=integer,JSONPath=`.status.health.memoryUsedPercent`
// +kubebuilder:printcolumn:name="Frag",type=string,JSONPath=`.status.health.maxFragmentationRatio`
// +kubebuilder:printcolumn:name="Hits",type=string,JSONPath=`.status.health.keyspaceHitRatio`
// +kubebuilder:printcolumn:name="Rejected",type=integer,JSONPath=`.status.health.rejectedConnections`
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.status.health.memoryUsed`,priority=1
// +kubebuilder:printcolumn:name="MaxMemory",type=string,JSONPath=`.status.health.memoryMax`,priority=1
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
