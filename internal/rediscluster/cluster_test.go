package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// fastSync starts replica full syncs at once instead of after the default
// 5s diskless-sync delay, which would dominate the test time.
const fastSync = "repl-diskless-sync-delay 0"

// converge is generous: CI runs this on two shared cores.
const converge = 45 * time.Second

func membersOf(nodes []*redistest.Server, from int) []Member {
	out := make([]Member, len(nodes))
	for i, n := range nodes {
		out[i] = Member{Name: fmt.Sprintf("node-%d", from+i), Addr: n.Addr(), BusPort: n.BusPort, Announce: "localhost"}
	}
	return out
}

func testAdmin(t *testing.T) *Admin {
	return &Admin{
		Log:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Settle:        converge,
		FailoverAfter: time.Hour,
		ForgetAfter:   time.Hour,
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitConverged polls Observe (and, with repair, runs Repair first, as the
// reconciler would) until Assess reports convergence.
func waitConverged(t *testing.T, a *Admin, members []Member, spec Spec, repair bool) *State {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(converge)
	var last Health
	var lastErr error
	for time.Now().Before(deadline) {
		if repair {
			lastErr = a.Repair(ctx, members, spec)
		}
		s, err := a.Observe(ctx, members)
		if err == nil {
			last = Assess(s, spec)
			if last.Converged {
				if got := NextRequeue(last); got != 0 {
					t.Errorf("NextRequeue = %s on a converged cluster, want 0", got)
				}
				return s
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("cluster did not converge within %s: problems %v, last repair error %v", converge, last.Problems, lastErr)
	return nil
}

// layout describes a State by member name, for comparisons that must not
// depend on node IDs.
func layout(s *State) map[string]string {
	out := map[string]string{}
	for _, m := range s.Members {
		n := s.Nodes[m.ID]
		if n.Primary {
			out[m.Name] = fmt.Sprintf("primary %v", Ranges(n.Slots))
			continue
		}
		p, _ := s.byID(n.PrimaryID)
		out[m.Name] = "replica of " + p.Name
	}
	return out
}

func writeKeys(t *testing.T, addrs []string, n int) {
	t.Helper()
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	for start := 0; start < n; start += 1000 {
		_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(start+1000, n); i++ {
				p.Set(ctx, fmt.Sprintf("key:%d", i), fmt.Sprintf("value-%d", i), 0)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("write keys: %v", err)
		}
	}
}

// checkKeys reads every key through a fresh ClusterClient (which follows
// MOVED/ASK like any application would).
func checkKeys(t *testing.T, addrs []string, n int) {
	t.Helper()
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	var cmds []*redis.StringCmd
	_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			cmds = append(cmds, p.Get(ctx, fmt.Sprintf("key:%d", i)))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read keys: %v", err)
	}
	missing := 0
	for i, c := range cmds {
		if c.Val() != fmt.Sprintf("value-%d", i) {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d keys missing or wrong after scaling", missing, n)
	}
}

func addrsOf(members []Member) []string {
	var out []string
	for _, m := range members {
		out = append(out, m.Addr)
	}
	return out
}

func slotCounts(s *State) map[string]int {
	out := map[string]int{}
	for _, id := range s.Primaries() {
		m, _ := s.byID(id)
		out[m.Name] = len(s.Nodes[id].Slots)
	}
	return out
}

func checkBalanced(t *testing.T, s *State, shards int) {
	t.Helper()
	counts := slotCounts(s)
	if len(counts) != shards {
		t.Fatalf("%d primaries serve slots (%v), want %d", len(counts), counts, shards)
	}
	total := 0
	for name, n := range counts {
		total += n
		if n < Slots/shards || n > Slots/shards+1 {
			t.Errorf("%s owns %d slots, want %d±1 (all: %v)", name, n, Slots/shards, counts)
		}
	}
	if total != Slots {
		t.Errorf("primaries own %d slots in total, want %d", total, Slots)
	}
}

// TestLifecycle walks one cluster through the whole life the operator
// manages: bootstrap, a crashed primary, its return at a new address, a
// scale out and a scale in with data, and the refusals along the way.
func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	a := testAdmin(t)
	spec := Spec{Shards: 3, ReplicasPerShard: 1}
	nodes := redistest.StartNodes(t, 6, fastSync)
	members := membersOf(nodes, 0)
	parent := t

	if err := a.Form(ctx, members, spec); err != nil {
		t.Fatalf("Form: %v", err)
	}
	s := waitConverged(t, a, members, spec, false)
	want := map[string]string{
		"node-0": "primary [{0 5460}]", "node-1": "primary [{5461 10921}]", "node-2": "primary [{10922 16383}]",
		"node-3": "replica of node-0", "node-4": "replica of node-1", "node-5": "replica of node-2",
	}
	if diff := cmp.Diff(want, layout(s)); diff != "" {
		t.Fatalf("formed layout (-want +got):\n%s", diff)
	}
	for _, m := range s.Members {
		if m.Info["cluster_state"] != "ok" || m.Info["cluster_slots_assigned"] != "16384" {
			t.Errorf("%s: cluster_state %s, slots assigned %s", m.Name, m.Info["cluster_state"], m.Info["cluster_slots_assigned"])
		}
		if s.Nodes[m.ID].Hostname != "localhost" {
			t.Errorf("%s announces %q, want localhost", m.Name, s.Nodes[m.ID].Hostname)
		}
	}

	t.Run("form again changes nothing", func(t *testing.T) {
		epochs := func(s *State) []string {
			var out []string
			for _, m := range s.Members {
				out = append(out, m.ID+" "+m.Info["cluster_current_epoch"])
			}
			return out
		}
		if err := a.Form(ctx, members, spec); err != nil {
			t.Fatalf("second Form: %v", err)
		}
		again, err := a.Observe(ctx, members)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(layout(s), layout(again)); diff != "" {
			t.Errorf("layout changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(epochs(s), epochs(again)); diff != "" {
			t.Errorf("node IDs or epochs changed (-before +after):\n%s", diff)
		}
	})

	const keys = 10000
	writeKeys(t, addrsOf(members), keys)

	oldID := s.Members[0].ID
	t.Run("crashed primary is replaced by its replica", func(t *testing.T) {
		if err := nodes[0].Kill(); err != nil {
			t.Fatal(err)
		}
		var got *State
		err := poll(ctx, converge, func() error {
			var err error
			if got, err = a.Observe(ctx, members); err != nil {
				return err
			}
			r, _ := got.Member("node-3")
			if n := got.Nodes[r.ID]; !n.Primary || len(n.Slots) == 0 || !got.Nodes[oldID].Fail {
				return errors.New("node-3 not promoted yet")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		h := Assess(got, spec)
		if diff := cmp.Diff([]string{"node-0"}, h.Unreachable); diff != "" {
			t.Errorf("unreachable (-want +got):\n%s", diff)
		}
		if !slices.Contains(h.FailedNodes, oldID) || h.MissingReplicas != 1 || h.Converged {
			t.Errorf("health after crash = %+v", h)
		}
		if got := NextRequeue(h); got != requeueWaiting {
			t.Errorf("NextRequeue = %s while a member is down, want %s", got, requeueWaiting)
		}
		// Nothing to do without data loss while node-0 is away: no error,
		// and its ID is not forgotten (it may come back).
		if err := a.Repair(ctx, members, spec); err != nil {
			t.Errorf("Repair with a member down: %v", err)
		}
		checkKeys(t, addrsOf(members[1:]), keys)
	})

	t.Run("returns at a new address and rejoins as a replica", func(t *testing.T) {
		nodes[0].Port, nodes[0].BusPort = redistest.FreePort(t), redistest.FreePort(t)
		nodes[0].Start(parent)
		members = membersOf(nodes, 0)
		s = waitConverged(t, a, members, spec, true)
		m, _ := s.Member("node-0")
		if m.ID != oldID {
			t.Errorf("node-0 came back as %s, want its old identity %s", m.ID, oldID)
		}
		if got := layout(s)["node-0"]; got != "replica of node-3" {
			t.Errorf("node-0 is %q, want replica of node-3", got)
		}
	})

	t.Run("scale out to 4 shards keeps every key", func(t *testing.T) {
		bigger := Spec{Shards: 4, ReplicasPerShard: 1}
		if err := a.ScaleOut(ctx, members, bigger); err == nil {
			t.Fatal("ScaleOut without new members succeeded")
		}
		more := redistest.StartNodes(parent, 2, fastSync)
		nodes = append(nodes, more...)
		members = membersOf(nodes, 0)
		if err := a.ScaleOut(ctx, members, bigger); err != nil {
			t.Fatalf("ScaleOut: %v", err)
		}
		s = waitConverged(t, a, members, bigger, false)
		checkBalanced(t, s, 4)
		if got := layout(s); !strings.HasPrefix(got["node-6"], "primary") || got["node-7"] != "replica of node-6" {
			t.Errorf("new members: node-6 %q, node-7 %q", got["node-6"], got["node-7"])
		}
		checkKeys(t, addrsOf(members), keys)
		// Re-running a finished scale-out moves nothing.
		if err := a.ScaleOut(ctx, members, bigger); err != nil {
			t.Fatalf("second ScaleOut: %v", err)
		}
		again, _ := a.Observe(ctx, members)
		if diff := cmp.Diff(layout(s), layout(again)); diff != "" {
			t.Errorf("second ScaleOut changed the layout:\n%s", diff)
		}
	})

	t.Run("scale in refuses what could lose data", func(t *testing.T) {
		smaller := Spec{Shards: 3, ReplicasPerShard: 1}
		// The staying primaries could not hold the data.
		var stayingPrimaries []*redis.Client
		for _, id := range s.Primaries() {
			m, _ := s.byID(id)
			if m.Name == "node-6" {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: m.Addr})
			defer cl.Close()
			used, _ := cl.Info(ctx, "memory").Result()
			if err := cl.ConfigSet(ctx, "maxmemory", ParseInfo(used)["used_memory"]).Err(); err != nil {
				t.Fatal(err)
			}
			stayingPrimaries = append(stayingPrimaries, cl)
		}
		err := a.ScaleIn(ctx, members[:6], members[6:], smaller)
		if !errors.Is(err, ErrUnsafe) {
			t.Errorf("ScaleIn without capacity: err = %v, want ErrUnsafe", err)
		}
		for _, cl := range stayingPrimaries {
			if err := cl.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		// A leaving node that does not answer might hold data.
		if err := nodes[7].Kill(); err != nil {
			t.Fatal(err)
		}
		err = a.ScaleIn(ctx, members[:6], members[6:], smaller)
		if !errors.Is(err, ErrUnsafe) || !errors.Is(err, ErrUnreachable) {
			t.Errorf("ScaleIn with a leaving node down: err = %v, want ErrUnsafe and ErrUnreachable", err)
		}
		nodes[7].Start(parent)
		if got := slotCounts(mustObserve(t, a, members)); len(got) != 4 {
			t.Errorf("refused scale-ins changed the shards: %v", got)
		}
	})

	t.Run("scale in to 3 shards keeps every key", func(t *testing.T) {
		smaller := Spec{Shards: 3, ReplicasPerShard: 1}
		s = waitConverged(t, a, members, Spec{Shards: 4, ReplicasPerShard: 1}, true)
		leavingIDs := []string{s.Members[6].ID, s.Members[7].ID}
		if err := a.ScaleIn(ctx, members[:6], members[6:], smaller); err != nil {
			t.Fatalf("ScaleIn: %v", err)
		}
		s = waitConverged(t, a, members[:6], smaller, false)
		checkBalanced(t, s, 3)
		checkKeys(t, addrsOf(members[:6]), keys)
		for _, id := range leavingIDs {
			if _, known := s.Nodes[id]; known {
				t.Errorf("staying nodes still know leaving node %s", short(id))
			}
		}
		gone := mustObserve(t, a, members[6:])
		for _, m := range gone.Members {
			if len(m.View) != 1 || m.Keys != 0 {
				t.Errorf("%s after removal knows %d nodes and holds %d keys, want a blank node", m.Name, len(m.View), m.Keys)
			}
		}
	})
}

func mustObserve(t *testing.T, a *Admin, members []Member) *State {
	t.Helper()
	s, err := a.Observe(context.Background(), members)
	if err != nil {
		t.Fatalf("Observe: %v", err)
	}
	return s
}

// TestRepairFailoverForgetAndReplace: a primary dies and its replica may not
// fail over by itself (cluster-replica-no-failover), so Repair forces the
// failover; then the dead pod is replaced by a blank one (lost volume), so
// Repair forgets the old node everywhere and makes the new one a replica.
func TestRepairFailoverForgetAndReplace(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, fastSync)
	a := testAdmin(t)
	a.FailoverAfter, a.ForgetAfter = time.Millisecond, time.Millisecond
	spec := Spec{Shards: 3, ReplicasPerShard: 1}
	nodes := c.Nodes() // node-0..2 primaries, node-3..5 their replicas
	members := membersOf(nodes, 0)
	if _, err := redistest.Do(ctx, c.Replicas[0].Addr(), "CONFIG", "SET", "cluster-replica-no-failover", "yes"); err != nil {
		t.Fatal(err)
	}
	before := mustObserve(t, a, members)
	deadID := before.Members[0].ID
	if err := c.Primaries[0].Kill(); err != nil {
		t.Fatal(err)
	}

	err := poll(ctx, converge, func() error {
		if err := a.Repair(ctx, members, spec); err != nil {
			return err
		}
		s := mustObserve(t, a, members)
		if got := layout(s)["node-3"]; !strings.HasPrefix(got, "primary [{0 5460}]") {
			return fmt.Errorf("node-3 is %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("forced failover: %v", err)
	}

	fresh := redistest.StartNode(t, fastSync)
	members = append(membersOf(nodes[1:], 1), Member{Name: "node-6", Addr: fresh.Addr(), BusPort: fresh.BusPort})
	s := waitConverged(t, a, members, spec, true)
	if _, known := s.Nodes[deadID]; known {
		t.Errorf("dead node %s still known", short(deadID))
	}
	for _, m := range s.Members {
		if _, ok := m.Entry(deadID); ok {
			t.Errorf("%s still knows the dead node", m.Name)
		}
	}
	if got := layout(s)["node-6"]; got != "replica of node-3" {
		t.Errorf("replacement node is %q, want replica of node-3", got)
	}
}

// TestRepairNeverReassignsClaimedSlots: a primary without replicas dies.
// Its slots must stay with it (its volume may bring the data back), so
// Repair changes nothing and the cluster is reported stuck.
func TestRepairNeverReassignsClaimedSlots(t *testing.T) {
	ctx := context.Background()
	a := testAdmin(t)
	a.FailoverAfter = time.Millisecond
	spec := Spec{Shards: 3}
	nodes := redistest.StartNodes(t, 3, fastSync)
	members := membersOf(nodes, 0)
	if err := a.Form(ctx, members, spec); err != nil {
		t.Fatal(err)
	}
	s := waitConverged(t, a, members, spec, false)
	deadID := s.Members[2].ID
	if err := nodes[2].Kill(); err != nil {
		t.Fatal(err)
	}
	err := poll(ctx, converge, func() error {
		if s = mustObserve(t, a, members); !s.Nodes[deadID].Fail {
			return errors.New("not failed yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Repair(ctx, members, spec); err != nil {
		t.Errorf("Repair: %v", err)
	}
	s = mustObserve(t, a, members)
	owners := s.Owners()
	if owners[16383] != deadID || owners[10922] != deadID {
		t.Errorf("slots of the dead primary were reassigned to %s", short(owners[16383]))
	}
	h := Assess(s, spec)
	if want := EvenRanges(3)[2].Lo; !h.Stuck || h.Converged || h.SlotsServed != want {
		t.Errorf("health = %+v, want stuck with %d slots served", h, want)
	}
	if got := NextRequeue(h); got != requeueStuck {
		t.Errorf("NextRequeue = %s, want %s", got, requeueStuck)
	}
}

// TestOperationsFailOnUnreachableMembers covers the error paths that need
// no formed cluster.
func TestOperationsFailOnUnreachableMembers(t *testing.T) {
	ctx := context.Background()
	a := testAdmin(t)
	a.Settle = 2 * time.Second
	nodes := redistest.StartNodes(t, 4)
	members := membersOf(nodes, 0)
	if err := nodes[3].Kill(); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Shards: 3}
	if err := a.Form(ctx, members, spec); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Form with a member down: err = %v, want ErrUnreachable", err)
	}
	if err := a.Form(ctx, members[:2], spec); err == nil || !strings.Contains(err.Error(), "needs 3 members") {
		t.Errorf("Form with too few members: err = %v", err)
	}
	if err := a.ScaleOut(ctx, members, spec); !errors.Is(err, ErrUnreachable) {
		t.Errorf("ScaleOut with a member down: err = %v, want ErrUnreachable", err)
	}
	if err := a.ScaleOut(ctx, members[:3], spec); err == nil || !strings.Contains(err.Error(), "form the cluster first") {
		t.Errorf("ScaleOut on blank nodes: err = %v", err)
	}
	if err := a.Repair(ctx, members[3:], spec); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Repair with no member up: err = %v, want ErrUnreachable", err)
	}
	if _, err := a.Observe(ctx, []Member{{Name: "x", Addr: "no-such-host.invalid:6379"}}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Observe of an unresolvable member: err = %v, want ErrUnreachable", err)
	}
	if err := a.ScaleIn(ctx, members[:3], members[3:], spec); !errors.Is(err, ErrUnsafe) {
		t.Errorf("ScaleIn with the leaving member down: err = %v, want ErrUnsafe", err)
	}
}

// TestRepairAfterEveryNodeMoved: the whole cluster restarts and every node
// comes back at a new address (every pod rescheduled). Gossip alone cannot
// heal this, as every node only knows stale addresses; Repair's MEETs do,
// and every node keeps its identity, role and slots.
func TestRepairAfterEveryNodeMoved(t *testing.T) {
	c := redistest.StartCluster(t, fastSync)
	a := testAdmin(t)
	spec := Spec{Shards: 3, ReplicasPerShard: 1}
	nodes := c.Nodes()
	before := mustObserve(t, a, membersOf(nodes, 0))
	for _, n := range nodes {
		if err := n.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.Port, n.BusPort = redistest.FreePort(t), redistest.FreePort(t)
		n.Start(t)
	}
	members := membersOf(nodes, 0)
	broken := mustObserve(t, a, members)
	if err := meshed(broken); err == nil {
		t.Fatal("nodes know each other's new addresses before any repair; the test proves nothing")
	}
	after := waitConverged(t, a, members, spec, true)
	if diff := cmp.Diff(layout(before), layout(after)); diff != "" {
		t.Errorf("layout changed by the move (-before +after):\n%s", diff)
	}
	for i := range before.Members {
		if before.Members[i].ID != after.Members[i].ID {
			t.Errorf("%s changed identity", before.Members[i].Name)
		}
	}
}

// quietLogger drops go-redis' own pool messages: tests kill nodes on
// purpose, and the dial failures that follow are expected.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}

// TestScaleInPromotesStayingReplica: the staying pods hold only one primary
// but the spec wants two shards, so ScaleIn promotes the staying replica of
// a leaving primary with a graceful failover (no keys move for that shard),
// drains the other leaving primary and re-attaches the orphaned replica.
func TestScaleInPromotesStayingReplica(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, fastSync)
	a := testAdmin(t)
	// node-0..2 primaries, node-3..5 their replicas.
	all := membersOf(c.Nodes(), 0)
	const keys = 2000
	writeKeys(t, addrsOf(all), keys)
	waitConverged(t, a, all, Spec{Shards: 3, ReplicasPerShard: 1}, false)

	staying := []Member{all[0], all[3], all[4], all[5]} // one primary, three replicas
	leaving := []Member{all[1], all[2]}
	spec := Spec{Shards: 2, ReplicasPerShard: 1}
	if err := a.ScaleIn(ctx, staying, leaving, spec); err != nil {
		t.Fatalf("ScaleIn: %v", err)
	}
	s := waitConverged(t, a, staying, spec, false)
	checkBalanced(t, s, 2)
	got := layout(s)
	if !strings.HasPrefix(got["node-4"], "primary") {
		t.Errorf("node-4 (replica of leaving node-1) is %q, want promoted", got["node-4"])
	}
	if got["node-5"] != "replica of node-4" && got["node-5"] != "replica of node-0" {
		t.Errorf("orphaned node-5 is %q, want re-attached", got["node-5"])
	}
	checkKeys(t, addrsOf(staying), keys)
}

// TestRepairFinishesInterruptedMigration: a scale was cut off halfway
// through a slot (some keys moved, both sides still open). Repair finishes
// the move towards the importing node and no key is lost.
func TestRepairFinishesInterruptedMigration(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, fastSync)
	a := testAdmin(t)
	spec := Spec{Shards: 3, ReplicasPerShard: 1}
	members := membersOf(c.Nodes(), 0)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrsOf(members)})
	defer cc.Close()
	for i := range 50 {
		if err := cc.Set(ctx, fmt.Sprintf("{tag}:%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	slot := int(cc.ClusterKeySlot(ctx, "{tag}").Val())
	s := mustObserve(t, a, members)
	srcID := s.Owners()[slot]
	src, _ := s.byID(srcID)
	dst, _ := s.byID(s.Primaries()[(slices.Index(s.Primaries(), srcID)+1)%3])
	srcC := redis.NewClient(&redis.Options{Addr: src.Addr})
	defer srcC.Close()
	dstC := redis.NewClient(&redis.Options{Addr: dst.Addr})
	defer dstC.Close()
	if err := dstC.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srcC.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.ID).Err(); err != nil {
		t.Fatal(err)
	}
	some := srcC.ClusterGetKeysInSlot(ctx, slot, 20).Val()
	host, port, _ := strings.Cut(dst.Addr, ":")
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range some {
		args = append(args, k)
	}
	if err := srcC.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	if h := Assess(mustObserve(t, a, members), spec); h.OpenSlots != 1 || h.Converged {
		t.Fatalf("half-migrated slot not reported: %+v", h)
	}

	s = waitConverged(t, a, members, spec, true)
	if got := s.Owners()[slot]; got != dst.ID {
		t.Errorf("slot %d owned by %s, want the importing node %s", slot, short(got), short(dst.ID))
	}
	for i := range 50 {
		if got, err := cc.Get(ctx, fmt.Sprintf("{tag}:%d", i)).Int(); err != nil || got != i {
			t.Errorf("{tag}:%d = %d, %v after repair", i, got, err)
		}
	}
}
