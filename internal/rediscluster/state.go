package rediscluster

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisinfo"
)

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Words of the Redis protocol used in more than one place.
const (
	// roleMaster is how CLUSTER NODES, ROLE and INFO replication name a primary.
	roleMaster = "master"
	// cmdCluster is the CLUSTER command.
	cmdCluster = "CLUSTER"
)

// Entry is one line of CLUSTER NODES: how one node sees another (or itself).
type Entry struct {
	ID string
	// Addr is ip:port as gossiped; empty for a node without address.
	Addr     string
	BusPort  int
	Hostname string
	Myself   bool
	Primary  bool
	// PrimaryID is set for replicas.
	PrimaryID string
	Fail      bool // FAIL: the cluster agreed the node is down
	PFail     bool // PFAIL: this viewer cannot reach it
	Handshake bool
	NoAddr    bool
	// PongRecv is when the viewer last heard from the node (zero if never).
	PongRecv    time.Time
	ConfigEpoch int64
	Connected   bool
	Slots       []int
	// Migrating and Importing map slot → peer node ID (only on Myself lines).
	Migrating map[int]string
	Importing map[int]string
}

// ParseNodes parses CLUSTER NODES output.
func ParseNodes(text string) ([]Entry, error) { //nolint:gocyclo // a field-by-field parser of the CLUSTER NODES line format
	var out []Entry
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("parse cluster nodes line %q: %d fields, want at least 8", line, len(f))
		}
		e := Entry{ID: f[0], Connected: f[7] == "connected"}
		addr, hostname, _ := strings.Cut(f[1], ",")
		e.Hostname = hostname
		hostport, bus, _ := strings.Cut(addr, "@")
		if i := strings.LastIndex(hostport, ":"); i >= 0 && hostport[:i] != "" {
			e.Addr = hostport
		}
		e.BusPort, _ = strconv.Atoi(bus)
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "myself":
				e.Myself = true
			case roleMaster:
				e.Primary = true
			case "slave":
				e.Primary = false
			case "fail":
				e.Fail = true
			case "fail?":
				e.PFail = true
			case "handshake":
				e.Handshake = true
			case "noaddr":
				e.NoAddr = true
			}
		}
		if f[3] != "-" {
			e.PrimaryID = f[3]
		}
		if ms, err := strconv.ParseInt(f[5], 10, 64); err == nil && ms > 0 {
			e.PongRecv = time.UnixMilli(ms)
		}
		e.ConfigEpoch, _ = strconv.ParseInt(f[6], 10, 64)
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				body := strings.Trim(s, "[]")
				if slot, peer, ok := strings.Cut(body, "->-"); ok {
					n, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("parse open slot %q: %w", s, err)
					}
					if e.Migrating == nil {
						e.Migrating = map[int]string{}
					}
					e.Migrating[n] = peer
				} else if slot, peer, ok := strings.Cut(body, "-<-"); ok {
					n, err := strconv.Atoi(slot)
					if err != nil {
						return nil, fmt.Errorf("parse open slot %q: %w", s, err)
					}
					if e.Importing == nil {
						e.Importing = map[int]string{}
					}
					e.Importing[n] = peer
				}
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("parse slot %q: %w", s, err)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("parse slot range %q: %w", s, err)
				}
			}
			if a < 0 || b >= Slots || a > b {
				return nil, fmt.Errorf("parse slot range %q: out of range", s)
			}
			for x := a; x <= b; x++ {
				e.Slots = append(e.Slots, x)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// ParseInfo parses CLUSTER INFO or INFO output into key → value.
func ParseInfo(text string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}

// MemberState is what Observe learnt from one member.
type MemberState struct {
	Member
	// IPAddr is Addr with the host resolved to an IP, as CLUSTER MEET needs.
	IPAddr string
	// ID is the node ID; empty when the member could not be observed.
	ID string
	// Err says why the member could not be observed.
	Err error
	// View is the member's CLUSTER NODES; Info its CLUSTER INFO.
	View []Entry
	Info map[string]string
	// NodeInfo is the member's INFO: memory, clients, persistence, stats,
	// replication and keyspace.
	NodeInfo redisinfo.Info
	// Keys is DBSIZE; UsedMemory, Dataset (used_memory_dataset) and
	// MaxMemory come from NodeInfo.
	Keys, UsedMemory, Dataset, MaxMemory int64
	// Synced: a primary, or a replica whose replication link is up (the
	// initial full sync finished), so it could take over without data loss.
	Synced bool
}

// Reachable reports whether the member answered.
func (m MemberState) Reachable() bool { return m.ID != "" }

// Entry returns how this member sees node id.
func (m MemberState) Entry(id string) (Entry, bool) {
	for _, e := range m.View {
		if e.ID == id {
			return e, true
		}
	}
	return Entry{}, false
}

// Self returns the member's own line.
func (m MemberState) Self() Entry {
	for _, e := range m.View {
		if e.Myself {
			return e
		}
	}
	return Entry{ID: m.ID}
}

// State is a snapshot of the cluster as seen from every reachable member.
type State struct {
	// Members are in the order given to Observe.
	Members []MemberState
	// Nodes merges the views by node ID: a reachable node's own line wins;
	// for others the FAIL/PFAIL flags of every view are combined and the line
	// with the highest config epoch supplies role and slots.
	Nodes map[string]Entry
	// Observed is when the snapshot was taken.
	Observed time.Time
}

func newState(members []MemberState, now time.Time) *State {
	s := &State{Members: members, Nodes: map[string]Entry{}, Observed: now}
	self := map[string]bool{}
	for _, m := range members {
		if m.Reachable() {
			s.Nodes[m.ID] = m.Self()
			self[m.ID] = true
		}
	}
	for _, m := range members {
		for _, e := range m.View {
			if e.Myself || self[e.ID] {
				continue
			}
			cur, seen := s.Nodes[e.ID]
			merged := e
			if seen && cur.ConfigEpoch > e.ConfigEpoch {
				merged = cur
			}
			merged.Fail = e.Fail || (seen && cur.Fail)
			merged.PFail = e.PFail || (seen && cur.PFail)
			merged.Connected = e.Connected && (!seen || cur.Connected)
			if seen && cur.PongRecv.After(e.PongRecv) {
				merged.PongRecv = cur.PongRecv
			}
			s.Nodes[e.ID] = merged
		}
	}
	s.dropSupersededClaims()
	return s
}

// dropSupersededClaims leaves each slot with one claimant, the primary with
// the highest config epoch (what Owners reports). A failed primary's own
// line and the views that have not yet heard of its replica's promotion
// still list its slots at its old epoch; keeping them would count it as a
// slot-serving primary with no replica left (Stuck) although the promoted
// replica serves them.
func (s *State) dropSupersededClaims() {
	owners := s.Owners()
	for id, n := range s.Nodes {
		if !n.Primary || len(n.Slots) == 0 {
			continue
		}
		kept := n.Slots[:0:0]
		for _, slot := range n.Slots {
			if owners[slot] == id {
				kept = append(kept, slot)
			}
		}
		if len(kept) != len(n.Slots) {
			n.Slots = kept
			s.Nodes[id] = n
		}
	}
}

// Member returns the state of the member called name.
func (s *State) Member(name string) (MemberState, bool) {
	for _, m := range s.Members {
		if m.Name == name {
			return m, true
		}
	}
	return MemberState{}, false
}

// byID returns the member whose node has id.
func (s *State) byID(id string) (MemberState, bool) {
	for _, m := range s.Members {
		if m.ID != "" && m.ID == id {
			return m, true
		}
	}
	return MemberState{}, false
}

// Owners maps every slot to the node that claims it ("" when nobody does).
// Failed primaries still claim their slots until a replica takes over.
func (s *State) Owners() [Slots]string {
	var owners [Slots]string
	epoch := map[int]int64{}
	for _, id := range s.nodeIDs() {
		n := s.Nodes[id]
		if !n.Primary {
			continue
		}
		for _, slot := range n.Slots {
			if owners[slot] == "" || n.ConfigEpoch > epoch[slot] {
				owners[slot], epoch[slot] = id, n.ConfigEpoch
			}
		}
	}
	return owners
}

// Primaries returns the IDs of primaries that claim slots, in member order
// first and then by ID, so plans are deterministic.
func (s *State) Primaries() []string {
	var out []string
	for _, id := range s.nodeIDs() {
		if n := s.Nodes[id]; n.Primary && len(n.Slots) > 0 {
			out = append(out, id)
		}
	}
	return out
}

// ReplicasOf returns the non-failed replicas of primary id.
func (s *State) ReplicasOf(id string) []string {
	var out []string
	for _, rid := range s.nodeIDs() {
		if n := s.Nodes[rid]; !n.Primary && n.PrimaryID == id && !n.Fail {
			out = append(out, rid)
		}
	}
	return out
}

// OpenSlots counts slots in migrating or importing state on any member.
func (s *State) OpenSlots() int { return len(s.openSet()) }

func (s *State) openSet() map[int]bool {
	open := map[int]bool{}
	for _, m := range s.Members {
		self := m.Self()
		for slot := range self.Migrating {
			open[slot] = true
		}
		for slot := range self.Importing {
			open[slot] = true
		}
	}
	return open
}

// nodeIDs orders node IDs: members' nodes in member order, then the rest.
func (s *State) nodeIDs() []string {
	var ids, rest []string
	seen := map[string]bool{}
	for _, m := range s.Members {
		if m.ID != "" && !seen[m.ID] {
			ids = append(ids, m.ID)
			seen[m.ID] = true
		}
	}
	for id := range s.Nodes {
		if !seen[id] {
			rest = append(rest, id)
		}
	}
	slices.Sort(rest)
	return append(ids, rest...)
}

// downFor is how long the cluster has not heard from node id.
func (s *State) downFor(id string) time.Duration {
	n := s.Nodes[id]
	if n.PongRecv.IsZero() {
		return 0
	}
	return s.Observed.Sub(n.PongRecv)
}
