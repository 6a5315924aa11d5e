package redisinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The files under testdata are INFO replies of real redis-server 7.0
// processes, captured by testdata/capture.sh in the scenarios their names
// give. The expected values below were read off those files.

func parseFile(t *testing.T, name string) Info {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	info, err := Parse(string(b))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return info
}

var allSections = []string{"server", "clients", "memory", "persistence", "stats", "replication", "keyspace"}

func TestParseCapturedPrimaryAndReplica(t *testing.T) {
	tests := []struct {
		file string
		want Info
	}{{
		// A cluster-mode primary with one online replica, 350 keys (50 with
		// a TTL), 200 hits, 60 misses (40 unknown keys, 20 expired ones).
		file: "cluster-primary.txt",
		want: Info{
			Server:  Server{Version: "7.0.15", Mode: "cluster", RunID: "b58bfc8e5bb1a3000771de14464563920f922e2c", UptimeSeconds: 4, TimeMicros: 1796120681200897},
			Clients: Clients{Connected: 1, Blocked: 0, MaxClients: 10000, ClusterConnections: 2},
			Memory: Memory{Used: 1973728, RSS: 13565952, Peak: 2110696, Dataset: 324772, Max: 0, Policy: "noeviction",
				FragmentationRatio: 7.02, FragmentationBytes: 11632888, Allocator: "jemalloc-5.3.0"},
			Persistence: Persistence{RDBChangesSinceLastSave: 370, RDBLastSaveTime: 1796120677, RDBLastSaveOK: true,
				AOFLastRewriteOK: true, AOFLastWriteOK: true},
			Stats: Stats{TotalConnectionsReceived: 27, TotalCommandsProcessed: 663, ExpiredKeys: 20,
				KeyspaceHits: 200, KeyspaceMisses: 60},
			Replication: Replication{Role: RolePrimary, Offset: 14250, ConnectedReplicas: 1, LinkDownSeconds: -1,
				Replicas: []ReplicaLink{{Addr: "127.0.0.1:50267", State: "online", Offset: 14250, LagSeconds: 1}}},
			Keyspace: []Keyspace{{DB: 0, Keys: 350, Expires: 50, AvgTTLMillis: 3599185}},
			sections: allSections,
		},
	}, {
		file: "cluster-replica.txt",
		want: Info{
			Server:  Server{Version: "7.0.15", Mode: "cluster", RunID: "c9166f09d5246605ce4fb479640dfd3e0881eeb6", UptimeSeconds: 4, TimeMicros: 1796120681317217},
			Clients: Clients{Connected: 2, MaxClients: 10000, ClusterConnections: 2},
			Memory: Memory{Used: 1879704, RSS: 13041664, Peak: 1887024, Dataset: 228484, Policy: "noeviction",
				FragmentationRatio: 7.09, FragmentationBytes: 11202624, Allocator: "jemalloc-5.3.0"},
			Persistence: Persistence{RDBChangesSinceLastSave: 390, RDBLastSaveTime: 1796120677, RDBLastSaveOK: true,
				AOFLastRewriteOK: true, AOFLastWriteOK: true},
			Stats: Stats{TotalConnectionsReceived: 7, TotalCommandsProcessed: 397},
			Replication: Replication{Role: RoleReplica, Offset: 14250, PrimaryAddr: "127.0.0.1:29026", LinkUp: true,
				ReplicaOffset: 14250, LinkDownSeconds: -1},
			Keyspace: []Keyspace{{DB: 0, Keys: 350, Expires: 50}},
			sections: allSections,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got := parseFile(t, tt.file)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(Info{})); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseCapturedScenarios checks, for each captured failure scenario,
// the fields that make it that scenario.
func TestParseCapturedScenarios(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, i Info)
	}{
		{"standalone-empty.txt", func(t *testing.T, i Info) {
			want := Info{
				Server:      Server{Version: "7.0.15", Mode: "standalone", RunID: i.Server.RunID, UptimeSeconds: i.Server.UptimeSeconds, TimeMicros: 1796120677000240},
				Clients:     Clients{Connected: 1, MaxClients: 10000},
				Persistence: Persistence{RDBLastSaveTime: i.Persistence.RDBLastSaveTime, RDBLastSaveOK: true, AOFLastRewriteOK: true, AOFLastWriteOK: true},
				Stats:       Stats{TotalConnectionsReceived: 2, TotalCommandsProcessed: 1},
				Replication: Replication{Role: RolePrimary, LinkDownSeconds: -1},
				Memory: Memory{Used: 941784, RSS: 12173312, Peak: 941784, Dataset: 65288, Policy: "noeviction",
					FragmentationRatio: 13.62, FragmentationBytes: 11279240, Allocator: "jemalloc-5.3.0"},
				sections: allSections,
			}
			if diff := cmp.Diff(want, i, cmp.AllowUnexported(Info{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// An empty node's ratio is large and means nothing: what
			// redishealth's minimum fragmented bytes is for.
			if i.Keys() != 0 || i.Memory.FragmentationRatio < 10 {
				t.Errorf("keys %d, ratio %v", i.Keys(), i.Memory.FragmentationRatio)
			}
		}},
		{"info-default.txt", func(t *testing.T, i Info) {
			// A plain INFO also has cpu, modules, errorstats and cluster:
			// recorded as present, otherwise ignored.
			for _, s := range []string{"cpu", "modules", "errorstats", "cluster", "memory", "keyspace"} {
				if !i.Has(s) {
					t.Errorf("section %s not recorded", s)
				}
			}
			if i.Memory.Used != 966440 || i.Clients.MaxClients != 10000 {
				t.Errorf("used %d maxclients %d", i.Memory.Used, i.Clients.MaxClients)
			}
		}},
		{"maxclients-rejected.txt", func(t *testing.T, i Info) {
			// maxclients 2: two connections held, five more refused.
			if i.Clients.MaxClients != 2 || i.Stats.RejectedConnections != 5 {
				t.Errorf("maxclients %d rejected %d, want 2 and 5", i.Clients.MaxClients, i.Stats.RejectedConnections)
			}
		}},
		{"noeviction-full.txt", func(t *testing.T, i Info) {
			m := i.Memory
			if m.Policy != "noeviction" || m.Max != 3145728 || m.Used != 3148096 || i.Stats.EvictedKeys != 0 {
				t.Errorf("memory %+v evicted %d", m, i.Stats.EvictedKeys)
			}
			if m.EvictionUsed() < m.Max {
				t.Errorf("a node refusing writes with OOM uses %d of %d", m.EvictionUsed(), m.Max)
			}
		}},
		{"allkeys-lru-evicting.txt", func(t *testing.T, i Info) {
			if i.Memory.Policy != "allkeys-lru" || i.Stats.EvictedKeys != 18011 || i.Keys() != 1989 {
				t.Errorf("policy %s evicted %d keys %d", i.Memory.Policy, i.Stats.EvictedKeys, i.Keys())
			}
		}},
		{"persistence-failing.txt", func(t *testing.T, i Info) {
			want := Persistence{RDBChangesSinceLastSave: 1, RDBLastSaveTime: 1796120685, RDBLastSaveOK: false,
				AOFEnabled: true, AOFLastRewriteOK: false, AOFLastWriteOK: true}
			if diff := cmp.Diff(want, i.Persistence); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if i.Memory.NotCountedForEvict != 112 {
				t.Errorf("mem_not_counted_for_evict %d, want the AOF buffer's 112", i.Memory.NotCountedForEvict)
			}
		}},
		{"replica-link-down.txt", func(t *testing.T, i Info) {
			want := Replication{Role: RoleReplica, Offset: 14250, PrimaryAddr: "127.0.0.1:29026", ReplicaOffset: 14250, LinkDownSeconds: 0}
			if diff := cmp.Diff(want, i.Replication); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
		{"replica-awaiting-sync.txt", func(t *testing.T, i Info) {
			want := Replication{Role: RoleReplica, PrimaryAddr: "127.0.0.1:51818", LinkDownSeconds: -1}
			if diff := cmp.Diff(want, i.Replication); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
		{"primary-waiting-bgsave.txt", func(t *testing.T, i Info) {
			want := []ReplicaLink{{Addr: "127.0.0.1:39839", State: "wait_bgsave"}}
			if diff := cmp.Diff(want, i.Replication.Replicas); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) { tt.check(t, parseFile(t, tt.file)) })
	}
}

// TestParseRefusesBadValues: a field the snapshot names must parse; a
// silent zero would read as "no rejected connections" or "no memory used".
func TestParseRefusesBadValues(t *testing.T) {
	tests := []struct {
		name, text string
		wantErrs   []string
	}{
		{"integer", "# Stats\r\nrejected_connections:many\r\n", []string{"rejected_connections: not an integer"}},
		{"ratio", "mem_fragmentation_ratio:1,5\n", []string{"mem_fragmentation_ratio: not a number"}},
		{"status", "rdb_last_bgsave_status:failed\n", []string{"rdb_last_bgsave_status: not ok or err"}},
		{"flag", "loading:yes\n", []string{"loading: not 0 or 1"}},
		{"role", "role:primary\n", []string{"role: not master or slave"}},
		{"replica line", "slave0:ip=10.0.0.1,state=online\n", []string{"slave0: want ip="}},
		{"keyspace line", "db0:keys=ten,expires=0,avg_ttl=0\n", []string{"db0: want keys="}},
		{"no colon", "used_memory 12\n", []string{`line "used_memory 12": no colon`}},
		{"every problem at once", "used_memory:x\nmaxmemory:y\n", []string{"used_memory:", "maxmemory:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", tt.text)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestParseToleratesWhatItDoesNotKnow(t *testing.T) {
	// Unknown fields, unknown sections, indexed look-alikes (slave_priority
	// is not a slaveN line, dbfilename no dbN line), CRLF and blank lines.
	text := "# Server\r\nredis_version:7.4.0\r\nsome_future_field:what\r\n\r\n# Shiny\r\nshiny:1\r\n" +
		"# Replication\r\nrole:slave\r\nslave_priority:100\r\nslave_read_only:1\r\n# Keyspace\r\ndb3:keys=2,expires=1,avg_ttl=5\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"
	got, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{
		Server:      Server{Version: "7.4.0"},
		Replication: Replication{Role: RoleReplica, LinkDownSeconds: -1},
		Keyspace:    []Keyspace{{DB: 0, Keys: 1}, {DB: 3, Keys: 2, Expires: 1, AvgTTLMillis: 5}},
		sections:    []string{"server", "shiny", "replication", "keyspace"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Info{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got.Keys() != 3 || got.Expires() != 1 {
		t.Errorf("Keys() = %d, Expires() = %d; want 3 and 1", got.Keys(), got.Expires())
	}
}

func TestStarted(t *testing.T) {
	// The primary answered at 1796120681.200897 after 4s of uptime.
	got := parseFile(t, "cluster-primary.txt").Server.Started()
	if want := time.UnixMicro(1796120681200897 - 4_000_000); !got.Equal(want) {
		t.Errorf("Started() = %v, want %v", got, want)
	}
	if !(Server{UptimeSeconds: 5}).Started().IsZero() {
		t.Error("Started() without server_time_usec is not zero")
	}
}

func TestHitRatio(t *testing.T) {
	tests := []struct {
		stats  Stats
		want   float64
		wantOK bool
	}{
		{Stats{}, 0, false},
		{Stats{KeyspaceHits: 200, KeyspaceMisses: 60}, 200.0 / 260, true},
		{Stats{KeyspaceMisses: 5}, 0, true},
		{Stats{KeyspaceHits: 5}, 1, true},
	}
	for _, tt := range tests {
		got, ok := tt.stats.HitRatio()
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%+v.HitRatio() = %v, %v; want %v, %v", tt.stats, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestEvictionUsed(t *testing.T) {
	// Redis compares used_memory less mem_not_counted_for_evict with
	// maxmemory (evict.c, getMaxmemoryState).
	m := Memory{Used: 1000, NotCountedForEvict: 300}
	if got := m.EvictionUsed(); got != 700 {
		t.Errorf("EvictionUsed() = %d, want 700", got)
	}
	if got := (Memory{Used: 10, NotCountedForEvict: 50}).EvictionUsed(); got != 0 {
		t.Errorf("EvictionUsed() = %d, want 0 rather than negative", got)
	}
}
