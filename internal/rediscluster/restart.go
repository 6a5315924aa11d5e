package rediscluster

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// RestartStep is the next step of a rolling restart. At most one of
// Failover and Restart is set; with neither, Wait says why nothing may
// happen now (or the step is zero: nothing left to do).
type RestartStep struct {
	// Failover names the replica to promote with Admin.Failover, so that
	// Primary, a candidate, becomes a replica that may be restarted.
	Failover, Primary string
	// Restart names the member to restart now; it is a replica.
	Restart string
	// Wait says why no step can be taken yet.
	Wait string
}

// PlanRestart picks the next step of restarting candidates (member names)
// one at a time without losing an acknowledged write:
//
//   - nothing happens unless the cluster is converged (every member
//     answers, cluster_state ok everywhere, all slots served, every shard
//     has its synced replicas) and every replica is within maxLag bytes of
//     its primary: so the next node goes only once the previous one is
//     back and caught up;
//   - replicas are restarted first: they serve no writes;
//   - a primary is never restarted as one: first its most caught-up
//     replica takes over with a graceful manual failover (Admin.Failover),
//     after which it is a replica like the others. A primary without an
//     in-sync replica is not restarted at all.
//
// It is a pure function of the State, so each reconcile can call it again.
func PlanRestart(s *State, spec Spec, candidates []string, maxLag int64) RestartStep {
	if len(candidates) == 0 {
		return RestartStep{}
	}
	if h := Assess(s, spec); !h.Converged {
		return RestartStep{Wait: "the cluster has not converged: " + strings.Join(h.Problems, "; ")}
	}
	lag := replicaLag(s)
	for _, m := range s.Members {
		if l, ok := lag[m.Name]; ok && l > maxLag {
			return RestartStep{Wait: fmt.Sprintf("replica %s is %d bytes behind its primary", m.Name, l)}
		}
	}
	var primaries []MemberState
	for _, name := range candidates {
		m, ok := s.Member(name)
		if !ok {
			continue
		}
		if !s.Nodes[m.ID].Primary {
			return RestartStep{Restart: name}
		}
		primaries = append(primaries, m)
	}
	for _, p := range primaries {
		var best *MemberState
		for _, rid := range s.ReplicasOf(p.ID) {
			r, ok := s.byID(rid)
			if !ok || !r.Synced {
				continue
			}
			if best == nil || lag[r.Name] < lag[best.Name] {
				best = &r
			}
		}
		if best != nil {
			return RestartStep{Failover: best.Name, Primary: p.Name}
		}
	}
	if len(primaries) > 0 {
		return RestartStep{Wait: fmt.Sprintf("primary %s has no in-sync replica to take over: it is never restarted as a primary", primaries[0].Name)}
	}
	return RestartStep{}
}

// replicaLag maps each replica member to how many bytes of its primary's
// replication stream it has not applied, when both answered.
func replicaLag(s *State) map[string]int64 {
	out := map[string]int64{}
	for _, m := range s.Members {
		n, ok := s.Nodes[m.ID]
		if !m.Reachable() || !ok || n.Primary {
			continue
		}
		if p, ok := s.byID(n.PrimaryID); ok {
			out[m.Name] = max(0, p.NodeInfo.Replication.Offset-m.NodeInfo.Replication.ReplicaOffset)
		}
	}
	return out
}

// Failover makes the replica member called name the primary of its shard
// with a graceful manual failover (CLUSTER FAILOVER without FORCE): its
// primary stops accepting writes, the replica catches up with the
// primary's replication offset, and only then takes over, so no write the
// primary acknowledged is lost. Clients are redirected (MOVED) to the new
// primary; reads keep being served by the old one until the switch. It
// returns once the replica reports itself primary and the old primary
// reports itself its replica.
func (a *Admin) Failover(ctx context.Context, members []Member, name string) error {
	c := a.open()
	defer c.close()
	s, err := a.observe(ctx, c, members)
	if err != nil {
		return fmt.Errorf("failover to %s: %w", name, err)
	}
	r, ok := s.Member(name)
	if !ok || !r.Reachable() {
		return fmt.Errorf("failover to %s: %w", name, ErrUnreachable)
	}
	self := s.Nodes[r.ID]
	p, ok := s.byID(self.PrimaryID)
	switch {
	case self.Primary:
		return fmt.Errorf("failover to %s: it is a primary already: %w", name, ErrUnsafe)
	case !r.Synced:
		return fmt.Errorf("failover to %s: it has not finished syncing with its primary: %w", name, ErrUnsafe)
	case !ok || !p.Reachable() || s.Nodes[p.ID].Fail:
		// A graceful failover needs the primary's cooperation; without it
		// only FORCE could promote, and that may lose writes.
		return fmt.Errorf("failover to %s: its primary does not answer: %w", name, ErrUnreachable)
	}
	if err := a.failover(ctx, c, r, ""); err != nil {
		return err
	}
	err = poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
		role, err := c.get(p.Addr).Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "slave" {
			return fmt.Errorf("%s still reports role %v", p.Name, role)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failover to %s: wait for %s to follow: %w", name, p.Name, err)
	}
	a.log().Info("Failed over", "member", name, "from", p.Name)
	return nil
}
