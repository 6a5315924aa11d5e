package rediscluster

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// ScaleOut grows the cluster to spec.Shards primaries: it meets the new
// members, makes blank ones primaries, migrates slots with their keys until
// every primary owns the same number of slots (±1), and attaches replicas.
// members is the whole desired membership, old and new; all must answer.
// Re-running it after an interruption finishes open migrations first.
func (a *Admin) ScaleOut(ctx context.Context, members []Member, spec Spec) error {
	if err := spec.validate(len(members)); err != nil {
		return fmt.Errorf("scale out: %w", err)
	}
	c := a.open()
	defer c.close()
	s, err := a.ready(ctx, c, members)
	if err != nil {
		return fmt.Errorf("scale out: %w", err)
	}
	primaries := s.Primaries()
	if len(primaries) > spec.Shards {
		return fmt.Errorf("scale out: %d primaries serve slots, spec wants %d: scale in instead", len(primaries), spec.Shards)
	}
	for _, m := range s.Members {
		if len(primaries) == spec.Shards {
			break
		}
		if blank(s, m) && !slices.Contains(primaries, m.ID) {
			primaries = append(primaries, m.ID)
		}
	}
	if len(primaries) < spec.Shards {
		return fmt.Errorf("scale out: only %d members can be primaries, spec wants %d", len(primaries), spec.Shards)
	}
	for _, mv := range PlanBalance(s.Owners(), primaries) {
		if err := a.migrate(ctx, c, s, mv); err != nil {
			return fmt.Errorf("scale out: %w", err)
		}
	}
	if s, err = a.observe(ctx, c, members); err != nil {
		return fmt.Errorf("scale out: %w", err)
	}
	if err := a.attach(ctx, c, s, PlanReplicas(s, spec)); err != nil {
		return fmt.Errorf("scale out: %w", err)
	}
	return nil
}

// ready observes members, requires all of them, meets them, refuses to act
// on a cluster with a failed primary (Repair first) and finishes migrations
// an earlier run left open.
func (a *Admin) ready(ctx context.Context, c *conns, members []Member) (*State, error) {
	s, err := a.observe(ctx, c, members)
	if err != nil {
		return nil, err
	}
	if err := requireAll(s); err != nil {
		return nil, err
	}
	if err := a.announce(ctx, c, s); err != nil {
		return nil, err
	}
	if s, err = a.converge(ctx, c, members, s); err != nil {
		return nil, err
	}
	if len(s.Primaries()) == 0 {
		return nil, fmt.Errorf("no primary serves slots: form the cluster first")
	}
	for _, id := range s.Primaries() {
		if s.Nodes[id].Fail || s.Nodes[id].PFail {
			return nil, fmt.Errorf("primary %s is failing: repair before scaling: %w", short(id), ErrUnreachable)
		}
	}
	// A node that has not yet learnt the slot map answers CLUSTERDOWN,
	// which would fail the MIGRATEs to it.
	err = poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
		var err error
		if s, err = a.observe(ctx, c, members); err != nil {
			return err
		}
		for _, m := range s.Members {
			if m.Info["cluster_state"] != "ok" {
				return fmt.Errorf("%s reports cluster_state %s", m.Name, m.Info["cluster_state"])
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for cluster_state ok: %w", err)
	}
	if s.OpenSlots() > 0 {
		if err := a.fixOpenSlots(ctx, c, s); err != nil {
			return nil, err
		}
		if s, err = a.observe(ctx, c, members); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// capacityHeadroom is the share of the remaining primaries' maxmemory the
// data may fill after a scale-in; the rest absorbs fragmentation and writes.
const capacityHeadroom = 0.9

// ScaleIn shrinks the cluster to the members that stay, removing leaving:
// slots (with keys) move off leaving primaries first; where the staying
// members lack spec.Shards primaries, a staying replica of a leaving primary
// is promoted with a graceful failover instead. Replicas of drained
// primaries are re-attached, then the leaving nodes are forgotten everywhere
// and reset. It refuses (ErrUnsafe) when a leaving member is unreachable,
// when the staying members cannot provide spec.Shards primaries, or when
// the data would not fit in the staying primaries' maxmemory.
func (a *Admin) ScaleIn(ctx context.Context, members, leaving []Member, spec Spec) error { //nolint:gocyclo // one sequential procedure whose safety checks read best in order
	if err := spec.validate(len(members)); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	all := append(slices.Clone(members), leaving...)
	c := a.open()
	defer c.close()
	s, err := a.observe(ctx, c, all)
	if err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	for _, m := range s.Members[len(members):] {
		if !m.Reachable() {
			return fmt.Errorf("scale in: leaving member %s cannot be checked for data: %w: %w", m.Name, ErrUnsafe, ErrUnreachable)
		}
	}
	if s, err = a.ready(ctx, c, all); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	stays := map[string]bool{}
	for _, m := range s.Members[:len(members)] {
		stays[m.ID] = true
	}
	keptPrimaries := func() []string {
		var out []string
		for _, id := range s.Primaries() {
			if stays[id] {
				out = append(out, id)
			}
		}
		return out
	}

	// Promote staying replicas of leaving primaries while primaries are short:
	// a failover moves no keys.
	for len(keptPrimaries()) < spec.Shards {
		promoted := false
		for _, id := range s.Primaries() {
			if stays[id] {
				continue
			}
			for _, rid := range s.ReplicasOf(id) {
				if r, ok := s.byID(rid); ok && stays[rid] {
					if err := a.failover(ctx, c, r, ""); err != nil {
						return fmt.Errorf("scale in: %w", err)
					}
					promoted = true
					break
				}
			}
			if promoted {
				break
			}
		}
		if !promoted {
			break
		}
		if s, err = a.observe(ctx, c, all); err != nil {
			return fmt.Errorf("scale in: %w", err)
		}
	}
	targets := keptPrimaries()
	for _, m := range s.Members[:len(members)] {
		if len(targets) >= spec.Shards {
			break
		}
		if blank(s, m) {
			targets = append(targets, m.ID)
		}
	}
	if len(targets) < spec.Shards {
		return fmt.Errorf("scale in: staying members provide %d primaries, spec wants %d: %w", len(targets), spec.Shards, ErrUnsafe)
	}
	if len(targets) > spec.Shards {
		return fmt.Errorf("scale in: %d staying primaries serve slots, spec wants %d: list the extra ones as leaving", len(targets), spec.Shards)
	}
	if err := fits(s, stays, targets); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}

	for _, mv := range PlanBalance(s.Owners(), targets) {
		if err := a.migrate(ctx, c, s, mv); err != nil {
			return fmt.Errorf("scale in: %w", err)
		}
	}
	if s, err = a.observe(ctx, c, all); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	for _, m := range s.Members[len(members):] {
		if n := s.Nodes[m.ID]; len(n.Slots) > 0 || (n.Primary && m.Keys > 0) {
			return fmt.Errorf("scale in: %s still holds %d slots and %d keys: %w", m.Name, len(n.Slots), m.Keys, ErrUnsafe)
		}
	}

	// Plan replicas as if the leaving nodes were gone already: a leaving
	// replica must not count towards its primary's replicas.
	staying := newState(s.Members[:len(members)], s.Observed)
	for _, m := range s.Members[len(members):] {
		delete(staying.Nodes, m.ID)
	}
	if err := a.attach(ctx, c, staying, PlanReplicas(staying, spec)); err != nil {
		return fmt.Errorf("scale in: %w", err)
	}
	for _, m := range s.Members[len(members):] {
		if err := a.forget(ctx, c, staying, m.ID); err != nil {
			return fmt.Errorf("scale in: %w", err)
		}
		// Reset last: the staying nodes no longer accept its gossip, and
		// a reset node forgets them, so it cannot rejoin by accident.
		if err := c.get(m.Addr).ClusterResetHard(ctx).Err(); err != nil {
			return fmt.Errorf("scale in: reset %s: %w", m.Name, err)
		}
		a.log().Info("Removed node", "member", m.Name, "node", m.ID)
	}
	return nil
}

// fits refuses a scale-in whose data would overflow the maxmemory of the
// primaries that stay. Nodes without maxmemory are not checked.
func fits(s *State, stays map[string]bool, targets []string) error {
	var capacity, need int64
	for _, id := range targets {
		m, _ := s.byID(id)
		if m.MaxMemory == 0 {
			return nil
		}
		capacity += m.MaxMemory
		need += m.UsedMemory
	}
	for _, id := range s.Primaries() {
		if !stays[id] {
			m, _ := s.byID(id)
			need += m.Dataset
		}
	}
	if float64(need) > capacityHeadroom*float64(capacity) {
		return fmt.Errorf("data needs %d bytes, staying primaries have %d (%.0f%% of maxmemory): %w",
			need, capacity, capacityHeadroom*100, ErrUnsafe)
	}
	return nil
}
