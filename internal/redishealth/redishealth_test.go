package redishealth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
)

// captured parses one of the INFO replies redisinfo's tests captured from
// real servers, so the decisions are also tried on what Redis really says.
func captured(t *testing.T, file string) redisinfo.Info {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "redisinfo", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	info, err := redisinfo.Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func primary(name string, shard int, i redisinfo.Info) Node {
	return Node{Name: name, Shard: shard, Primary: true, Info: i}
}

func replica(name string, shard int, i redisinfo.Info) Node {
	return Node{Name: name, Shard: shard, Info: i}
}

var down = Node{Name: "gone", Shard: NoShard, Err: errors.New("dial tcp: connection refused")}

func memory(used, max int64, policy string) redisinfo.Info {
	var i redisinfo.Info
	i.Memory = redisinfo.Memory{Used: used, Max: max, Policy: policy}
	return i
}

// check compares a verdict's status and reason, and that its message
// mentions every want string.
func check(t *testing.T, got Verdict, status metav1.ConditionStatus, reason string, mentions ...string) {
	t.Helper()
	if got.Status != status || got.Reason != reason {
		t.Fatalf("verdict %s/%s (%q), want %s/%s", got.Status, got.Reason, got.Message, status, reason)
	}
	for _, m := range mentions {
		if !strings.Contains(got.Message, m) {
			t.Errorf("message %q does not mention %q", got.Message, m)
		}
	}
}

// verdictCase is one row of a decision function's table.
type verdictCase struct {
	name     string
	nodes    []Node
	status   metav1.ConditionStatus
	reason   string
	mentions []string
}

func runVerdicts(t *testing.T, tests []verdictCase, decide func([]Node) Verdict) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, decide(tt.nodes), tt.status, tt.reason, tt.mentions...) })
	}
}

func TestMemoryPressure(t *testing.T) {
	th := DefaultThresholds()
	const mib = 1 << 20
	tests := []verdictCase{
		{"nothing observed", []Node{down}, metav1.ConditionUnknown, v1alpha1.ReasonNotObserved, nil},
		{"no maxmemory", []Node{primary("a", 0, memory(900*mib, 0, "noeviction"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"below the threshold", []Node{primary("a", 0, memory(89*mib, 100*mib, "noeviction"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"at the threshold", []Node{primary("a", 0, memory(90*mib, 100*mib, "noeviction"))},
			metav1.ConditionTrue, v1alpha1.ReasonNearMaxMemory, []string{"a (shard 0) uses 90% of maxmemory 100.0MiB", "writes fail with OOM at 100%"}},
		{"an evicting cluster is doing its job", []Node{primary("a", 0, memory(100*mib, 100*mib, "allkeys-lru"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"a volatile policy never evicts keys without a TTL but still evicts", []Node{primary("a", 0, memory(99*mib, 100*mib, "volatile-lru"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"replicas ignore maxmemory", []Node{replica("b", 0, memory(100*mib, 100*mib, "noeviction"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"buffers Redis does not count", []Node{primary("a", 0, func() redisinfo.Info {
			i := memory(95*mib, 100*mib, "noeviction")
			i.Memory.NotCountedForEvict = 10 * mib // AOF and replication buffers
			return i
		}())}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"full: writes fail now", []Node{primary("a", 0, memory(95*mib, 100*mib, "noeviction")), primary("c", 2, memory(101*mib, 100*mib, "noeviction")), down},
			metav1.ConditionTrue, v1alpha1.ReasonMaxMemoryReached, []string{"c (shard 2) uses 101%", "a (shard 0) uses 95%"}},
		{"captured: a noeviction node refusing writes with OOM", []Node{primary("durable-0", 0, captured(t, "noeviction-full.txt"))},
			metav1.ConditionTrue, v1alpha1.ReasonMaxMemoryReached, []string{"durable-0 (shard 0) uses 100% of maxmemory 3.0MiB"}},
		{"captured: an allkeys-lru node evicting", []Node{primary("cache-0", 0, captured(t, "allkeys-lru-evicting.txt"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
	}
	runVerdicts(t, tests, func(nodes []Node) Verdict { return MemoryPressure(nodes, th) })
}

func fragmented(ratio float64, lost int64) redisinfo.Info {
	var i redisinfo.Info
	i.Memory.FragmentationRatio, i.Memory.FragmentationBytes = ratio, lost
	return i
}

func TestFragmented(t *testing.T) {
	th := DefaultThresholds()
	tests := []verdictCase{
		{"nothing observed", []Node{down}, metav1.ConditionUnknown, v1alpha1.ReasonNotObserved, nil},
		{"healthy", []Node{primary("a", 0, fragmented(1.1, 200<<20))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"exactly 1.5 is not above it", []Node{primary("a", 0, fragmented(1.5, 500<<20))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"high ratio on a nearly empty node means nothing", []Node{primary("a", 0, fragmented(13.6, 11<<20))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"captured: an empty server", []Node{primary("a", 0, captured(t, "standalone-empty.txt"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"fragmented replica", []Node{primary("a", 0, fragmented(1.2, 300<<20)), replica("b", 0, fragmented(2.31, 2<<30))},
			metav1.ConditionTrue, v1alpha1.ReasonFragmentationHigh, []string{"b (shard 0): mem_fragmentation_ratio 2.31, 2.0GiB lost"}},
	}
	runVerdicts(t, tests, func(nodes []Node) Verdict { return Fragmented(nodes, th) })
	t.Run("a lowered minimum counts the empty server", func(t *testing.T) {
		low := th
		low.FragmentationMinBytes = 0
		check(t, Fragmented([]Node{primary("a", 0, captured(t, "standalone-empty.txt"))}, low), metav1.ConditionTrue, v1alpha1.ReasonFragmentationHigh, "13.62")
	})
}

func persistence(rdbOK, aof, aofWriteOK, aofRewriteOK bool) redisinfo.Info {
	var i redisinfo.Info
	i.Persistence = redisinfo.Persistence{RDBLastSaveOK: rdbOK, AOFEnabled: aof, AOFLastWriteOK: aofWriteOK, AOFLastRewriteOK: aofRewriteOK}
	return i
}

func TestPersistenceFailing(t *testing.T) {
	// A failed AOF write is a real capture's line changed from ok to err:
	// it needs a failing disk (ENOSPC, EIO) that a test cannot arrange.
	aofWriteFailing := captured(t, "persistence-failing.txt")
	aofWriteFailing.Persistence.AOFLastWriteOK = false
	tests := []verdictCase{
		{"nothing observed", []Node{down}, metav1.ConditionUnknown, v1alpha1.ReasonNotObserved, nil},
		{"captured: healthy primary", []Node{primary("a", 0, captured(t, "cluster-primary.txt"))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"AOF status is moot with AOF off", []Node{primary("a", 0, persistence(true, false, false, false))}, metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil},
		{"captured: snapshot and AOF rewrite failed", []Node{primary("a", 0, captured(t, "persistence-failing.txt"))},
			metav1.ConditionTrue, v1alpha1.ReasonRDBSaveFailed, []string{"a (shard 0): the last RDB snapshot failed", "the last AOF rewrite failed"}},
		{"AOF rewrite only", []Node{replica("b", 1, persistence(true, true, true, false))}, metav1.ConditionTrue, v1alpha1.ReasonAOFRewriteFailed, []string{"b (shard 1)"}},
		{"an AOF write failing outranks the rest", []Node{primary("a", 0, captured(t, "persistence-failing.txt")), primary("c", 1, aofWriteFailing)},
			metav1.ConditionTrue, v1alpha1.ReasonAOFWriteFailed, []string{"c (shard 1): the last AOF write failed", "a (shard 0): the last RDB snapshot failed"}},
	}
	runVerdicts(t, tests, PersistenceFailing)
}

func repl(role redisinfo.Role, offset, replicaOffset int64, linkUp, syncing bool) redisinfo.Info {
	var i redisinfo.Info
	i.Replication = redisinfo.Replication{Role: role, Offset: offset, ReplicaOffset: replicaOffset, LinkUp: linkUp, SyncInProgress: syncing}
	return i
}

func TestReplicaLagging(t *testing.T) {
	th := DefaultThresholds()
	p := primary("p", 0, repl(redisinfo.RolePrimary, 10<<20, 0, false, false))
	tests := []struct {
		name     string
		nodes    []Node
		status   metav1.ConditionStatus
		reason   string
		mentions []string
		lag      map[string]int64
	}{
		{"nothing observed", []Node{down}, metav1.ConditionUnknown, v1alpha1.ReasonNotObserved, nil, map[string]int64{}},
		{"caught up", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 10<<20, 10<<20, true, false))},
			metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil, map[string]int64{"r": 0}},
		{"within the threshold", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 0, 9<<20, true, false))},
			metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil, map[string]int64{"r": 1 << 20}},
		{"behind", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 0, 7<<20, true, false))},
			metav1.ConditionTrue, v1alpha1.ReasonReplicaBehind, []string{"r (shard 0) is 3.0MiB behind its primary"}, map[string]int64{"r": 3 << 20}},
		{"sampled after its primary: never negative", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 0, 11<<20, true, false))},
			metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil, map[string]int64{"r": 0}},
		{"syncing", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 0, 0, false, true))},
			metav1.ConditionTrue, v1alpha1.ReasonReplicaSyncing, []string{"full sync"}, map[string]int64{"r": 10 << 20}},
		{"link down outranks the rest", []Node{p, replica("r", 0, repl(redisinfo.RoleReplica, 0, 0, false, true)), replica("s", 0, repl(redisinfo.RoleReplica, 0, 0, false, false))},
			metav1.ConditionTrue, v1alpha1.ReasonReplicaLinkDown, []string{"s (shard 0): link to its primary is down", "r (shard 0): full sync"}, map[string]int64{"r": 10 << 20, "s": 10 << 20}},
		{"the primary is unreachable: left to Degraded", []Node{replica("r", 0, repl(redisinfo.RoleReplica, 0, 0, false, false)), {Name: "p", Shard: 0, Primary: true, Err: errors.New("timeout")}},
			metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil, map[string]int64{}},
		{"captured: synced replica and its primary", []Node{primary("p", 0, captured(t, "cluster-primary.txt")), replica("r", 0, captured(t, "cluster-replica.txt"))},
			metav1.ConditionFalse, v1alpha1.ReasonAsExpected, nil, map[string]int64{"r": 0}},
		{"captured: the replica after its primary died (reads the last primary figures)", []Node{primary("p", 0, captured(t, "cluster-primary.txt")), replica("r", 0, captured(t, "replica-link-down.txt"))},
			metav1.ConditionTrue, v1alpha1.ReasonReplicaLinkDown, []string{"r (shard 0)"}, map[string]int64{"r": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, ReplicaLagging(tt.nodes, th), tt.status, tt.reason, tt.mentions...)
			if diff := cmp.Diff(tt.lag, ReplicaLag(tt.nodes)); diff != "" {
				t.Errorf("ReplicaLag (-want +got):\n%s", diff)
			}
		})
	}
}

func rejected(runID string, uptime, count int64) redisinfo.Info {
	var i redisinfo.Info
	i.Server.RunID, i.Server.UptimeSeconds = runID, uptime
	i.Stats.RejectedConnections, i.Clients.MaxClients = count, 100
	return i
}

func TestRejectedSinceAndClientsRejected(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	prev := &Look{At: t0, Rejected: map[string]int64{"run-a": 5, "run-b": 7}}
	tests := []struct {
		name      string
		prev      *Look
		nodes     []Node
		want      Rejections
		status    metav1.ConditionStatus
		reason    string
		mentions  []string
		wantNextB int64
	}{
		{
			name:  "first look after the operator started: nothing can be counted",
			prev:  nil,
			nodes: []Node{primary("a", 0, rejected("run-a", 3600, 5))},
			want:  Rejections{ByNode: map[string]int64{}}, status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			name:  "no new rejections",
			prev:  prev,
			nodes: []Node{primary("a", 0, rejected("run-a", 3600, 5)), replica("b", 0, rejected("run-b", 3600, 7))},
			want:  Rejections{ByNode: map[string]int64{}}, status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected, wantNextB: 7,
		},
		{
			name:  "new rejections on one node",
			prev:  prev,
			nodes: []Node{primary("a", 0, rejected("run-a", 3600, 12)), replica("b", 0, rejected("run-b", 3600, 7))},
			want:  Rejections{ByNode: map[string]int64{"a": 7}, Total: 7}, status: metav1.ConditionTrue, reason: v1alpha1.ReasonMaxClientsReached,
			mentions: []string{"a (shard 0) refused 7 connections (maxclients 100)"}, wantNextB: 7,
		},
		{
			name:  "a process that restarted since the last look: all it counts is new",
			prev:  prev,
			nodes: []Node{primary("a", 0, rejected("run-a2", 30, 3))},
			want:  Rejections{ByNode: map[string]int64{"a": 3}, Total: 3}, status: metav1.ConditionTrue, reason: v1alpha1.ReasonMaxClientsReached,
		},
		{
			name:  "an unknown process older than the last look (a member added back): not counted",
			prev:  prev,
			nodes: []Node{primary("a", 0, rejected("run-c", 3600, 40))},
			want:  Rejections{ByNode: map[string]int64{}}, status: metav1.ConditionFalse, reason: v1alpha1.ReasonAsExpected,
		},
		{
			name:  "the operator itself refused",
			prev:  prev,
			nodes: []Node{{Name: "b", Shard: 0, Err: errors.New("observe b: ERR max number of clients reached")}},
			want:  Rejections{ByNode: map[string]int64{}, Refused: []string{"b"}}, status: metav1.ConditionTrue, reason: v1alpha1.ReasonMaxClientsReached,
			mentions: []string{"b refused the operator's connection"},
		},
		{
			name:  "the operator itself refused by a cluster-mode node",
			prev:  prev,
			nodes: []Node{{Name: "c", Shard: 0, Err: errors.New("observe c: ERR max number of clients + cluster connections reached")}},
			want:  Rejections{ByNode: map[string]int64{}, Refused: []string{"c"}}, status: metav1.ConditionTrue, reason: v1alpha1.ReasonMaxClientsReached,
			mentions: []string{"c refused the operator's connection"},
		},
		{
			name:  "unreachable for another reason",
			prev:  prev,
			nodes: []Node{down},
			want:  Rejections{ByNode: map[string]int64{}}, status: metav1.ConditionUnknown, reason: v1alpha1.ReasonNotObserved,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next := RejectedSince(tt.prev, tt.nodes, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("RejectedSince (-want +got):\n%s", diff)
			}
			if !next.At.Equal(now) {
				t.Errorf("next look at %v, want %v", next.At, now)
			}
			if tt.wantNextB != 0 && next.Rejected["run-b"] != tt.wantNextB {
				t.Errorf("next look keeps run-b = %d, want %d", next.Rejected["run-b"], tt.wantNextB)
			}
			check(t, ClientsRejected(tt.nodes, got), tt.status, tt.reason, tt.mentions...)
		})
	}
}

func TestRejectedSinceCapturedNode(t *testing.T) {
	// The captured node refused 5 connections; a look taken before that
	// process started counts all 5.
	info := captured(t, "maxclients-rejected.txt")
	now := time.UnixMicro(info.Server.TimeMicros)
	got, _ := RejectedSince(&Look{At: now.Add(-time.Hour), Rejected: map[string]int64{}}, []Node{primary("m", 0, info)}, now)
	if got.Total != 5 {
		t.Errorf("Total = %d, want 5", got.Total)
	}
	check(t, ClientsRejected([]Node{primary("m", 0, info)}, got), metav1.ConditionTrue, v1alpha1.ReasonMaxClientsReached, "maxclients 2")
}

func TestSummarize(t *testing.T) {
	p0 := captured(t, "cluster-primary.txt")
	r0 := captured(t, "cluster-replica.txt")
	full := captured(t, "noeviction-full.txt")
	got := Summarize([]Node{primary("p0", 0, p0), replica("r0", 0, r0), primary("p1", 1, full), down})
	want := Summary{
		MemoryUsed: 1973728 + 3148096, MemoryMax: 3145728,
		MemoryUsedPercent: 100, HasMemoryPercent: true,
		MaxFragmentation: 7.09, // the replica's
		HitRatio:         200.0 / 260, HasHitRatio: true,
		MaxClients: 10000,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Summarize (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Summary{}, Summarize([]Node{down})); diff != "" {
		t.Errorf("Summarize of nothing observed (-want +got):\n%s", diff)
	}
}
