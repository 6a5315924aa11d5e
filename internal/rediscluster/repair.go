package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Repair brings a formed cluster back to spec after node loss, in this
// order, each step only where needed:
//
//  1. announce stable hostnames and re-MEET members that some node does not
//     know or knows at a stale address (a pod back with a new IP);
//  2. force a failover where a primary has been FAIL for FailoverAfter and
//     Redis did not fail over by itself (FORCE while a majority of primaries
//     is healthy, TAKEOVER otherwise);
//  3. attach orphaned replicas and fill primaries lacking replicas from
//     blank members;
//  4. forget nodes that are no member and have been failed for ForgetAfter,
//     on every node; only when every member answered, because an
//     unreachable member might be that node under a new address;
//  5. finish slot migrations an interrupted scale left open;
//  6. assign slots that no node claims at all (a bootstrap cut short).
//
// Slots a failed node still claims are never reassigned: it may come back
// with its data (persistent volume), and giving them to another node would
// make its return lose every write. Such a cluster stays Degraded (Assess
// reports Stuck) until the node returns or a person decides.
//
// Repair returns the steps it could not complete; the others still ran.
func (a *Admin) Repair(ctx context.Context, members []Member, spec Spec) error {
	c := a.open()
	defer c.close()
	s, err := a.observe(ctx, c, members)
	if err != nil {
		return fmt.Errorf("repair cluster: %w", err)
	}
	var errs []error
	step := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	refresh := func() bool {
		ns, err := a.observe(ctx, c, members)
		if err != nil {
			errs = append(errs, err)
			return false
		}
		s = ns
		return true
	}

	step(a.announce(ctx, c, s))
	met, err := a.meet(ctx, c, s)
	step(err)
	if met {
		// Give gossip a moment; what is still missing is retried next time.
		_ = poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
			if !refresh() {
				return permanent(errors.New("observe failed"))
			}
			return meshed(s)
		})
	}

	if failovers := a.planFailovers(s); len(failovers) > 0 {
		for _, f := range failovers {
			step(a.failover(ctx, c, f.replica, f.mode))
		}
		if !refresh() {
			return joinErrs("repair cluster", errs)
		}
	}

	if plan := PlanReplicas(s, spec); len(plan) > 0 {
		step(a.attach(ctx, c, s, plan))
		if !refresh() {
			return joinErrs("repair cluster", errs)
		}
	}

	for _, id := range a.forgettable(s) {
		step(a.forget(ctx, c, s, id))
	}

	step(a.fixOpenSlots(ctx, c, s))

	owners := s.Owners()
	var serving []string
	for _, id := range s.Primaries() {
		if !s.Nodes[id].Fail {
			serving = append(serving, id)
		}
	}
	if plan := PlanAssign(owners, s.openSet(), serving); len(plan) > 0 {
		step(a.addSlots(ctx, c, s, plan))
	}
	return joinErrs("repair cluster", errs)
}

type plannedFailover struct {
	replica MemberState
	mode    string
}

// planFailovers picks, for every primary that owns slots and has been FAIL
// past the threshold, its first reachable replica.
func (a *Admin) planFailovers(s *State) []plannedFailover {
	primaries := s.Primaries()
	healthy := 0
	for _, id := range primaries {
		if !s.Nodes[id].Fail && !s.Nodes[id].PFail {
			healthy++
		}
	}
	// FORCE still needs votes from a majority of primaries; without them only
	// TAKEOVER (no agreement, bumps the epoch unilaterally) can restore service.
	mode := "FORCE"
	if healthy*2 <= len(primaries) {
		mode = "TAKEOVER"
	}
	var out []plannedFailover
	for _, id := range primaries {
		n := s.Nodes[id]
		if !n.Fail || s.downFor(id) < orDefault(a.FailoverAfter, 30*time.Second) {
			continue
		}
		for _, rid := range s.ReplicasOf(id) {
			if m, ok := s.byID(rid); ok {
				out = append(out, plannedFailover{m, mode})
				break
			}
		}
	}
	return out
}

// forgettable lists nodes that are no member, own no slots, no member
// replicates, and have been failed (or address-less) past ForgetAfter.
func (a *Admin) forgettable(s *State) []string {
	if requireAll(s) != nil {
		return nil
	}
	var out []string
	for _, id := range s.nodeIDs() {
		if _, member := s.byID(id); member {
			continue
		}
		n := s.Nodes[id]
		if n.Handshake || len(n.Slots) > 0 || (!n.Fail && !n.NoAddr) {
			continue
		}
		if s.downFor(id) < orDefault(a.ForgetAfter, 5*time.Minute) {
			continue
		}
		if slices.ContainsFunc(s.Members, func(m MemberState) bool { return s.Nodes[m.ID].PrimaryID == id }) {
			continue // re-attach first; a replica cannot forget its primary
		}
		out = append(out, id)
	}
	return out
}

// fixOpenSlots finishes migrations left open: a slot migrating from its
// owner is moved to the node importing it; a slot importing without a
// migrating owner is pulled in the same way, or closed when empty.
func (a *Admin) fixOpenSlots(ctx context.Context, c *conns, s *State) error {
	owners := s.Owners()
	var errs []error
	done := map[int]bool{}
	for _, m := range s.Members {
		self := s.Nodes[m.ID]
		if !m.Reachable() {
			continue
		}
		for _, slot := range sortedKeys(self.Migrating) {
			if owners[slot] == m.ID {
				done[slot] = true
				errs = append(errs, a.migrate(ctx, c, s, Move{From: m.ID, To: self.Migrating[slot], Slots: []int{slot}}))
			}
		}
	}
	for _, m := range s.Members {
		self := s.Nodes[m.ID]
		if !m.Reachable() {
			continue
		}
		for _, slot := range sortedKeys(self.Importing) {
			if done[slot] {
				continue
			}
			owner := owners[slot]
			if owner == "" || owner == m.ID {
				errs = append(errs, c.get(m.Addr).Do(ctx, cmdCluster, "SETSLOT", slot, "STABLE").Err())
				continue
			}
			errs = append(errs, a.migrate(ctx, c, s, Move{From: owner, To: m.ID, Slots: []int{slot}}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("finish open slot migrations: %w", err)
	}
	return nil
}

func sortedKeys(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// joinErrs wraps a list of step errors under one operation name.
func joinErrs(op string, errs []error) error {
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}
