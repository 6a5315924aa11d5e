package controllers

import (
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
)

// The Redis metrics are the nodes' own figures as the reconciler last read
// them (INFO), exposed on the manager's metrics endpoint. They are
// collected, not pushed: each scrape reads the last observation of every
// cluster, so a deleted cluster or a removed node simply disappears, and
// Redis' counters keep their counter type (a restarted node's reset is a
// counter reset to Prometheus). docs/redis-cluster.md lists them.

var (
	nodeLabels    = []string{"namespace", "cluster", "shard", "node", "role"}
	clusterLabels = []string{"namespace", "cluster"}
)

func nodeDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("gatehouse_redis_"+name, help, nodeLabels, nil)
}

func clusterDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("gatehouse_redis_"+name, help, clusterLabels, nil)
}

var (
	descUp                  = nodeDesc("up", "1 when the node answered the last observation, 0 when it did not.")
	descUptime              = nodeDesc("uptime_seconds", "Seconds since the redis-server process started.")
	descMemoryUsed          = nodeDesc("memory_used_bytes", "used_memory: memory allocated by Redis.")
	descMemoryRSS           = nodeDesc("memory_rss_bytes", "used_memory_rss: memory the process holds from the kernel.")
	descMemoryMax           = nodeDesc("memory_max_bytes", "maxmemory; 0 means no limit.")
	descFragmentation       = nodeDesc("memory_fragmentation_ratio", "mem_fragmentation_ratio: RSS / used memory (meaningless on a node using little memory).")
	descKeyspaceHits        = nodeDesc("keyspace_hits_total", "keyspace_hits: lookups that found their key.")
	descKeyspaceMisses      = nodeDesc("keyspace_misses_total", "keyspace_misses: lookups that did not.")
	descHitRatio            = nodeDesc("keyspace_hit_ratio", "keyspace_hits / (hits + misses) since the process started; absent before the first lookup.")
	descKeys                = nodeDesc("keys", "Keys in the node's databases.")
	descKeysWithoutExpiry   = nodeDesc("keys_without_expiry", "Keys without a TTL: they stay until deleted or evicted.")
	descEvicted             = nodeDesc("evicted_keys_total", "evicted_keys: keys removed to stay under maxmemory.")
	descExpired             = nodeDesc("expired_keys_total", "expired_keys: keys removed when their TTL ran out.")
	descConnectedClients    = nodeDesc("connected_clients", "connected_clients (replicas excluded).")
	descBlockedClients      = nodeDesc("blocked_clients", "blocked_clients: clients waiting in a blocking command.")
	descMaxClients          = nodeDesc("max_clients", "maxclients.")
	descRejected            = nodeDesc("rejected_connections_total", "rejected_connections: connections refused because maxclients was reached.")
	descRDBLastSaveOK       = nodeDesc("rdb_last_save_ok", "1 when the last RDB snapshot succeeded (rdb_last_bgsave_status ok).")
	descRDBChanges          = nodeDesc("rdb_changes_since_last_save", "Writes not yet in an RDB snapshot.")
	descAOFLastWriteOK      = nodeDesc("aof_last_write_ok", "1 when the last AOF write succeeded; only for nodes with appendonly yes.")
	descAOFLastRewriteOK    = nodeDesc("aof_last_rewrite_ok", "1 when the last AOF rewrite succeeded; only for nodes with appendonly yes.")
	descReplicationLag      = nodeDesc("replication_lag_bytes", "Replication stream a replica has not applied yet (primary's offset less the replica's).")
	descReplicaLinkUp       = nodeDesc("replica_link_up", "1 when a replica's link to its primary is up.")
	descClusterOK           = clusterDesc("cluster_ok", "1 when every node that answered reports cluster_state:ok.")
	descClusterNodes        = clusterDesc("cluster_nodes", "Nodes the member source reports.")
	descSidecars            = clusterDesc("sidecars", "Pods with the Gatehouse sidecar whose policies use the cluster.")
	descSidecarPoolSize     = clusterDesc("sidecar_pool_size", "Connection pool size per node rendered for the sidecars (spec.sidecarPoolSize, capped to fit maxclients).")
	descSidecarConnections  = clusterDesc("sidecar_connections_max", "Connections the sidecars may open to one node at spec.sidecarPoolSize: sidecars × (pool size + 2).")
	descConnectionsFree     = clusterDesc("connections_available", "maxclients less what the cluster needs itself: what the sidecars may use per node.")
	descLastObservation     = clusterDesc("last_observation_timestamp_seconds", "When the operator last read INFO from the nodes.")
	descMaintenanceRestarts = clusterDesc("maintenance_restarts_total", "Nodes restarted in the maintenance window since the operator started.")
	allRedisDescs           = []*prometheus.Desc{
		descUp, descUptime, descMemoryUsed, descMemoryRSS, descMemoryMax, descFragmentation, descKeyspaceHits,
		descKeyspaceMisses, descHitRatio, descKeys, descKeysWithoutExpiry, descEvicted, descExpired, descConnectedClients, descBlockedClients,
		descMaxClients, descRejected, descRDBLastSaveOK, descRDBChanges, descAOFLastWriteOK, descAOFLastRewriteOK,
		descReplicationLag, descReplicaLinkUp, descClusterOK, descClusterNodes, descSidecars, descSidecarPoolSize,
		descSidecarConnections, descConnectionsFree, descLastObservation, descMaintenanceRestarts,
	}
)

// redisSample is one cluster's last observation, as the metrics show it.
type redisSample struct {
	At        time.Time
	Nodes     []redishealth.Node
	Lag       map[string]int64
	ClusterOK bool
	Budget    redishealth.Budget
	Sidecars  int
	// Restarts counts maintenance restarts; kept across samples.
	Restarts int
}

// redisCollector is a prometheus.Collector over the last sample of every
// cluster.
type redisCollector struct {
	mu      sync.Mutex
	samples map[types.NamespacedName]redisSample
}

// redisMetrics is the collector on the manager's registry.
var redisMetrics = &redisCollector{samples: map[types.NamespacedName]redisSample{}}

func init() { metrics.Registry.MustRegister(redisMetrics) }

// record replaces a cluster's sample, keeping its restart count.
func (c *redisCollector) record(key types.NamespacedName, s redisSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.Restarts = c.samples[key].Restarts
	c.samples[key] = s
}

// restarted counts one maintenance restart.
func (c *redisCollector) restarted(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.samples[key]
	s.Restarts++
	c.samples[key] = s
}

// forget drops a deleted cluster.
func (c *redisCollector) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.samples, key)
}

// Describe implements prometheus.Collector.
func (c *redisCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allRedisDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *redisCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	samples := maps.Clone(c.samples)
	c.mu.Unlock()
	for key, s := range samples {
		collectCluster(ch, key, s)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func collectCluster(ch chan<- prometheus.Metric, key types.NamespacedName, s redisSample) {
	cluster := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, key.Namespace, key.Name)
	}
	if !s.At.IsZero() {
		cluster(descLastObservation, float64(s.At.UnixNano())/1e9)
		cluster(descClusterOK, boolValue(s.ClusterOK))
	}
	cluster(descClusterNodes, float64(len(s.Nodes)))
	cluster(descSidecars, float64(s.Sidecars))
	cluster(descSidecarPoolSize, float64(s.Budget.PoolSize))
	cluster(descSidecarConnections, float64(s.Budget.PerNode))
	cluster(descConnectionsFree, float64(s.Budget.Available))
	ch <- prometheus.MustNewConstMetric(descMaintenanceRestarts, prometheus.CounterValue, float64(s.Restarts), key.Namespace, key.Name)

	for _, n := range s.Nodes {
		if !n.Observed() {
			// Role and shard are unknown: what is known is that it is down.
			ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0, key.Namespace, key.Name, "", n.Name, "")
			continue
		}
		shard := ""
		if n.Shard != redishealth.NoShard {
			shard = strconv.Itoa(n.Shard)
		}
		labels := []string{key.Namespace, key.Name, shard, n.Name, n.Role()}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		i := n.Info
		gauge(descUp, 1)
		gauge(descUptime, float64(i.Server.UptimeSeconds))
		gauge(descMemoryUsed, float64(i.Memory.Used))
		gauge(descMemoryRSS, float64(i.Memory.RSS))
		gauge(descMemoryMax, float64(i.Memory.Max))
		gauge(descFragmentation, i.Memory.FragmentationRatio)
		counter(descKeyspaceHits, i.Stats.KeyspaceHits)
		counter(descKeyspaceMisses, i.Stats.KeyspaceMisses)
		if r, ok := i.Stats.HitRatio(); ok {
			gauge(descHitRatio, r)
		}
		gauge(descKeys, float64(i.Keys()))
		gauge(descKeysWithoutExpiry, float64(i.Keys()-i.Expires()))
		counter(descEvicted, i.Stats.EvictedKeys)
		counter(descExpired, i.Stats.ExpiredKeys)
		gauge(descConnectedClients, float64(i.Clients.Connected))
		gauge(descBlockedClients, float64(i.Clients.Blocked))
		gauge(descMaxClients, float64(i.Clients.MaxClients))
		counter(descRejected, i.Stats.RejectedConnections)
		gauge(descRDBLastSaveOK, boolValue(i.Persistence.RDBLastSaveOK))
		gauge(descRDBChanges, float64(i.Persistence.RDBChangesSinceLastSave))
		if i.Persistence.AOFEnabled {
			gauge(descAOFLastWriteOK, boolValue(i.Persistence.AOFLastWriteOK))
			gauge(descAOFLastRewriteOK, boolValue(i.Persistence.AOFLastRewriteOK))
		}
		if !n.Primary {
			gauge(descReplicaLinkUp, boolValue(i.Replication.LinkUp))
			if lag, ok := s.Lag[n.Name]; ok {
				gauge(descReplicationLag, float64(lag))
			}
		}
	}
}
