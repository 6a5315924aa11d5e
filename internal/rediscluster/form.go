package rediscluster

import (
	"context"
	"fmt"
)

func (s Spec) validate(members int) error {
	if s.Shards < 1 || s.ReplicasPerShard < 0 {
		return fmt.Errorf("spec %d shards × %d replicas: need at least one shard and no negative replicas", s.Shards, s.ReplicasPerShard)
	}
	if members < s.Nodes() {
		return fmt.Errorf("spec %d shards × (1+%d): needs %d members, have %d", s.Shards, s.ReplicasPerShard, s.Nodes(), members)
	}
	return nil
}

// blank reports whether a member can become a new primary or replica
// without losing anything: a primary with no slots, no keys, no open slot.
func blank(s *State, m MemberState) bool {
	self := s.Nodes[m.ID]
	return m.Reachable() && self.Primary && len(self.Slots) == 0 && m.Keys == 0 &&
		len(self.Importing) == 0 && len(self.Migrating) == 0
}

// Form builds the cluster from blank nodes: meet them, assign the slots
// evenly over spec.Shards primaries, attach the replicas. On a formed cluster
// it sends no command that changes anything; on a half-formed one (an earlier
// run was interrupted) it finishes the job. Every member must be reachable.
// It returns once the commands are accepted; Observe and Assess tell when
// the cluster reports ok.
func (a *Admin) Form(ctx context.Context, members []Member, spec Spec) error {
	if err := spec.validate(len(members)); err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}
	c := a.open()
	defer c.close()
	s, err := a.observe(ctx, c, members)
	if err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}
	if err := requireAll(s); err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}
	if err := a.announce(ctx, c, s); err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}
	if s, err = a.converge(ctx, c, members, s); err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}

	primaries := s.Primaries()
	if len(primaries) > spec.Shards {
		return fmt.Errorf("form cluster: %d primaries already serve slots, spec wants %d: scale in instead", len(primaries), spec.Shards)
	}
	for _, m := range s.Members {
		if len(primaries) == spec.Shards {
			break
		}
		if blank(s, m) {
			primaries = append(primaries, m.ID)
		}
	}
	if len(primaries) < spec.Shards {
		return fmt.Errorf("form cluster: only %d members can be primaries, spec wants %d", len(primaries), spec.Shards)
	}
	if plan := PlanAssign(s.Owners(), s.openSet(), primaries); len(plan) > 0 {
		if err := a.addSlots(ctx, c, s, plan); err != nil {
			return fmt.Errorf("form cluster: %w", err)
		}
		if s, err = a.observe(ctx, c, members); err != nil {
			return fmt.Errorf("form cluster: %w", err)
		}
	}
	if err := a.attach(ctx, c, s, PlanReplicas(s, spec)); err != nil {
		return fmt.Errorf("form cluster: %w", err)
	}
	return nil
}
