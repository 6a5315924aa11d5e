// Package redishealth decides, from the INFO snapshots of a Redis Cluster's
// nodes, what the operator reports and does about them: the health
// conditions (one decision function each), the status summary, the
// sidecars' connection budget and which nodes a maintenance window
// restarts.
//
// Every function is pure: the inputs are snapshots and thresholds, the
// outputs verdicts, so each decision is table-tested without servers and the
// reconciler only gathers inputs and applies outputs.
package redishealth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
)

// NoShard is Node.Shard for a node that belongs to no shard (a blank node).
const NoShard = -1

// Node is one member as the operator last saw it.
type Node struct {
	// Name is the member's stable name (a pod name).
	Name string
	// Shard numbers the node's shard by the lowest slot it serves (0, 1, …),
	// stable across failovers; NoShard for none.
	Shard int
	// Primary reports the node's role in the cluster (CLUSTER NODES).
	Primary bool
	// Info is the node's INFO; meaningful only when Err is nil.
	Info redisinfo.Info
	// Err says why the node could not be observed.
	Err error
}

// Observed reports whether the node answered.
func (n Node) Observed() bool { return n.Err == nil }

// Role is "primary" or "replica", as metrics label it.
func (n Node) Role() string {
	if n.Primary {
		return "primary"
	}
	return "replica"
}

func (n Node) describe() string {
	if n.Shard == NoShard {
		return n.Name
	}
	return fmt.Sprintf("%s (shard %d)", n.Name, n.Shard)
}

// Thresholds are the limits the conditions compare against
// (spec.thresholds).
type Thresholds struct {
	// MemoryPressure is the share of maxmemory (0-1) a noeviction primary
	// may use.
	MemoryPressure float64
	// Fragmentation is the mem_fragmentation_ratio above which a node
	// counts as fragmented, when it also loses FragmentationMinBytes.
	Fragmentation         float64
	FragmentationMinBytes int64
	// ReplicaLagBytes is how far a replica may trail its primary.
	ReplicaLagBytes int64
}

// DefaultThresholds are the API defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{MemoryPressure: 0.9, Fragmentation: 1.5, FragmentationMinBytes: 100 << 20, ReplicaLagBytes: 1 << 20}
}

// Verdict is the decision for one condition.
type Verdict struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

var (
	notObserved = Verdict{metav1.ConditionUnknown, v1alpha1.ReasonNotObserved, "no node answered"}
	asExpected  = Verdict{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected}
)

func problem(reason string, findings []string) Verdict {
	return Verdict{metav1.ConditionTrue, reason, summarize(findings)}
}

// summarize joins findings, at most five of them, so a message stays
// readable on a large cluster.
func summarize(findings []string) string {
	const most = 5
	if len(findings) <= most {
		return strings.Join(findings, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(findings[:most], "; "), len(findings)-most)
}

func anyObserved(nodes []Node) bool { return slices.ContainsFunc(nodes, Node.Observed) }

// MemoryPressure decides ConditionMemoryPressure: a primary that never
// evicts (maxmemory_policy noeviction, the Durable profile) uses at least
// t.MemoryPressure of maxmemory, counted as Redis counts it before a write.
// Replicas are not judged: they apply what their primary accepted
// (replica-ignore-maxmemory). Cache-profile nodes evict instead, which is
// their job; evicted keys show in the metrics.
func MemoryPressure(nodes []Node, t Thresholds) Verdict {
	if !anyObserved(nodes) {
		return notObserved
	}
	var near, full []string
	for _, n := range nodes {
		m := n.Info.Memory
		if !n.Observed() || !n.Primary || m.Policy != "noeviction" || m.Max <= 0 {
			continue
		}
		used := float64(m.EvictionUsed()) / float64(m.Max)
		finding := fmt.Sprintf("%s uses %.0f%% of maxmemory %s", n.describe(), 100*used, bytes(m.Max))
		switch {
		case used >= 1:
			full = append(full, finding)
		case used >= t.MemoryPressure:
			near = append(near, finding)
		}
	}
	switch {
	case len(full) > 0:
		return problem(v1alpha1.ReasonMaxMemoryReached, append(full, near...)).
			withSuffix("noeviction: writes fail with OOM; raise maxmemory or add shards")
	case len(near) > 0:
		return problem(v1alpha1.ReasonNearMaxMemory, near).
			withSuffix("noeviction: writes fail with OOM at 100%; raise maxmemory or add shards")
	}
	return asExpected
}

func (v Verdict) withSuffix(s string) Verdict {
	v.Message += " (" + s + ")"
	return v
}

// meaningfullyFragmented reports whether a node's ratio counts: above ratio
// and with at least minBytes lost, since an almost empty node's RSS is many
// times its used memory.
func meaningfullyFragmented(n Node, ratio float64, minBytes int64) bool {
	m := n.Info.Memory
	return n.Observed() && m.FragmentationRatio > ratio && m.FragmentationBytes >= minBytes
}

// Fragmented decides ConditionFragmented.
func Fragmented(nodes []Node, t Thresholds) Verdict {
	if !anyObserved(nodes) {
		return notObserved
	}
	var found []string
	for _, n := range nodes {
		if meaningfullyFragmented(n, t.Fragmentation, t.FragmentationMinBytes) {
			m := n.Info.Memory
			found = append(found, fmt.Sprintf("%s: mem_fragmentation_ratio %.2f, %s lost", n.describe(), m.FragmentationRatio, bytes(m.FragmentationBytes)))
		}
	}
	if len(found) > 0 {
		return problem(v1alpha1.ReasonFragmentationHigh, found).
			withSuffix("activedefrag reclaims it where the build supports it; spec.maintenance restarts nodes above its ratio")
	}
	return asExpected
}

// PersistenceFailing decides ConditionPersistenceFailing. A failed AOF
// write is the most serious (acknowledged writes may not be on disk), then
// a failed snapshot (with stop-writes-on-bgsave-error the node refuses
// writes), then a failed AOF rewrite (the file keeps growing).
func PersistenceFailing(nodes []Node) Verdict {
	if !anyObserved(nodes) {
		return notObserved
	}
	var aofWrite, rdb, aofRewrite []string
	for _, n := range nodes {
		if !n.Observed() {
			continue
		}
		p := n.Info.Persistence
		if p.AOFEnabled && !p.AOFLastWriteOK {
			aofWrite = append(aofWrite, n.describe()+": the last AOF write failed")
		}
		if !p.RDBLastSaveOK {
			rdb = append(rdb, n.describe()+": the last RDB snapshot failed")
		}
		if p.AOFEnabled && !p.AOFLastRewriteOK {
			aofRewrite = append(aofRewrite, n.describe()+": the last AOF rewrite failed")
		}
	}
	all := slices.Concat(aofWrite, rdb, aofRewrite)
	switch {
	case len(aofWrite) > 0:
		return problem(v1alpha1.ReasonAOFWriteFailed, all)
	case len(rdb) > 0:
		return problem(v1alpha1.ReasonRDBSaveFailed, all)
	case len(aofRewrite) > 0:
		return problem(v1alpha1.ReasonAOFRewriteFailed, all)
	}
	return asExpected
}

// ReplicaLag is, for each observed replica whose primary (the primary of
// its shard) was observed too, how many bytes of the replication stream it
// has not applied yet. Both offsets are read in the same observation, so
// under write load a small lag is sampling, not trouble.
func ReplicaLag(nodes []Node) map[string]int64 {
	primaries := map[int]Node{}
	for _, n := range nodes {
		if n.Observed() && n.Primary && n.Shard != NoShard {
			primaries[n.Shard] = n
		}
	}
	lag := map[string]int64{}
	for _, n := range nodes {
		p, ok := primaries[n.Shard]
		if !n.Observed() || n.Primary || !ok {
			continue
		}
		lag[n.Name] = max(0, p.Info.Replication.Offset-n.Info.Replication.ReplicaOffset)
	}
	return lag
}

// ReplicaLagging decides ConditionReplicaLagging: a replica whose link to
// its primary is down (or still in its first full sync), or that trails by
// more than t.ReplicaLagBytes. Replicas of an unreachable primary are left
// to Degraded.
func ReplicaLagging(nodes []Node, t Thresholds) Verdict {
	if !anyObserved(nodes) {
		return notObserved
	}
	lag := ReplicaLag(nodes)
	var down, syncing, behind []string
	for _, n := range nodes {
		l, ok := lag[n.Name]
		if !ok {
			continue
		}
		r := n.Info.Replication
		switch {
		case r.SyncInProgress:
			syncing = append(syncing, n.describe()+": full sync from its primary in progress")
		case !r.LinkUp:
			down = append(down, n.describe()+": link to its primary is down")
		case l > t.ReplicaLagBytes:
			behind = append(behind, fmt.Sprintf("%s is %s behind its primary", n.describe(), bytes(l)))
		}
	}
	all := slices.Concat(down, syncing, behind)
	switch {
	case len(down) > 0:
		return problem(v1alpha1.ReasonReplicaLinkDown, all)
	case len(syncing) > 0:
		return problem(v1alpha1.ReasonReplicaSyncing, all)
	case len(behind) > 0:
		return problem(v1alpha1.ReasonReplicaBehind, all)
	}
	return asExpected
}

// bytes formats n in binary units, as kubectl shows quantities.
func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Look is what one observation of a cluster leaves for the next: each
// process's rejected_connections, by run_id, so a restarted process (new
// run_id, counter back at zero) is not mistaken for a decrease.
type Look struct {
	At       time.Time
	Rejected map[string]int64
}

// Rejections is what the nodes refused since the previous look.
type Rejections struct {
	// ByNode counts refused connections per node name (only nodes that
	// refused any).
	ByNode map[string]int64
	// Total is the sum of ByNode.
	Total int64
	// Refused names nodes that refused the operator's own connection for
	// maxclients: they could not even be observed.
	Refused []string
}

// maxClientsReached begins Redis' refusal (networking.c): "max number of
// clients reached", or in cluster mode "max number of clients + cluster
// connections reached".
const maxClientsReached = "max number of clients"

// RejectedSince compares nodes with the previous look (nil after the
// operator started: nothing is counted then, as the counters' earlier part
// cannot be told from what is new) and returns the rejections and the look
// to keep for next time. A process the previous look did not know, and
// that started after it, had a counter of zero then: all it counts is new.
func RejectedSince(prev *Look, nodes []Node, now time.Time) (Rejections, Look) {
	next := Look{At: now, Rejected: map[string]int64{}}
	r := Rejections{ByNode: map[string]int64{}}
	for _, n := range nodes {
		if !n.Observed() {
			if strings.Contains(n.Err.Error(), maxClientsReached) {
				r.Refused = append(r.Refused, n.Name)
			}
			continue
		}
		id, count := n.Info.Server.RunID, n.Info.Stats.RejectedConnections
		next.Rejected[id] = count
		if prev == nil {
			continue
		}
		var delta int64
		if before, seen := prev.Rejected[id]; seen {
			delta = count - before
		} else if started(n, now).After(prev.At) {
			delta = count
		}
		if delta > 0 {
			r.ByNode[n.Name] += delta
			r.Total += delta
		}
	}
	return r, next
}

// ClientsRejected decides ConditionClientsRejected from RejectedSince.
func ClientsRejected(nodes []Node, r Rejections) Verdict {
	if !anyObserved(nodes) && len(r.Refused) == 0 {
		return notObserved
	}
	var found []string
	for _, name := range r.Refused {
		found = append(found, name+" refused the operator's connection: maxclients reached")
	}
	for _, n := range nodes {
		if c := r.ByNode[n.Name]; c > 0 {
			found = append(found, fmt.Sprintf("%s refused %d connections (maxclients %d)", n.describe(), c, n.Info.Clients.MaxClients))
		}
	}
	if len(found) > 0 {
		return problem(v1alpha1.ReasonMaxClientsReached, found).withSuffix("since the previous observation")
	}
	return asExpected
}

// Summary is the compact per-cluster figure set of status.health.
type Summary struct {
	// MemoryUsed and MemoryMax sum used_memory and maxmemory over the
	// observed primaries.
	MemoryUsed, MemoryMax int64
	// MemoryUsedPercent is the fullest primary's EvictionUsed / maxmemory;
	// HasMemoryPercent is false when no primary has a maxmemory.
	MemoryUsedPercent int
	HasMemoryPercent  bool
	// MaxFragmentation is the highest mem_fragmentation_ratio of any node.
	MaxFragmentation float64
	// HitRatio is hits / (hits + misses) over the primaries; HasHitRatio is
	// false before the first lookup.
	HitRatio    float64
	HasHitRatio bool
	// MaxClients is the lowest maxclients of any node (0: none observed).
	MaxClients int64
}

// Summarize computes the Summary of the observed nodes.
func Summarize(nodes []Node) Summary {
	var s Summary
	var hits, misses int64
	for _, n := range nodes {
		if !n.Observed() {
			continue
		}
		i := n.Info
		s.MaxFragmentation = max(s.MaxFragmentation, i.Memory.FragmentationRatio)
		if mc := i.Clients.MaxClients; mc > 0 && (s.MaxClients == 0 || mc < s.MaxClients) {
			s.MaxClients = mc
		}
		if !n.Primary {
			continue
		}
		s.MemoryUsed += i.Memory.Used
		s.MemoryMax += i.Memory.Max
		hits += i.Stats.KeyspaceHits
		misses += i.Stats.KeyspaceMisses
		if i.Memory.Max > 0 {
			pct := int(100 * i.Memory.EvictionUsed() / i.Memory.Max)
			s.MemoryUsedPercent, s.HasMemoryPercent = max(s.MemoryUsedPercent, pct), true
		}
	}
	if hits+misses > 0 {
		s.HitRatio, s.HasHitRatio = float64(hits)/float64(hits+misses), true
	}
	return s
}
