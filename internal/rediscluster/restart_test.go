package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

func TestPlanRestart(t *testing.T) {
	// Members n0..n3: n0 and n1 primaries, n2 replicates n0, n3 n1.
	p0, p1, r0, r1, spec := twoShards()
	healthy := func() *State { return fakeState(p0, p1, r0, r1) }
	const maxLag = 1 << 20

	tests := []struct {
		name       string
		state      func() *State
		spec       Spec
		candidates []string
		want       RestartStep
		wantWait   bool
	}{
		{"nothing to restart", healthy, spec, nil, RestartStep{}, false},
		{"a replica goes first, whatever the order", healthy, spec, []string{"n0", "n3"}, RestartStep{Restart: "n3"}, false},
		{"a primary is failed over to its replica, not restarted", healthy, spec, []string{"n1"}, RestartStep{Failover: "n3", Primary: "n1"}, false},
		{"an unknown member is ignored", healthy, spec, []string{"gone", "n1"}, RestartStep{Failover: "n3", Primary: "n1"}, false},
		{"the previous node is not back yet: wait", func() *State {
			s := healthy()
			s.Members[2] = MemberState{Member: Member{Name: "n2"}, Err: errors.New("connection refused")}
			return s
		}, spec, []string{"n3"}, RestartStep{}, true},
		{"a replica still syncing: wait", func() *State {
			s := healthy()
			s.Members[2].Synced = false
			return s
		}, spec, []string{"n3"}, RestartStep{}, true},
		{"cluster_state not ok somewhere: wait", func() *State {
			s := healthy()
			s.Members[1].Info = map[string]string{"cluster_state": "fail"}
			return s
		}, spec, []string{"n3"}, RestartStep{}, true},
		{"a replica behind its primary: wait", func() *State {
			s := healthy()
			s.Members[0].NodeInfo.Replication.Offset = 5 << 20
			s.Members[2].NodeInfo.Replication.ReplicaOffset = 3 << 20
			return s
		}, spec, []string{"n3"}, RestartStep{}, true},
		{"a replica within maxLag: go", func() *State {
			s := healthy()
			s.Members[0].NodeInfo.Replication.Offset = 5 << 20
			s.Members[2].NodeInfo.Replication.ReplicaOffset = 5<<20 - 100
			return s
		}, spec, []string{"n3"}, RestartStep{Restart: "n3"}, false},
		{"a primary without replicas is never restarted", func() *State { return fakeState(p0, p1) },
			Spec{Shards: 2}, []string{"n0"}, RestartStep{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanRestart(tt.state(), tt.spec, tt.candidates, maxLag)
			if tt.wantWait != (got.Wait != "") {
				t.Fatalf("PlanRestart = %+v, want a wait: %v", got, tt.wantWait)
			}
			got.Wait = ""
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PlanRestart (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("the most caught-up replica takes over", func(t *testing.T) {
		r0b := Entry{ID: "r0b", PrimaryID: "p0", Connected: true}
		s := fakeState(p0, p1, r0, r1, r0b) // n4 is a second replica of n0
		s.Members[0].NodeInfo.Replication.Offset = 1000
		s.Members[2].NodeInfo.Replication.ReplicaOffset = 900
		s.Members[4].NodeInfo.Replication.ReplicaOffset = 990
		got := PlanRestart(s, Spec{Shards: 2, ReplicasPerShard: 1}, []string{"n0"}, maxLag)
		if diff := cmp.Diff(RestartStep{Failover: "n4", Primary: "n0"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// TestFailoverKeepsAcknowledgedWrites replays the maintenance failover
// under load: writers keep writing through a ClusterClient while a
// primary's slots are handed to its replica, and every write Redis
// acknowledged must read back afterwards. A FORCE or TAKEOVER failover
// could drop the writes the replica had not received; the graceful one
// waits for the replica to catch up first.
func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	ctx := context.Background()
	nodes := redistest.StartNodes(t, 6, fastSync)
	members := membersOf(nodes, 0)
	spec := Spec{Shards: 3, ReplicasPerShard: 1}
	a := testAdmin(t)
	if err := a.Form(ctx, members, spec); err != nil {
		t.Fatal(err)
	}
	s := waitConverged(t, a, members, spec, true)

	// A replica and its primary, by name.
	var replica, primary string
	for _, m := range s.Members {
		if n := s.Nodes[m.ID]; !n.Primary {
			p, _ := s.byID(n.PrimaryID)
			replica, primary = m.Name, p.Name
			break
		}
	}

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrsOf(members)})
	defer cc.Close()
	var (
		mu    sync.Mutex
		acked []string
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d:%d", w, i)
				if cc.Set(ctx, key, key, 0).Err() == nil {
					mu.Lock()
					acked = append(acked, key)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := a.Failover(ctx, members, replica); err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("Failover: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	after := mustObserve(t, a, members)
	r, _ := after.Member(replica)
	p, _ := after.Member(primary)
	if !after.Nodes[r.ID].Primary || after.Nodes[p.ID].Primary || after.Nodes[p.ID].PrimaryID != r.ID {
		t.Fatalf("after Failover: %v", layout(after))
	}
	if len(acked) < 100 {
		t.Fatalf("only %d writes acknowledged: the load did not run", len(acked))
	}
	lost := 0
	for _, key := range acked {
		if v, err := cc.Get(ctx, key).Result(); err != nil || v != key {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged writes lost in the failover", lost, len(acked))
	} else {
		t.Logf("%d acknowledged writes across the failover, none lost", len(acked))
	}

	t.Run("refuses a primary", func(t *testing.T) {
		if err := a.Failover(ctx, members, replica); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Failover to a primary: %v, want ErrUnsafe", err)
		}
	})
}
