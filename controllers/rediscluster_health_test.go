package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
)

func infoWith(f func(*redisinfo.Info)) redisinfo.Info {
	var i redisinfo.Info
	i.Persistence = redisinfo.Persistence{RDBLastSaveOK: true, AOFLastWriteOK: true, AOFLastRewriteOK: true}
	i.Memory.Policy = "noeviction"
	f(&i)
	return i
}

func TestRedisClusterHealthConditions(t *testing.T) {
	healthy := rediscluster.Health{ClusterOK: true, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots,
		Shards: 3, ReadyNodes: 6, Converged: true}
	spec := rediscluster.Spec{Shards: 3, ReplicasPerShard: 1}
	full := infoWith(func(i *redisinfo.Info) {
		i.Memory.Used, i.Memory.Max = 95<<20, 100<<20
		i.Memory.FragmentationRatio = 1.2
		i.Stats.KeyspaceHits, i.Stats.KeyspaceMisses = 3, 1
		i.Clients.Connected, i.Clients.MaxClients = 12, 10000
	})
	calm := infoWith(func(i *redisinfo.Info) {
		i.Memory.Used, i.Memory.Max = 10<<20, 100<<20
		i.Memory.FragmentationRatio = 4.5
		i.Clients.Connected, i.Clients.MaxClients = 3, 10000
		i.Replication.LinkUp = true
	})
	type cond struct{ Status, Reason string }
	tests := []struct {
		name        string
		obs         redisObservation
		wantConds   map[string]cond
		wantHealth  *v1alpha1.RedisClusterHealth
		wantPool    int32
		wantRequeue time.Duration
	}{{
		name: "healthy and quiet",
		obs: redisObservation{Members: 2, Health: &healthy, Thresholds: redishealth.DefaultThresholds(),
			Nodes:       []redishealth.Node{{Name: "a", Shard: 0, Primary: true, Info: calm}, {Name: "b", Shard: 0, Info: calm}},
			BudgetInput: redishealth.BudgetInput{PoolSize: 20}, Budget: redishealth.Budget{PoolSize: 20, Available: 9957},
			ActiveDefrag: "Unsupported"},
		wantConds: map[string]cond{
			"MemoryPressure": {"False", "AsExpected"}, "Fragmented": {"False", "AsExpected"}, "PersistenceFailing": {"False", "AsExpected"},
			"ClientsRejected": {"False", "AsExpected"}, "ReplicaLagging": {"False", "AsExpected"}, "ConnectionBudget": {"False", "AsExpected"},
		},
		wantHealth: &v1alpha1.RedisClusterHealth{MemoryUsedPercent: new(int32(10)), MemoryUsed: resource.NewQuantity(10<<20, resource.BinarySI),
			MemoryMax: resource.NewQuantity(100<<20, resource.BinarySI), MaxFragmentationRatio: "4.50", ActiveDefrag: "Unsupported"},
		wantPool: 20, wantRequeue: monitorQuiet,
	}, {
		name: "a full noeviction primary, rejected clients and a capped budget",
		obs: redisObservation{Members: 2, Health: &healthy, Thresholds: redishealth.DefaultThresholds(),
			Nodes:       []redishealth.Node{{Name: "a", Shard: 0, Primary: true, Info: full}, {Name: "b", Shard: 0, Info: calm}},
			Rejections:  redishealth.Rejections{ByNode: map[string]int64{"b": 4}, Total: 4},
			BudgetInput: redishealth.BudgetInput{Sidecars: 1000, PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1},
			Budget:      redishealth.PlanBudget(redishealth.BudgetInput{Sidecars: 1000, PoolSize: 20, MaxClients: 10000, Nodes: 6, ReplicasPerShard: 1})},
		wantConds: map[string]cond{
			"MemoryPressure": {"True", v1alpha1.ReasonNearMaxMemory}, "Fragmented": {"False", "AsExpected"}, "PersistenceFailing": {"False", "AsExpected"},
			"ClientsRejected": {"True", v1alpha1.ReasonMaxClientsReached}, "ReplicaLagging": {"False", "AsExpected"},
			"ConnectionBudget": {"True", v1alpha1.ReasonPoolSizeCapped},
		},
		wantHealth: &v1alpha1.RedisClusterHealth{MemoryUsedPercent: new(int32(95)), MemoryUsed: resource.NewQuantity(95<<20, resource.BinarySI),
			MemoryMax: resource.NewQuantity(100<<20, resource.BinarySI), MaxFragmentationRatio: "4.50", KeyspaceHitRatio: "0.75",
			RejectedConnections: 4},
		wantPool: 7, wantRequeue: monitorWatchful,
	}, {
		name: "no node answers: Unknown, and the last summary stays",
		obs: redisObservation{Members: 2, Thresholds: redishealth.DefaultThresholds(),
			Nodes:  []redishealth.Node{{Name: "a", Shard: redishealth.NoShard, Err: errors.New("refused")}},
			Budget: redishealth.Budget{PoolSize: 20}},
		wantConds: map[string]cond{
			"MemoryPressure": {"Unknown", "NotObserved"}, "Fragmented": {"Unknown", "NotObserved"}, "PersistenceFailing": {"Unknown", "NotObserved"},
			"ClientsRejected": {"Unknown", "NotObserved"}, "ReplicaLagging": {"Unknown", "NotObserved"}, "ConnectionBudget": {"False", "AsExpected"},
		},
		wantHealth: &v1alpha1.RedisClusterHealth{MaxFragmentationRatio: "9.99"},
		wantPool:   20, wantRequeue: 10 * time.Second,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.obs.Generation, tt.obs.Spec = 3, spec
			cur := v1alpha1.RedisClusterStatus{SlotsAssigned: rediscluster.Slots, Health: &v1alpha1.RedisClusterHealth{MaxFragmentationRatio: "9.99"}}
			got := redisClusterStatus(cur, tt.obs)
			conds := map[string]cond{}
			for _, typ := range healthConditions {
				if c := meta.FindStatusCondition(got.Conditions, typ); c != nil {
					conds[typ] = cond{string(c.Status), c.Reason}
				}
			}
			if diff := cmp.Diff(tt.wantConds, conds); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantHealth, got.Health); diff != "" {
				t.Errorf("status.health (-want +got):\n%s", diff)
			}
			if got.SidecarPoolSize != tt.wantPool {
				t.Errorf("sidecarPoolSize = %d, want %d", got.SidecarPoolSize, tt.wantPool)
			}
			if r := redisRequeue(tt.obs); r != tt.wantRequeue {
				t.Errorf("requeue = %s, want %s", r, tt.wantRequeue)
			}
			// A second reconcile of the same cluster writes nothing.
			if diff := cmp.Diff(got, redisClusterStatus(got, tt.obs)); diff != "" {
				t.Errorf("status not stable (-first +second):\n%s", diff)
			}
		})
	}
}

func TestMonitorRequeue(t *testing.T) {
	now := time.Date(2026, 12, 5, 1, 59, 30, 0, time.UTC)
	healthy := rediscluster.Health{Converged: true}
	filling := infoWith(func(i *redisinfo.Info) { i.Memory.Used, i.Memory.Max = 80, 100 })
	tests := []struct {
		name string
		obs  redisObservation
		want time.Duration
	}{
		{"quiet", redisObservation{Members: 1, Health: &healthy}, monitorQuiet},
		{"memory filling, before MemoryPressure", redisObservation{Members: 1, Health: &healthy, Thresholds: redishealth.DefaultThresholds(),
			Nodes: []redishealth.Node{{Name: "a", Primary: true, Info: filling}}}, monitorWatchful},
		{"maintenance under way", redisObservation{Members: 1, Health: &healthy, Now: now,
			Maintenance: &maintenanceObservation{Open: true, Pending: []string{"a"}}}, monitorMaintenance},
		{"the window opens in 30s", redisObservation{Members: 1, Health: &healthy, Now: now,
			Maintenance: &maintenanceObservation{Next: now.Add(30 * time.Second)}}, 30 * time.Second},
		{"the window opens next week", redisObservation{Members: 1, Health: &healthy, Now: now,
			Maintenance: &maintenanceObservation{Next: now.Add(7 * 24 * time.Hour)}}, monitorQuiet},
		{"open, nothing to do", redisObservation{Members: 1, Health: &healthy, Now: now,
			Maintenance: &maintenanceObservation{Open: true, Next: now.Add(7 * 24 * time.Hour)}}, monitorQuiet},
		{"converging is sooner still", redisObservation{Members: 1, Health: &rediscluster.Health{Problems: []string{"x"}}}, 2 * time.Second},
		{"nothing to watch without members", redisObservation{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redisRequeue(tt.obs); got != tt.want {
				t.Errorf("redisRequeue = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMaintenanceStatusAndProgressing(t *testing.T) {
	healthy := rediscluster.Health{ClusterOK: true, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots, Shards: 3, ReadyNodes: 6, Converged: true}
	next := time.Date(2026, 12, 12, 2, 0, 0, 0, time.UTC)
	restart := &v1alpha1.RedisNodeRestart{Node: "n3", Time: metav1.NewTime(next.Add(-time.Hour)), FragmentationRatio: "2.40"}
	obs := redisObservation{Generation: 1, Members: 6, Health: &healthy, Spec: rediscluster.Spec{Shards: 3, ReplicasPerShard: 1},
		Maintenance: &maintenanceObservation{Open: true, Next: next, Pending: []string{"n0", "n4"}, Restarted: restart, Wait: "replica n3 is 10 bytes behind"}}
	got := redisClusterStatus(v1alpha1.RedisClusterStatus{}, obs)
	want := &v1alpha1.RedisMaintenanceStatus{WindowOpen: true, NextWindow: new(metav1.NewTime(next)), Pending: []string{"n0", "n4"}, LastRestart: restart}
	if diff := cmp.Diff(want, got.Maintenance); diff != "" {
		t.Errorf("status.maintenance (-want +got):\n%s", diff)
	}
	p := meta.FindStatusCondition(got.Conditions, v1alpha1.ConditionProgressing)
	if p == nil || p.Status != metav1.ConditionTrue || p.Reason != v1alpha1.ReasonMaintenanceRestart {
		t.Fatalf("Progressing = %+v, want True/MaintenanceRestart", p)
	}
	if want := "pending: n0, n4; waiting: replica n3 is 10 bytes behind"; !strings.Contains(p.Message, want) {
		t.Errorf("Progressing message %q lacks %q", p.Message, want)
	}

	// The window closes: the last restart stays on record.
	obs.Maintenance = &maintenanceObservation{Next: next}
	got = redisClusterStatus(got, obs)
	if got.Maintenance.LastRestart == nil || got.Maintenance.LastRestart.Node != "n3" || got.Maintenance.WindowOpen {
		t.Errorf("after the window: %+v", got.Maintenance)
	}
	if p := meta.FindStatusCondition(got.Conditions, v1alpha1.ConditionProgressing); p.Status != metav1.ConditionFalse {
		t.Errorf("Progressing = %s after the window", p.Status)
	}
}

func TestHealthNodesNumberShardsByLowestSlot(t *testing.T) {
	span := func(lo, hi int) []int {
		var out []int
		for s := lo; s <= hi; s++ {
			out = append(out, s)
		}
		return out
	}
	member := func(name, id string) rediscluster.MemberState {
		return rediscluster.MemberState{Member: rediscluster.Member{Name: name}, ID: id}
	}
	s := &rediscluster.State{
		Members: []rediscluster.MemberState{member("m0", "p-high"), member("m1", "p-low"), member("m2", "r-low"),
			{Member: rediscluster.Member{Name: "m3"}, Err: errors.New("refused")}, member("m4", "blank")},
		Nodes: map[string]rediscluster.Entry{
			"p-high": {ID: "p-high", Primary: true, Slots: span(8192, 16383)},
			"p-low":  {ID: "p-low", Primary: true, Slots: span(0, 8191)},
			"r-low":  {ID: "r-low", PrimaryID: "p-low"},
			"blank":  {ID: "blank", Primary: true},
		},
	}
	type node struct {
		Name    string
		Shard   int
		Primary bool
		Err     bool
	}
	var got []node
	for _, n := range healthNodes(s) {
		got = append(got, node{n.Name, n.Shard, n.Primary, n.Err != nil})
	}
	want := []node{{"m0", 1, true, false}, {"m1", 0, true, false}, {"m2", 0, false, false}, {"m3", redishealth.NoShard, false, true}, {"m4", redishealth.NoShard, true, false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("healthNodes (-want +got):\n%s", diff)
	}
}

func TestDefragStatus(t *testing.T) {
	tests := []struct {
		want      string
		processes map[string]processSettings
		expected  string
	}{
		{defragOff, map[string]processSettings{"a": {defrag: defragOn}}, "Disabled"},
		{defragOn, nil, ""},
		{defragOn, map[string]processSettings{"a": {defrag: defragOn}, "b": {defrag: defragOn}}, "Enabled"},
		{defragOn, map[string]processSettings{"a": {defrag: defragOn}, "b": {defrag: ""}}, ""},
		{defragOn, map[string]processSettings{"a": {defrag: defragOn}, "b": {defrag: defragUnsupported}}, "Unsupported"},
	}
	for _, tt := range tests {
		if got := defragStatus(tt.want, tt.processes); got != tt.expected {
			t.Errorf("defragStatus(%s, %v) = %q, want %q", tt.want, tt.processes, got, tt.expected)
		}
	}
}

func TestMaintenanceWindowFromSpec(t *testing.T) {
	w, err := maintenanceWindow(&v1alpha1.RedisMaintenance{Days: []v1alpha1.Weekday{"Saturday", "Sunday"}, Start: "02:30",
		Duration: &metav1.Duration{Duration: 90 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	want := redishealth.Window{Days: []time.Weekday{time.Saturday, time.Sunday}, Start: 150 * time.Minute, Duration: 90 * time.Minute}
	if diff := cmp.Diff(want, w); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if w, _ := maintenanceWindow(&v1alpha1.RedisMaintenance{Start: "00:00"}); w.Duration != 2*time.Hour || len(w.Days) != 0 {
		t.Errorf("defaults: %+v", w)
	}
}
