// Package redisinfo turns the text of Redis' INFO command into a typed
// snapshot of one node: memory, clients, persistence, statistics,
// replication and keyspace, the figures the operator turns into metrics,
// status and conditions.
//
// Parse is a pure function of the text, so the tests run it on INFO output
// captured from real redis-server processes (testdata/capture.sh). Fields
// the snapshot does not name are ignored, so a newer Redis that adds fields
// parses the same; a named field whose value does not parse is an error
// naming it, never a silent zero.
package redisinfo

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sections are the INFO sections the operator reads from every node, in one
// INFO command (Redis 7 accepts several).
var Sections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "keyspace"}

// Info is one node's INFO.
type Info struct {
	Server      Server
	Clients     Clients
	Memory      Memory
	Persistence Persistence
	Stats       Stats
	Replication Replication
	// Keyspace has one entry per database with keys, by database number.
	Keyspace []Keyspace
	// sections holds the lower-case names of the sections the text had.
	sections []string
}

// Has reports whether the text held the named section ("memory", …).
func (i Info) Has(section string) bool { return slices.Contains(i.sections, strings.ToLower(section)) }

// Server is the server section.
type Server struct {
	// Version is redis_version.
	Version string
	// Mode is redis_mode: standalone, cluster or sentinel.
	Mode string
	// RunID identifies the process: it changes on every restart, so
	// counters can be told apart from a previous process's.
	RunID string
	// UptimeSeconds is uptime_in_seconds.
	UptimeSeconds int64
	// TimeMicros is server_time_usec: the node's clock when it answered.
	TimeMicros int64
}

// Started is when the process started, by the node's own clock: the time
// it answered less its uptime, so however long the answer took to arrive,
// it is not counted as uptime. Seconds are truncated, so it may be up to a
// second late. Zero when the reply had no server_time_usec (before 6.2).
func (s Server) Started() time.Time {
	if s.TimeMicros == 0 {
		return time.Time{}
	}
	return time.UnixMicro(s.TimeMicros).Add(-time.Duration(s.UptimeSeconds) * time.Second)
}

// Clients is the clients section.
type Clients struct {
	// Connected is connected_clients (replicas excluded).
	Connected int64
	// Blocked is blocked_clients (BLPOP and the like).
	Blocked int64
	// MaxClients is maxclients (reported since Redis 7.0; 0 before).
	MaxClients int64
	// ClusterConnections is cluster_connections: cluster bus links, which
	// count against maxclients too.
	ClusterConnections int64
}

// Memory is the memory section.
type Memory struct {
	// Used is used_memory: what the allocator handed out for Redis.
	Used int64
	// RSS is used_memory_rss: what the process holds from the kernel.
	RSS int64
	// Peak is used_memory_peak.
	Peak int64
	// Dataset is used_memory_dataset: Used less Redis' own overhead.
	Dataset int64
	// Max is maxmemory; 0 means no limit.
	Max int64
	// Policy is maxmemory_policy (noeviction, allkeys-lru, …).
	Policy string
	// NotCountedForEvict is mem_not_counted_for_evict: replication and AOF
	// buffers Redis leaves out when it compares Used with Max.
	NotCountedForEvict int64
	// FragmentationRatio is mem_fragmentation_ratio, RSS / Used. It means
	// little on a node that holds little: an empty server's RSS is several
	// times its Used.
	FragmentationRatio float64
	// FragmentationBytes is mem_fragmentation_bytes, RSS - Used.
	FragmentationBytes int64
	// Allocator is mem_allocator, e.g. "jemalloc-5.3.0" or "libc".
	Allocator string
	// ActiveDefragRunning is active_defrag_running: the share of CPU active
	// defragmentation is using now (0 when it is idle or off).
	ActiveDefragRunning int64
}

// Persistence is the persistence section.
type Persistence struct {
	// Loading is true while the node loads its dataset from disk.
	Loading bool
	// RDBChangesSinceLastSave is rdb_changes_since_last_save.
	RDBChangesSinceLastSave int64
	// RDBSaveInProgress is rdb_bgsave_in_progress.
	RDBSaveInProgress bool
	// RDBLastSaveTime is rdb_last_save_time, in Unix seconds.
	RDBLastSaveTime int64
	// RDBLastSaveOK is rdb_last_bgsave_status:ok. With
	// stop-writes-on-bgsave-error (the default) a failed snapshot makes
	// the node refuse writes.
	RDBLastSaveOK bool
	// AOFEnabled is aof_enabled.
	AOFEnabled bool
	// AOFRewriteInProgress is aof_rewrite_in_progress.
	AOFRewriteInProgress bool
	// AOFLastRewriteOK is aof_last_bgrewrite_status:ok.
	AOFLastRewriteOK bool
	// AOFLastWriteOK is aof_last_write_status:ok: the last write (and
	// fsync) of the append-only file succeeded.
	AOFLastWriteOK bool
}

// Stats is the stats section (counters since the process started).
type Stats struct {
	TotalConnectionsReceived int64
	TotalCommandsProcessed   int64
	// RejectedConnections counts connections refused because maxclients
	// was reached.
	RejectedConnections int64
	ExpiredKeys         int64
	// EvictedKeys counts keys removed to stay under maxmemory.
	EvictedKeys    int64
	KeyspaceHits   int64
	KeyspaceMisses int64
}

// HitRatio is KeyspaceHits / (KeyspaceHits + KeyspaceMisses); ok is false
// before the first lookup.
func (s Stats) HitRatio() (ratio float64, ok bool) {
	total := s.KeyspaceHits + s.KeyspaceMisses
	if total <= 0 {
		return 0, false
	}
	return float64(s.KeyspaceHits) / float64(total), true
}

// Role is a node's replication role.
type Role string

// Roles as INFO reports them.
const (
	RolePrimary Role = "master"
	RoleReplica Role = "slave"
)

// Replication is the replication section.
type Replication struct {
	Role Role
	// Offset is master_repl_offset: on a primary, how far its replication
	// stream has got; on a replica, how far it has applied it.
	Offset int64
	// ConnectedReplicas is connected_slaves.
	ConnectedReplicas int64
	// Replicas are the slaveN lines of a primary.
	Replicas []ReplicaLink

	// The fields below are a replica's view of its primary.

	// PrimaryAddr is master_host:master_port.
	PrimaryAddr string
	// LinkUp is master_link_status:up.
	LinkUp bool
	// SyncInProgress is master_sync_in_progress: a full sync is running.
	SyncInProgress bool
	// ReplicaOffset is slave_repl_offset.
	ReplicaOffset int64
	// LinkDownSeconds is master_link_down_since_seconds; -1 when the link
	// never came up or is up.
	LinkDownSeconds int64
}

// ReplicaLink is how a primary sees one of its replicas (a slaveN line).
type ReplicaLink struct {
	// Addr is ip:port.
	Addr string
	// State is online, wait_bgsave, send_bulk, …
	State string
	// Offset is the offset the replica last acknowledged (once a second).
	Offset int64
	// LagSeconds is the time since that acknowledgement.
	LagSeconds int64
}

// Keyspace is one dbN line.
type Keyspace struct {
	DB      int
	Keys    int64
	Expires int64
	// AvgTTLMillis is avg_ttl, the average remaining TTL of keys with one.
	AvgTTLMillis int64
}

// Keys is the number of keys in every database.
func (i Info) Keys() int64 {
	var n int64
	for _, k := range i.Keyspace {
		n += k.Keys
	}
	return n
}

// Expires is the number of keys with a TTL in every database; Keys less
// Expires is what stays until deleted or evicted.
func (i Info) Expires() int64 {
	var n int64
	for _, k := range i.Keyspace {
		n += k.Expires
	}
	return n
}

// field parses one INFO value into the snapshot.
type field func(i *Info, v string) error

func intField(get func(*Info) *int64) field {
	return func(i *Info, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		*get(i) = n
		return nil
	}
}

func floatField(get func(*Info) *float64) field {
	return func(i *Info, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", v)
		}
		*get(i) = f
		return nil
	}
}

// flagField parses 0/1.
func flagField(get func(*Info) *bool) field {
	return func(i *Info, v string) error {
		switch v {
		case "0":
			*get(i) = false
		case "1":
			*get(i) = true
		default:
			return fmt.Errorf("not 0 or 1: %q", v)
		}
		return nil
	}
}

// statusField parses ok/err.
func statusField(get func(*Info) *bool) field {
	return func(i *Info, v string) error {
		switch v {
		case "ok":
			*get(i) = true
		case "err":
			*get(i) = false
		default:
			return fmt.Errorf("not ok or err: %q", v)
		}
		return nil
	}
}

func stringField(get func(*Info) *string) field {
	return func(i *Info, v string) error {
		*get(i) = v
		return nil
	}
}

// fields are the INFO fields the snapshot holds. Names are unique across
// sections, so one table serves all of them.
var fields = map[string]field{
	"redis_version":     stringField(func(i *Info) *string { return &i.Server.Version }),
	"redis_mode":        stringField(func(i *Info) *string { return &i.Server.Mode }),
	"run_id":            stringField(func(i *Info) *string { return &i.Server.RunID }),
	"uptime_in_seconds": intField(func(i *Info) *int64 { return &i.Server.UptimeSeconds }),
	"server_time_usec":  intField(func(i *Info) *int64 { return &i.Server.TimeMicros }),

	"connected_clients":   intField(func(i *Info) *int64 { return &i.Clients.Connected }),
	"blocked_clients":     intField(func(i *Info) *int64 { return &i.Clients.Blocked }),
	"maxclients":          intField(func(i *Info) *int64 { return &i.Clients.MaxClients }),
	"cluster_connections": intField(func(i *Info) *int64 { return &i.Clients.ClusterConnections }),

	"used_memory":               intField(func(i *Info) *int64 { return &i.Memory.Used }),
	"used_memory_rss":           intField(func(i *Info) *int64 { return &i.Memory.RSS }),
	"used_memory_peak":          intField(func(i *Info) *int64 { return &i.Memory.Peak }),
	"used_memory_dataset":       intField(func(i *Info) *int64 { return &i.Memory.Dataset }),
	"maxmemory":                 intField(func(i *Info) *int64 { return &i.Memory.Max }),
	"maxmemory_policy":          stringField(func(i *Info) *string { return &i.Memory.Policy }),
	"mem_not_counted_for_evict": intField(func(i *Info) *int64 { return &i.Memory.NotCountedForEvict }),
	"mem_fragmentation_ratio":   floatField(func(i *Info) *float64 { return &i.Memory.FragmentationRatio }),
	"mem_fragmentation_bytes":   intField(func(i *Info) *int64 { return &i.Memory.FragmentationBytes }),
	"mem_allocator":             stringField(func(i *Info) *string { return &i.Memory.Allocator }),
	"active_defrag_running":     intField(func(i *Info) *int64 { return &i.Memory.ActiveDefragRunning }),

	"loading":                     flagField(func(i *Info) *bool { return &i.Persistence.Loading }),
	"rdb_changes_since_last_save": intField(func(i *Info) *int64 { return &i.Persistence.RDBChangesSinceLastSave }),
	"rdb_bgsave_in_progress":      flagField(func(i *Info) *bool { return &i.Persistence.RDBSaveInProgress }),
	"rdb_last_save_time":          intField(func(i *Info) *int64 { return &i.Persistence.RDBLastSaveTime }),
	"rdb_last_bgsave_status":      statusField(func(i *Info) *bool { return &i.Persistence.RDBLastSaveOK }),
	"aof_enabled":                 flagField(func(i *Info) *bool { return &i.Persistence.AOFEnabled }),
	"aof_rewrite_in_progress":     flagField(func(i *Info) *bool { return &i.Persistence.AOFRewriteInProgress }),
	"aof_last_bgrewrite_status":   statusField(func(i *Info) *bool { return &i.Persistence.AOFLastRewriteOK }),
	"aof_last_write_status":       statusField(func(i *Info) *bool { return &i.Persistence.AOFLastWriteOK }),

	"total_connections_received": intField(func(i *Info) *int64 { return &i.Stats.TotalConnectionsReceived }),
	"total_commands_processed":   intField(func(i *Info) *int64 { return &i.Stats.TotalCommandsProcessed }),
	"rejected_connections":       intField(func(i *Info) *int64 { return &i.Stats.RejectedConnections }),
	"expired_keys":               intField(func(i *Info) *int64 { return &i.Stats.ExpiredKeys }),
	"evicted_keys":               intField(func(i *Info) *int64 { return &i.Stats.EvictedKeys }),
	"keyspace_hits":              intField(func(i *Info) *int64 { return &i.Stats.KeyspaceHits }),
	"keyspace_misses":            intField(func(i *Info) *int64 { return &i.Stats.KeyspaceMisses }),

	"role": func(i *Info, v string) error {
		switch Role(v) {
		case RolePrimary, RoleReplica:
			i.Replication.Role = Role(v)
			return nil
		}
		return fmt.Errorf("not master or slave: %q", v)
	},
	"master_repl_offset":             intField(func(i *Info) *int64 { return &i.Replication.Offset }),
	"connected_slaves":               intField(func(i *Info) *int64 { return &i.Replication.ConnectedReplicas }),
	"master_host":                    stringField(func(i *Info) *string { return &i.Replication.PrimaryAddr }),
	"master_port":                    func(i *Info, v string) error { return primaryPort(i, v) },
	"master_link_status":             func(i *Info, v string) error { i.Replication.LinkUp = v == "up"; return nil },
	"master_sync_in_progress":        flagField(func(i *Info) *bool { return &i.Replication.SyncInProgress }),
	"slave_repl_offset":              intField(func(i *Info) *int64 { return &i.Replication.ReplicaOffset }),
	"master_link_down_since_seconds": intField(func(i *Info) *int64 { return &i.Replication.LinkDownSeconds }),
}

// primaryPort joins master_port onto master_host, which INFO prints first.
func primaryPort(i *Info, v string) error {
	if _, err := strconv.Atoi(v); err != nil {
		return fmt.Errorf("not a port: %q", v)
	}
	i.Replication.PrimaryAddr = net.JoinHostPort(i.Replication.PrimaryAddr, v)
	return nil
}

// Parse reads the text of one INFO reply. It reports every field that does
// not parse, joined; the snapshot is then incomplete and should not be used.
func Parse(text string) (Info, error) {
	var (
		info Info
		errs []error
	)
	info.Replication.LinkDownSeconds = -1
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if name, ok := strings.CutPrefix(line, "#"); ok {
			info.sections = append(info.sections, strings.ToLower(strings.TrimSpace(name)))
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			errs = append(errs, fmt.Errorf("line %q: no colon", line))
			continue
		}
		var err error
		switch {
		case fields[key] != nil:
			err = fields[key](&info, value)
		case isIndexed(key, "slave"):
			var r ReplicaLink
			if r, err = parseReplica(value); err == nil {
				info.Replication.Replicas = append(info.Replication.Replicas, r)
			}
		case isIndexed(key, "db"):
			var k Keyspace
			if k, err = parseKeyspace(key, value); err == nil {
				info.Keyspace = append(info.Keyspace, k)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	slices.SortFunc(info.Keyspace, func(a, b Keyspace) int { return a.DB - b.DB })
	if err := errors.Join(errs...); err != nil {
		return info, fmt.Errorf("parse INFO: %w", err)
	}
	return info, nil
}

// isIndexed reports whether key is prefix followed by digits only (slave0,
// db15), which tells these lines from slave_repl_offset and friends.
func isIndexed(key, prefix string) bool {
	n, ok := strings.CutPrefix(key, prefix)
	if !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 32)
	return err == nil
}

// pairs splits "a=1,b=2" into a map.
func pairs(v string) map[string]string {
	m := map[string]string{}
	for kv := range strings.SplitSeq(v, ",") {
		k, val, _ := strings.Cut(kv, "=")
		m[k] = val
	}
	return m
}

func parseReplica(v string) (ReplicaLink, error) {
	p := pairs(v)
	offset, err1 := strconv.ParseInt(p["offset"], 10, 64)
	lag, err2 := strconv.ParseInt(p["lag"], 10, 64)
	if p["ip"] == "" || p["port"] == "" || err1 != nil || err2 != nil {
		return ReplicaLink{}, fmt.Errorf("want ip=,port=,state=,offset=,lag=, got %q", v)
	}
	return ReplicaLink{Addr: net.JoinHostPort(p["ip"], p["port"]), State: p["state"], Offset: offset, LagSeconds: lag}, nil
}

func parseKeyspace(key, v string) (Keyspace, error) {
	db, _ := strconv.Atoi(strings.TrimPrefix(key, "db"))
	p := pairs(v)
	keys, err1 := strconv.ParseInt(p["keys"], 10, 64)
	expires, err2 := strconv.ParseInt(p["expires"], 10, 64)
	ttl, err3 := strconv.ParseInt(p["avg_ttl"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Keyspace{}, fmt.Errorf("want keys=,expires=,avg_ttl=, got %q", v)
	}
	return Keyspace{DB: db, Keys: keys, Expires: expires, AvgTTLMillis: ttl}, nil
}

// EvictionUsed is the memory Redis compares with maxmemory before a write:
// Used less the replication and AOF buffers it does not count
// (evict.c, getMaxmemoryState). A noeviction node refuses writes with OOM
// once it reaches Max.
func (m Memory) EvictionUsed() int64 { return max(0, m.Used-m.NotCountedForEvict) }
