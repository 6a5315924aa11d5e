package rediscluster

import (
	"fmt"
	"slices"
	"time"
)

// Move is a batch of slots to migrate from one primary to another.
type Move struct {
	From, To string
	Slots    []int
}

// Range is an inclusive slot range.
type Range struct{ Lo, Hi int }

// Ranges compresses sorted slots into ranges.
func Ranges(slots []int) []Range {
	var out []Range
	for _, s := range slots {
		if n := len(out); n > 0 && out[n-1].Hi == s-1 {
			out[n-1].Hi = s
			continue
		}
		out = append(out, Range{s, s})
	}
	return out
}

// EvenRanges splits all slots into n contiguous ranges whose sizes differ by
// at most one, as a fresh cluster gets them.
func EvenRanges(n int) []Range {
	out := make([]Range, n)
	for i := range n {
		out[i] = Range{i * Slots / n, (i+1)*Slots/n - 1}
	}
	return out
}

// PlanBalance plans the migrations that leave every target owning the same
// number of slots, ±1, moving as few slots as possible. Owners not among
// targets (leaving primaries) give up all their slots. Unowned slots are not
// planned: assigning them is a repair decision, not a rebalance.
func PlanBalance(owners [Slots]string, targets []string) []Move {
	if len(targets) == 0 {
		return nil
	}
	isTarget := map[string]bool{}
	for _, t := range targets {
		isTarget[t] = true
	}
	owned := map[string][]int{}
	total := 0
	for slot, o := range owners {
		if o != "" {
			owned[o] = append(owned[o], slot)
			total++
		}
	}
	// The targets that already hold the most get the remainder slots.
	order := slices.Clone(targets)
	slices.SortStableFunc(order, func(a, b string) int { return len(owned[b]) - len(owned[a]) })
	quota := map[string]int{}
	for i, t := range order {
		quota[t] = total / len(targets)
		if i < total%len(targets) {
			quota[t]++
		}
	}
	type give struct {
		from string
		slot int
	}
	var pool []give
	donors := make([]string, 0, len(owned))
	for o := range owned {
		donors = append(donors, o)
	}
	slices.Sort(donors)
	for _, o := range donors {
		slots := owned[o]
		keep := 0
		if isTarget[o] {
			keep = min(quota[o], len(slots))
		}
		// Keep the lowest slots, give the tail: ranges stay contiguous.
		for _, s := range slots[keep:] {
			pool = append(pool, give{o, s})
		}
	}
	slices.SortFunc(pool, func(a, b give) int { return a.slot - b.slot })
	var moves []Move
	for _, t := range targets {
		need := quota[t] - len(owned[t])
		for need > 0 && len(pool) > 0 {
			g := pool[0]
			pool = pool[1:]
			need--
			if n := len(moves); n > 0 && moves[n-1].From == g.from && moves[n-1].To == t {
				moves[n-1].Slots = append(moves[n-1].Slots, g.slot)
				continue
			}
			moves = append(moves, Move{From: g.from, To: t, Slots: []int{g.slot}})
		}
	}
	return moves
}

// Attach is a planned CLUSTER REPLICATE: member Replica follows PrimaryID.
type Attach struct {
	Replica   string
	PrimaryID string
}

// PlanReplicas attaches orphaned replicas (whose primary no longer serves
// slots) and, where a primary has fewer than spec.ReplicasPerShard replicas,
// blank members (no slots, no keys). Primaries with the fewest replicas are
// served first. Blank members beyond what the spec needs are left alone: a
// pending scale-out will make them primaries.
func PlanReplicas(s *State, spec Spec) []Attach {
	var primaries []string
	for _, id := range s.Primaries() {
		if !s.Nodes[id].Fail {
			primaries = append(primaries, id)
		}
	}
	if len(primaries) == 0 {
		return nil
	}
	count := map[string]int{}
	for _, p := range primaries {
		count[p] = len(s.ReplicasOf(p))
	}
	serving := func(id string) bool { return slices.Contains(primaries, id) }
	var out []Attach
	for _, m := range s.Members {
		if !m.Reachable() {
			continue
		}
		self := s.Nodes[m.ID]
		var orphan bool
		switch {
		case self.Primary && len(self.Slots) == 0 && m.Keys == 0 && len(self.Importing) == 0:
			orphan = false
		case !self.Primary && !serving(self.PrimaryID):
			if p, ok := s.Nodes[self.PrimaryID]; ok && p.Primary && len(p.Slots) > 0 {
				// Its primary failed but still owns slots: that calls for a
				// failover, not for moving the replica away.
				continue
			}
			orphan = true
		default:
			continue
		}
		best := primaries[0]
		for _, p := range primaries[1:] {
			if count[p] < count[best] {
				best = p
			}
		}
		if !orphan && count[best] >= spec.ReplicasPerShard {
			continue
		}
		count[best]++
		out = append(out, Attach{Replica: m.Name, PrimaryID: best})
	}
	return out
}

// Health summarises a State against a Spec, for status conditions and
// NextRequeue.
type Health struct {
	// ClusterOK: every reachable member reports cluster_state:ok.
	ClusterOK bool
	// SlotsAssigned counts slots claimed by any primary; SlotsServed those
	// claimed by a primary that is not failed.
	SlotsAssigned, SlotsServed int
	// Shards counts primaries that serve slots.
	Shards int
	// ReadyNodes counts reachable members connected to the cluster.
	ReadyNodes int
	// MissingReplicas sums, over serving primaries, the replicas short of
	// spec; a replica counts once it is a reachable member and synced.
	MissingReplicas int
	// Unreachable names members that did not answer.
	Unreachable []string
	// FailedNodes are IDs of nodes flagged FAIL.
	FailedNodes []string
	// Strangers are IDs of nodes in the cluster that are no member.
	Strangers []string
	// OpenSlots counts slots left migrating/importing.
	OpenSlots int
	// Stuck: slots are unserved and no replica can take them over; only the
	// failed node coming back (or a person) can fix it without data loss.
	Stuck bool
	// Problems are human-readable reasons, for a Degraded condition.
	Problems []string
	// Converged: nothing left for the operator to do.
	Converged bool
}

// Assess computes Health. It is a pure function of its inputs.
func Assess(s *State, spec Spec) Health { //nolint:gocyclo // one check per cluster property, in the order the health report lists them
	h := Health{ClusterOK: true}
	members := map[string]bool{}
	for _, m := range s.Members {
		if !m.Reachable() {
			h.Unreachable = append(h.Unreachable, m.Name)
			continue
		}
		members[m.ID] = true
		if m.Info["cluster_state"] != "ok" {
			h.ClusterOK = false
		}
		if self := s.Nodes[m.ID]; len(m.View) > 1 || len(self.Slots) > 0 {
			h.ReadyNodes++
		}
	}
	if len(members) == 0 {
		h.ClusterOK = false
	}
	gaps := 0
	for _, m := range s.Members {
		if !m.Reachable() {
			continue
		}
		for id := range members {
			if e, ok := m.Entry(id); !ok || e.Handshake {
				gaps++
			}
		}
	}
	if gaps > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d member pairs have not met yet", gaps))
	}
	owners := s.Owners()
	for _, o := range owners {
		if o == "" {
			continue
		}
		h.SlotsAssigned++
		if !s.Nodes[o].Fail {
			h.SlotsServed++
		}
	}
	for _, id := range s.nodeIDs() {
		n := s.Nodes[id]
		if n.Fail {
			h.FailedNodes = append(h.FailedNodes, id)
		}
		if !members[id] && !n.Handshake {
			h.Strangers = append(h.Strangers, id)
		}
	}
	for _, p := range s.Primaries() {
		n := s.Nodes[p]
		reps := 0
		for _, r := range s.ReplicasOf(p) {
			if m, ok := s.byID(r); ok && m.Synced {
				reps++
			}
		}
		if n.Fail {
			h.Problems = append(h.Problems, fmt.Sprintf("primary %s (%d slots) failed", short(p), len(n.Slots)))
			if reps == 0 {
				h.Stuck = true
			}
			continue
		}
		h.Shards++
		h.MissingReplicas += max(0, spec.ReplicasPerShard-reps)
	}
	h.OpenSlots = s.OpenSlots()
	if len(h.Unreachable) > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("unreachable members: %v", h.Unreachable))
	}
	if !h.ClusterOK {
		h.Problems = append(h.Problems, "cluster_state is not ok on every member")
	}
	if h.SlotsAssigned < Slots {
		h.Problems = append(h.Problems, fmt.Sprintf("%d slots unassigned", Slots-h.SlotsAssigned))
	}
	if h.Shards != spec.Shards {
		h.Problems = append(h.Problems, fmt.Sprintf("%d shards serve slots, want %d", h.Shards, spec.Shards))
	}
	if h.MissingReplicas > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d replicas missing", h.MissingReplicas))
	}
	if len(h.Strangers) > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d nodes are no member", len(h.Strangers)))
	}
	if h.OpenSlots > 0 {
		h.Problems = append(h.Problems, fmt.Sprintf("%d slots mid-migration", h.OpenSlots))
	}
	h.Converged = len(h.Problems) == 0 && h.SlotsServed == Slots
	return h
}

// Requeue intervals, by what the operator is waiting for.
const (
	requeueSettling = 2 * time.Second  // gossip, elections: seconds
	requeueWaiting  = 10 * time.Second // failure thresholds, pods restarting
	requeueStuck    = time.Minute      // needs a failed node back or a person
)

// NextRequeue is when the reconciler should look again: 0 once converged
// (Kubernetes events cover everything else), soon while the cluster settles
// by itself, later while it waits on failures.
func NextRequeue(h Health) time.Duration {
	switch {
	case h.Converged:
		return 0
	case h.Stuck:
		return requeueStuck
	case len(h.Unreachable) > 0 || len(h.FailedNodes) > 0 || len(h.Strangers) > 0:
		return requeueWaiting
	default:
		return requeueSettling
	}
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// PlanAssign gives every slot that no node claims, and that is not
// mid-migration, to one of primaries: slot s goes to the primary whose
// EvenRanges range holds s, so a fresh cluster gets contiguous even ranges
// and a half-formed one is completed the same way.
func PlanAssign(owners [Slots]string, open map[int]bool, primaries []string) map[string][]int {
	if len(primaries) == 0 {
		return nil
	}
	plan := map[string][]int{}
	for i, r := range EvenRanges(len(primaries)) {
		for slot := r.Lo; slot <= r.Hi; slot++ {
			if owners[slot] == "" && !open[slot] {
				plan[primaries[i]] = append(plan[primaries[i]], slot)
			}
		}
	}
	return plan
}
