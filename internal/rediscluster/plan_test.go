package rediscluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseNodes(t *testing.T) {
	text := `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,rc-3.rc.ns.svc slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,rc-1.rc.ns.svc master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238316232 1426238315000 3 disconnected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 0 0 5 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,rc-0.rc.ns.svc myself,master - 0 0 1 connected 0-5459 5460 [5461-<-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1] [100->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 127.0.0.1:30006@31006 slave,fail? 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 1 1426238317741 6 connected
`
	got, err := ParseNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	span := func(lo, hi int) []int {
		var out []int
		for s := lo; s <= hi; s++ {
			out = append(out, s)
		}
		return out
	}
	want := []Entry{
		{ID: "07c37dfeb235213a872192d90877d0cd55635b91", Addr: "127.0.0.1:30004", BusPort: 31004, Hostname: "rc-3.rc.ns.svc",
			PrimaryID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", PongRecv: time.UnixMilli(1426238317239), ConfigEpoch: 4, Connected: true},
		{ID: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1", Addr: "127.0.0.1:30002", BusPort: 31002, Hostname: "rc-1.rc.ns.svc",
			Primary: true, PongRecv: time.UnixMilli(1426238316232), ConfigEpoch: 2, Connected: true, Slots: span(5461, 10922)},
		{ID: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", Addr: "127.0.0.1:30003", BusPort: 31003,
			Primary: true, Fail: true, PongRecv: time.UnixMilli(1426238315000), ConfigEpoch: 3, Slots: span(10923, 16383)},
		{ID: "6ec23923021cf3ffec47632106199cb7f496ce01", Primary: true, NoAddr: true, ConfigEpoch: 5},
		{ID: "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca", Addr: "127.0.0.1:30001", BusPort: 31001, Hostname: "rc-0.rc.ns.svc",
			Myself: true, Primary: true, ConfigEpoch: 1, Connected: true, Slots: span(0, 5460),
			Migrating: map[int]string{100: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"},
			Importing: map[int]string{5461: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"}},
		{ID: "824fe116063bc5fcf9f4ffd895bc17aee7731ac3", Addr: "127.0.0.1:30006", BusPort: 31006, PFail: true,
			PrimaryID: "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f", PongRecv: time.UnixMilli(1426238317741), ConfigEpoch: 6, Connected: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseNodes (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"abc 1.2.3.4:1@2 master - 0 0", "x 1.2.3.4:1@2 master - 0 0 1 connected 5-x", "x 1.2.3.4:1@2 master - 0 0 1 connected 16384"} {
		if _, err := ParseNodes(bad); err == nil {
			t.Errorf("ParseNodes(%q) accepted malformed input", bad)
		}
	}
}

// ownersOf builds an owner table from id → ranges.
func ownersOf(spec map[string][]Range) [Slots]string {
	var o [Slots]string
	for id, rs := range spec {
		for _, r := range rs {
			for s := r.Lo; s <= r.Hi; s++ {
				o[s] = id
			}
		}
	}
	return o
}

type moveSummary struct {
	From, To string
	Ranges   []Range
}

func summarize(moves []Move) []moveSummary {
	var out []moveSummary
	for _, m := range moves {
		out = append(out, moveSummary{m.From, m.To, Ranges(m.Slots)})
	}
	return out
}

func TestPlanBalance(t *testing.T) {
	even3 := EvenRanges(3)
	tests := []struct {
		name    string
		owners  map[string][]Range
		targets []string
		want    []moveSummary
	}{
		{
			name:    "balanced: nothing moves",
			owners:  map[string][]Range{"a": {even3[0]}, "b": {even3[1]}, "c": {even3[2]}},
			targets: []string{"a", "b", "c"},
		},
		{
			name:    "3 to 4: each old primary gives its tail to the new one",
			owners:  map[string][]Range{"a": {even3[0]}, "b": {even3[1]}, "c": {even3[2]}},
			targets: []string{"a", "b", "c", "d"},
			want: []moveSummary{
				{"a", "d", []Range{{4096, 5460}}},
				{"b", "d", []Range{{9557, 10921}}},
				{"c", "d", []Range{{15018, 16383}}},
			},
		},
		{
			name:    "4 to 3: the leaving primary's slots spread over the rest",
			owners:  map[string][]Range{"a": {{0, 4095}}, "b": {{4096, 8191}}, "c": {{8192, 12287}}, "d": {{12288, 16383}}},
			targets: []string{"a", "b", "c"},
			want: []moveSummary{
				{"d", "a", []Range{{12288, 13653}}},
				{"d", "b", []Range{{13654, 15018}}},
				{"d", "c", []Range{{15019, 16383}}},
			},
		},
		{
			name:    "unowned slots are not planned",
			owners:  map[string][]Range{"a": {{0, 99}}},
			targets: []string{"a", "b"},
			want:    []moveSummary{{"a", "b", []Range{{50, 99}}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owners := ownersOf(tt.owners)
			moves := PlanBalance(owners, tt.targets)
			if diff := cmp.Diff(tt.want, summarize(moves)); diff != "" {
				t.Errorf("moves (-want +got):\n%s", diff)
			}
			// Applying the plan leaves every target within one slot of the others.
			for _, m := range moves {
				for _, s := range m.Slots {
					if owners[s] != m.From {
						t.Fatalf("slot %d planned from %s but owned by %s", s, m.From, owners[s])
					}
					owners[s] = m.To
				}
			}
			count := map[string]int{}
			for _, o := range owners {
				if o != "" {
					count[o]++
				}
			}
			lo, hi := Slots, 0
			for _, id := range tt.targets {
				lo, hi = min(lo, count[id]), max(hi, count[id])
			}
			if hi-lo > 1 || len(count) > len(tt.targets) {
				t.Errorf("after the plan: %v", count)
			}
		})
	}
}

func TestPlanAssign(t *testing.T) {
	owners := ownersOf(map[string][]Range{"a": {{0, 5000}}})
	got := PlanAssign(owners, map[int]bool{6000: true}, []string{"a", "b", "c"})
	want := map[string][]Range{
		"a": {{5001, 5460}},
		"b": {{5461, 5999}, {6001, 10921}},
		"c": {{10922, 16383}},
	}
	gotRanges := map[string][]Range{}
	for id, slots := range got {
		gotRanges[id] = Ranges(slots)
	}
	if diff := cmp.Diff(want, gotRanges); diff != "" {
		t.Errorf("PlanAssign (-want +got):\n%s", diff)
	}
	if PlanAssign(owners, nil, nil) != nil {
		t.Error("PlanAssign without primaries planned something")
	}
}

// fakeState builds a State as Observe would from per-member self lines;
// every member sees every other.
func fakeState(selves ...Entry) *State {
	var members []MemberState
	for i, self := range selves {
		self.Myself = true
		view := []Entry{self}
		for j, other := range selves {
			if j != i {
				view = append(view, other)
			}
		}
		members = append(members, MemberState{
			Member: Member{Name: fmt.Sprintf("n%d", i)}, ID: self.ID, View: view,
			Info: map[string]string{"cluster_state": "ok"}, Synced: true,
		})
	}
	return newState(members, time.Unix(1000, 0))
}

// twoShards is a converged 2×1 cluster's self lines: primaries p0 and p1
// with the even slot ranges, replicas r0 of p0 and r1 of p1.
func twoShards() (p0, p1, r0, r1 Entry, spec Spec) {
	even := EvenRanges(2)
	span := func(r Range) []int {
		var out []int
		for s := r.Lo; s <= r.Hi; s++ {
			out = append(out, s)
		}
		return out
	}
	p0 = Entry{ID: "p0", Primary: true, Slots: span(even[0]), Connected: true}
	p1 = Entry{ID: "p1", Primary: true, Slots: span(even[1]), Connected: true}
	r0 = Entry{ID: "r0", PrimaryID: "p0", Connected: true}
	r1 = Entry{ID: "r1", PrimaryID: "p1", Connected: true}
	return p0, p1, r0, r1, Spec{Shards: 2, ReplicasPerShard: 1}
}

func TestAssessAndNextRequeue(t *testing.T) {
	even := EvenRanges(2)
	p0, p1, r0, r1, spec := twoShards()

	tests := []struct {
		name    string
		state   func() *State
		check   func(Health) bool
		requeue time.Duration
	}{
		{"converged", func() *State { return fakeState(p0, p1, r0, r1) },
			func(h Health) bool {
				return h.Converged && h.Shards == 2 && h.SlotsServed == Slots && h.ReadyNodes == 4
			}, 0},
		{"replica missing", func() *State { return fakeState(p0, p1, r0) },
			func(h Health) bool { return !h.Converged && h.MissingReplicas == 1 }, requeueSettling},
		{"replica not synced yet", func() *State {
			s := fakeState(p0, p1, r0, r1)
			s.Members[3].Synced = false
			return s
		}, func(h Health) bool { return h.MissingReplicas == 1 }, requeueSettling},
		{"member unreachable", func() *State {
			s := fakeState(p0, p1, r0, r1)
			s.Members[3] = MemberState{Member: Member{Name: "n3"}}
			return s
		}, func(h Health) bool { return cmp.Equal(h.Unreachable, []string{"n3"}) }, requeueWaiting},
		{"failed primary with a replica waits for failover", func() *State {
			dead := p1
			dead.Fail = true
			s := fakeState(p0, r0, r1)
			s.Nodes["p1"] = dead
			return s
		}, func(h Health) bool { return !h.Stuck && h.SlotsServed == even[0].Hi+1 && len(h.FailedNodes) == 1 }, requeueWaiting},
		{"failed primary without replica is stuck", func() *State {
			dead := p1
			dead.Fail = true
			s := fakeState(p0, r0)
			s.Nodes["p1"] = dead
			return s
		}, func(h Health) bool { return h.Stuck }, requeueStuck},
		{"promoted replica wins over a stale view of its failed primary", func() *State {
			// r1 took over p1's slots at a higher epoch; p1 is down, and a
			// view that has not heard of the promotion still lists its slots.
			promoted := r1
			promoted.Primary, promoted.PrimaryID, promoted.Slots, promoted.ConfigEpoch = true, "", p1.Slots, 2
			stale := p1
			stale.Fail, stale.ConfigEpoch = true, 1
			s := fakeState(p0, r0, promoted)
			s.Members[0].View = append(s.Members[0].View, stale)
			return newState(s.Members, s.Observed)
		}, func(h Health) bool {
			return !h.Stuck && h.SlotsServed == Slots && h.Shards == 2 && len(h.FailedNodes) == 1
		}, requeueWaiting},
		{"slots unassigned", func() *State { return fakeState(p0, r0, Entry{ID: "p1", Primary: true}, r1) },
			func(h Health) bool { return h.SlotsAssigned == even[0].Hi+1 && !h.Converged }, requeueSettling},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Assess(tt.state(), spec)
			if !tt.check(h) {
				t.Errorf("unexpected health %+v", h)
			}
			if got := NextRequeue(h); got != tt.requeue {
				t.Errorf("NextRequeue = %s, want %s (problems %v)", got, tt.requeue, h.Problems)
			}
		})
	}
}

func TestPlanReplicas(t *testing.T) {
	p0 := Entry{ID: "p0", Primary: true, Slots: []int{0}}
	p1 := Entry{ID: "p1", Primary: true, Slots: []int{1}}
	tests := []struct {
		name  string
		nodes []Entry
		spec  Spec
		want  []Attach
	}{
		{"blank nodes fill primaries evenly",
			[]Entry{p0, p1, {ID: "b0", Primary: true}, {ID: "b1", Primary: true}, {ID: "b2", Primary: true}},
			Spec{2, 1}, []Attach{{"n2", "p0"}, {"n3", "p1"}}},
		{"orphan of a drained primary is re-attached even beyond spec",
			[]Entry{p0, p1, {ID: "r0", PrimaryID: "p0"}, {ID: "r1", PrimaryID: "p1"}, {ID: "old", Primary: true}, {ID: "o", PrimaryID: "old"}},
			Spec{2, 1}, []Attach{{"n5", "p0"}}},
		{"replica of a failed primary that still owns slots waits for failover",
			[]Entry{p0, {ID: "r", PrimaryID: "dead"}},
			Spec{1, 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := fakeState(tt.nodes...)
			if tt.name == "replica of a failed primary that still owns slots waits for failover" {
				s.Nodes["dead"] = Entry{ID: "dead", Primary: true, Fail: true, Slots: []int{1}}
			}
			if diff := cmp.Diff(tt.want, PlanReplicas(s, tt.spec), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("PlanReplicas (-want +got):\n%s", diff)
			}
		})
	}
}
