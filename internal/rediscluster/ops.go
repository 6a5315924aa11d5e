package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// isUnknownNode reports the error a node gives for an ID it has not learnt
// through gossip yet (REPLICATE, SETSLOT) or no longer knows (FORGET).
func isUnknownNode(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "Unknown node") || strings.Contains(err.Error(), "I don't know about node"))
}

// announce makes every reachable member announce its stable hostname, so
// clients are redirected by name and a pod with a new IP stays reachable.
func (a *Admin) announce(ctx context.Context, c *conns, s *State) error {
	var errs []error
	for _, m := range s.Members {
		if !m.Reachable() || m.Announce == "" {
			continue
		}
		if self := s.Nodes[m.ID]; self.Hostname == m.Announce {
			continue
		}
		if err := c.get(m.Addr).ConfigSet(ctx, "cluster-announce-hostname", m.Announce).Err(); err != nil {
			errs = append(errs, fmt.Errorf("set announced hostname of %s: %w", m.Name, err))
			continue
		}
		a.log().Info("Set announced hostname", "member", m.Name, "hostname", m.Announce)
	}
	return errors.Join(errs...)
}

// meet introduces members to each other. A seed (the member that knows the
// most nodes) meets every member it does not know; gossip spreads the rest.
// Members whose address is stale in some view (a pod back with a new IP) are
// met again from that view, which updates the address. It reports whether it
// sent any MEET.
func (a *Admin) meet(ctx context.Context, c *conns, s *State) (bool, error) {
	var reachable []MemberState
	for _, m := range s.Members {
		if m.Reachable() {
			reachable = append(reachable, m)
		}
	}
	if len(reachable) < 2 {
		return false, nil
	}
	seed := reachable[0]
	for _, m := range reachable[1:] {
		if len(m.View) > len(seed.View) {
			seed = m
		}
	}
	met := false
	var errs []error
	for _, m := range reachable {
		for _, v := range reachable {
			if v.ID == m.ID {
				continue
			}
			e, known := v.Entry(m.ID)
			stale := known && !e.Handshake && e.Addr != m.IPAddr
			if (!known && v.ID == seed.ID) || stale {
				if err := a.meetOne(ctx, c, v, m); err != nil {
					errs = append(errs, err)
					continue
				}
				met = true
			}
		}
	}
	return met, errors.Join(errs...)
}

func (a *Admin) meetOne(ctx context.Context, c *conns, from, to MemberState) error {
	host, port, err := net.SplitHostPort(to.IPAddr)
	if err != nil {
		return fmt.Errorf("meet %s: %w", to.Name, err)
	}
	args := []any{cmdCluster, "MEET", host, port}
	if to.BusPort != 0 {
		args = append(args, strconv.Itoa(to.BusPort))
	}
	if err := c.get(from.Addr).Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("meet %s from %s: %w", to.Name, from.Name, err)
	}
	a.log().Info("Met node", "from", from.Name, "member", to.Name, "addr", to.IPAddr)
	return nil
}

// meshed reports whether every reachable member knows every other one (not
// in handshake, at its current address).
func meshed(s *State) error {
	for _, v := range s.Members {
		if !v.Reachable() {
			continue
		}
		for _, m := range s.Members {
			if !m.Reachable() || m.ID == v.ID {
				continue
			}
			e, ok := v.Entry(m.ID)
			if !ok || e.Handshake || e.Addr != m.IPAddr {
				return fmt.Errorf("%s does not know %s at %s yet", v.Name, m.Name, m.IPAddr)
			}
		}
	}
	return nil
}

// converge meets members and waits until they all know each other,
// returning the fresh State.
func (a *Admin) converge(ctx context.Context, c *conns, members []Member, s *State) (*State, error) {
	if _, err := a.meet(ctx, c, s); err != nil {
		return s, err
	}
	err := poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
		var err error
		if s, err = a.observe(ctx, c, members); err != nil {
			return err
		}
		if err := requireAll(s); err != nil {
			return err
		}
		return meshed(s)
	})
	if err != nil {
		return s, fmt.Errorf("wait for members to meet: %w", err)
	}
	return s, nil
}

// addSlots assigns ranges with one ADDSLOTSRANGE per node.
func (a *Admin) addSlots(ctx context.Context, c *conns, s *State, plan map[string][]int) error {
	ids := make([]string, 0, len(plan))
	for id := range plan {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		m, ok := s.byID(id)
		if !ok {
			return fmt.Errorf("assign slots to %s: %w", short(id), ErrUnreachable)
		}
		args := []any{cmdCluster, "ADDSLOTSRANGE"}
		for _, r := range Ranges(plan[id]) {
			args = append(args, r.Lo, r.Hi)
		}
		if err := c.get(m.Addr).Do(ctx, args...).Err(); err != nil {
			return fmt.Errorf("assign %d slots to %s: %w", len(plan[id]), m.Name, err)
		}
		a.log().Info("Assigned slots", "member", m.Name, "slots", len(plan[id]))
	}
	return nil
}

// attach runs planned CLUSTER REPLICATE commands, retrying while the replica
// has not yet learnt of its primary through gossip.
func (a *Admin) attach(ctx context.Context, c *conns, s *State, plan []Attach) error {
	var errs []error
	for _, at := range plan {
		m, _ := s.Member(at.Replica)
		err := poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
			err := c.get(m.Addr).ClusterReplicate(ctx, at.PrimaryID).Err()
			if err != nil && !isUnknownNode(err) {
				return permanent(err)
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("attach %s to %s: %w", m.Name, short(at.PrimaryID), err))
			continue
		}
		a.log().Info("Attached replica", "member", m.Name, "primary", at.PrimaryID)
	}
	return errors.Join(errs...)
}

// forget removes node id from every reachable member's table. FORGET must
// reach all nodes within the 60s ban window, or gossip re-adds it.
func (a *Admin) forget(ctx context.Context, c *conns, s *State, id string) error {
	var errs []error
	for _, m := range s.Members {
		if !m.Reachable() || m.ID == id {
			continue
		}
		if err := c.get(m.Addr).ClusterForget(ctx, id).Err(); err != nil && !isUnknownNode(err) {
			errs = append(errs, fmt.Errorf("forget %s on %s: %w", short(id), m.Name, err))
		}
	}
	if len(errs) == 0 {
		a.log().Info("Forgot node", "node", id)
	}
	return errors.Join(errs...)
}

// failover promotes replica with CLUSTER FAILOVER [mode] and waits until it
// reports itself primary.
func (a *Admin) failover(ctx context.Context, c *conns, replica MemberState, mode string) error {
	cl := c.get(replica.Addr)
	args := []any{cmdCluster, "FAILOVER"}
	if mode != "" {
		args = append(args, mode)
	}
	if err := cl.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("failover to %s: %w", replica.Name, err)
	}
	a.log().Info("Started failover", "member", replica.Name, "mode", mode)
	err := poll(ctx, orDefault(a.Settle, 15*time.Second), func() error {
		role, err := cl.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != roleMaster {
			return errors.New("still a replica")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failover to %s: %w", replica.Name, err)
	}
	return nil
}

// migrate moves slots with their keys from one primary to another: the
// documented IMPORTING/MIGRATING, GETKEYSINSLOT + MIGRATE ... KEYS, then
// SETSLOT NODE on the target, the source and every other primary. While a
// slot is migrating, clients are redirected with ASK, so no write is lost.
func (a *Admin) migrate(ctx context.Context, c *conns, s *State, mv Move) error {
	src, ok1 := s.byID(mv.From)
	dst, ok2 := s.byID(mv.To)
	if !ok1 || !ok2 {
		return fmt.Errorf("migrate %s -> %s: %w", short(mv.From), short(mv.To), ErrUnreachable)
	}
	host, port, err := net.SplitHostPort(dst.IPAddr)
	if err != nil {
		return fmt.Errorf("migrate to %s: %w", dst.Name, err)
	}
	srcC, dstC := c.get(src.Addr), c.get(dst.Addr)
	var others []*redis.Client
	for _, id := range s.Primaries() {
		if m, ok := s.byID(id); ok && id != mv.From && id != mv.To {
			others = append(others, c.get(m.Addr))
		}
	}
	batch := orDefault(a.MigrateBatch, 100)
	const chunk = 256
	for start := 0; start < len(mv.Slots); start += chunk {
		slots := mv.Slots[start:min(start+chunk, len(mv.Slots))]
		if err := setSlots(ctx, dstC, slots, "IMPORTING", mv.From); err != nil {
			return fmt.Errorf("migrate slots to %s: mark importing: %w", dst.Name, err)
		}
		if err := setSlots(ctx, srcC, slots, "MIGRATING", mv.To); err != nil {
			return fmt.Errorf("migrate slots from %s: mark migrating: %w", src.Name, err)
		}
		for _, slot := range slots {
			if err := a.moveKeys(ctx, srcC, slot, host, port, batch); err != nil {
				return fmt.Errorf("migrate slot %d %s -> %s: %w", slot, src.Name, dst.Name, err)
			}
		}
		// Target first: once it owns the slot, redirects converge on it.
		if err := setSlots(ctx, dstC, slots, "NODE", mv.To); err != nil {
			return fmt.Errorf("migrate slots: assign to %s: %w", dst.Name, err)
		}
		// A primary that just lost its last slot turns itself into a replica
		// of the new owner (cluster-allow-replica-migration) and refuses
		// SETSLOT: it no longer claims the slot, which is the goal.
		if err := setSlots(ctx, srcC, slots, "NODE", mv.To); err != nil && !strings.Contains(err.Error(), "only with masters") {
			return fmt.Errorf("migrate slots: release from %s: %w", src.Name, err)
		}
		for _, o := range others {
			// Best effort: the higher config epoch reaches the rest by gossip.
			if err := setSlots(ctx, o, slots, "NODE", mv.To); err != nil {
				a.log().Info("Slot ownership will propagate by gossip", "err", err)
			}
		}
	}
	a.log().Info("Migrated slots", "from", src.Name, "to", dst.Name, "slots", len(mv.Slots))
	return nil
}

func setSlots(ctx context.Context, cl *redis.Client, slots []int, sub, id string) error {
	pipe := cl.Pipeline()
	for _, slot := range slots {
		pipe.Do(ctx, cmdCluster, "SETSLOT", slot, sub, id)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		for _, cmd := range cmds {
			if cmd.Err() != nil {
				return fmt.Errorf("%s: %w", strings.TrimSpace(fmt.Sprintln(cmd.Args()...)), cmd.Err())
			}
		}
		return err
	}
	return nil
}

func (a *Admin) moveKeys(ctx context.Context, src *redis.Client, slot int, host, port string, batch int) error {
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, batch).Result()
		if err != nil {
			return fmt.Errorf("list keys: %w", err)
		}
		if len(keys) == 0 {
			return nil
		}
		args := []any{"MIGRATE", host, port, "", 0, 60000}
		if a.Password != "" {
			args = append(args, "AUTH", a.Password)
		}
		args = append(args, "KEYS")
		for _, k := range keys {
			args = append(args, k)
		}
		err = src.Do(ctx, args...).Err()
		if err != nil && strings.Contains(err.Error(), "BUSYKEY") {
			// A copy left on the target by an interrupted run: the source
			// still answers for the key, so its value is the current one.
			withReplace := append(slices.Clone(args[:6]), "REPLACE")
			withReplace = append(withReplace, args[6:]...)
			err = src.Do(ctx, withReplace...).Err()
		}
		if err != nil && !errors.Is(err, redis.Nil) && err.Error() != "NOKEY" {
			return fmt.Errorf("migrate %d keys: %w", len(keys), err)
		}
	}
}
