package redisconf

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

func TestRenderProfiles(t *testing.T) {
	head := "# Rendered by the Gatehouse operator; edit the RedisCluster, not this file.\n" +
		"port 6379\ndir /data\ncluster-enabled yes\ncluster-config-file nodes.conf\n" +
		"cluster-node-timeout 5000\ncluster-preferred-endpoint-type hostname\n"
	defrag := "active-defrag-ignore-bytes 100mb\nactive-defrag-threshold-lower 10\nactive-defrag-threshold-upper 50\n" +
		"active-defrag-cycle-min 1\nactive-defrag-cycle-max 25\n"
	tests := []struct {
		name   string
		params Params
		want   string
	}{
		{
			name:   "cache is the baseline without AOF",
			params: Params{Profile: Cache},
			want: head + "maxmemory 8gb\nmaxmemory-policy allkeys-lru\nsave 900 1\nsave 300 10\nsave 60 10000\n" +
				"appendonly no\nappendfsync everysec\nhz 10\ndynamic-hz yes\ntcp-backlog 511\ntimeout 300\n" + defrag,
		},
		{
			name:   "durable never evicts and keeps the AOF",
			params: Params{Profile: Durable},
			want: head + "maxmemory 8gb\nmaxmemory-policy noeviction\nsave 900 1\nsave 300 10\nsave 60 10000\n" +
				"appendonly yes\nappendfsync everysec\nhz 10\ndynamic-hz yes\ntcp-backlog 511\ntimeout 300\n" + defrag,
		},
		{
			name: "overrides replace baseline values and add sorted directives",
			params: Params{
				Profile: Durable, Port: 7000, BusPort: 17000, Dir: "/var/lib/redis",
				NodeTimeout: 2 * time.Second, AnnounceHostname: "rc-0.rc-headless.ns.svc",
				Overrides: map[string]string{"MaxMemory": "2GB", "save": "", "timeout": "0", "slowlog-max-len": "256", "active-defrag-threshold-upper": "80"},
			},
			want: "# Rendered by the Gatehouse operator; edit the RedisCluster, not this file.\n" +
				"port 7000\ndir /var/lib/redis\ncluster-enabled yes\ncluster-config-file nodes.conf\n" +
				"cluster-node-timeout 2000\ncluster-preferred-endpoint-type hostname\ncluster-port 17000\n" +
				"cluster-announce-hostname rc-0.rc-headless.ns.svc\n" +
				"maxmemory 2gb\nmaxmemory-policy noeviction\nsave \"\"\n" +
				"appendonly yes\nappendfsync everysec\nhz 10\ndynamic-hz yes\ntcp-backlog 511\ntimeout 0\n" +
				"active-defrag-ignore-bytes 100mb\nactive-defrag-threshold-lower 10\nactive-defrag-threshold-upper 80\n" +
				"active-defrag-cycle-min 1\nactive-defrag-cycle-max 25\n" +
				"slowlog-max-len 256\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.params)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("redis.conf (-want +got):\n%s", diff)
			}
			// Rendering is deterministic: map order must not leak into the file.
			for range 20 {
				again, _ := Render(tt.params)
				if again != got {
					t.Fatal("Render is not deterministic")
				}
			}
		})
	}
}

func TestRenderRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		params  Params
		wantErr error
		wantMsg []string
	}{
		{"operator owned", Params{Overrides: map[string]string{"cluster-enabled": "no"}}, ErrOperatorOwned, nil},
		{"password", Params{Overrides: map[string]string{"requirepass": "x"}}, ErrOperatorOwned, nil},
		{"port", Params{Overrides: map[string]string{"Port": "1"}}, ErrOperatorOwned, nil},
		{"rename-command", Params{Overrides: map[string]string{"rename-command": "FLUSHALL \"\""}}, ErrOperatorOwned, nil},
		{"loadmodule", Params{Overrides: map[string]string{"loadmodule": "/x.so"}}, ErrOperatorOwned, nil},
		// A build without defragmentation support (Debian's) would refuse
		// to start on the rendered file.
		{"activedefrag", Params{Overrides: map[string]string{"activedefrag": "yes"}}, ErrOperatorOwned, nil},
		{"unknown", Params{Overrides: map[string]string{"maxmemroy": "1gb"}}, ErrUnknown, nil},
		{"bad policy", Params{Overrides: map[string]string{"maxmemory-policy": "lru"}}, nil, []string{"maxmemory-policy", "not one of"}},
		{"bad size", Params{Overrides: map[string]string{"maxmemory": "8 gigs"}}, nil, []string{"not a size"}},
		{"bad save", Params{Overrides: map[string]string{"save": "900"}}, nil, []string{"pairs"}},
		{"line break injection", Params{Overrides: map[string]string{"loglevel": "notice\nloadmodule /x.so"}}, nil, []string{"line breaks"}},
		{"hz range", Params{Overrides: map[string]string{"hz": "1000"}}, nil, []string{"[1, 500]"}},
		{"profile", Params{Profile: "Fast"}, nil, []string{"profile"}},
		{"duplicate by case", Params{Overrides: map[string]string{"hz": "20", "HZ": "30"}}, nil, []string{"more than once"}},
		{"durable never evicts", Params{Profile: Durable, Overrides: map[string]string{"maxmemory-policy": "volatile-lru"}}, nil, []string{"never evicts"}},
		{"durable keeps its AOF", Params{Profile: Durable, Overrides: map[string]string{"appendonly": "no"}}, nil, []string{"append-only"}},
		{"reports every problem", Params{Overrides: map[string]string{"hz": "0", "appendfsync": "sometimes"}}, nil, []string{`"hz"`, `"appendfsync"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Render(tt.params)
			if err == nil {
				t.Fatal("Render accepted invalid input")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	p := Params{Profile: Durable, Overrides: map[string]string{"notify-keyspace-events": "Ex", "client-output-buffer-limit": "pubsub 32mb 8mb 60"}}
	want, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(Format(want))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse(Format(x)) (-want +got):\n%s", diff)
	}
}

func TestCompareAndHashes(t *testing.T) {
	base := Params{Profile: Durable}
	tests := []struct {
		name        string
		to          Params
		want        Update
		restartSame bool
	}{
		{"nothing", base, Update{}, true},
		{
			"live only",
			Params{Profile: Durable, Overrides: map[string]string{"maxmemory": "4gb", "save": "3600 1"}},
			Update{Live: []Change{{"maxmemory", "8gb", "4gb"}, {"save", "900 1 300 10 60 10000", "3600 1"}}},
			true,
		},
		{
			"profile switch is live",
			Params{Profile: Cache},
			Update{Live: []Change{{"appendonly", "yes", "no"}, {"maxmemory-policy", "noeviction", "allkeys-lru"}}},
			true,
		},
		{
			"restart for start-up settings",
			Params{Profile: Durable, Port: 7000, Overrides: map[string]string{"tcp-backlog": "1024", "hz": "20"}},
			Update{
				Live:    []Change{{"hz", "10", "20"}},
				Restart: []Change{{"port", "6379", "7000"}, {"tcp-backlog", "511", "1024"}},
			},
			false,
		},
		{
			"added directive is live",
			Params{Profile: Durable, Overrides: map[string]string{"slowlog-max-len": "64"}},
			Update{Live: []Change{{"slowlog-max-len", "", "64"}}},
			true,
		},
	}
	old, err := Build(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nw, err := Build(tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, Compare(old, nw)); diff != "" {
				t.Errorf("Compare (-want +got):\n%s", diff)
			}
			if got := RestartHash(old) == RestartHash(nw); got != tt.restartSame {
				t.Errorf("restart hash unchanged = %v, want %v", got, tt.restartSame)
			}
			if got := Hash(Format(old)) == Hash(Format(nw)); got != (len(tt.want.Live)+len(tt.want.Restart) == 0) {
				t.Errorf("content hash unchanged = %v with update %+v", got, tt.want)
			}
		})
	}
	// A removed override cannot be expressed as CONFIG SET: it rolls.
	u := Compare([]Directive{{"slowlog-max-len", "64"}}, nil)
	if diff := cmp.Diff(Update{Restart: []Change{{"slowlog-max-len", "64", ""}}}, u); diff != "" {
		t.Errorf("removal (-want +got):\n%s", diff)
	}
}

// TestRenderedFileStartsRedis runs the real server on the rendered file, so a
// misspelt directive or a value Redis rejects fails here rather than in a
// crash-looping pod. Port, dir and the bus port are the test helper's.
func TestRenderedFileStartsRedis(t *testing.T) {
	for _, profile := range []Profile{Cache, Durable} {
		t.Run(string(profile), func(t *testing.T) {
			overrides := everyLiveOverride()
			if profile == Durable {
				overrides["maxmemory-policy"] = "noeviction"
			}
			ds, err := Build(Params{Profile: profile, AnnounceHostname: "node-0.example", Overrides: overrides})
			if err != nil {
				t.Fatal(err)
			}
			var extra []string
			for line := range strings.SplitSeq(Format(ds), "\n") {
				name, _, _ := strings.Cut(line, " ")
				if name == "port" || name == "dir" || name == "cluster-port" || line == "" {
					continue
				}
				extra = append(extra, line)
			}
			srv := redistest.StartNode(t, extra...)
			ctx := context.Background()
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer c.Close()
			for _, d := range ds {
				if d.Name == "port" || d.Name == "dir" || d.Name == "cluster-port" {
					continue
				}
				got, err := c.ConfigGet(ctx, d.Name).Result()
				if err != nil {
					t.Fatalf("CONFIG GET %s: %v", d.Name, err)
				}
				if !sameValue(d.Name, d.Value, got[d.Name]) {
					t.Errorf("%s = %q on the server, rendered %q", d.Name, got[d.Name], d.Value)
				}
			}
		})
	}
}

// TestLiveDirectivesAreSettable proves the live/restart split against the
// real server: every directive called live must be accepted by CONFIG SET,
// and every allowed restart-only one must be refused by it.
func TestLiveDirectivesAreSettable(t *testing.T) {
	srv := redistest.StartStandalone(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	for name, value := range everyLiveOverride() {
		if err := c.ConfigSet(ctx, name, value).Err(); err != nil {
			t.Errorf("CONFIG SET %s %q: %v (classified live)", name, value, err)
		}
	}
	for name := range rules {
		if Live(name) {
			continue
		}
		if err := c.ConfigSet(ctx, name, "1").Err(); err == nil {
			t.Errorf("CONFIG SET %s accepted, but it is classified restart-only", name)
		}
	}
	u := Update{Live: []Change{{Name: "maxmemory", New: "1gb"}, {Name: "hz", New: "25"}}}
	if err := c.Do(ctx, ConfigSetArgs(u.Live)...).Err(); err != nil {
		t.Fatalf("ConfigSetArgs: %v", err)
	}
	if got := c.ConfigGet(ctx, "hz").Val()["hz"]; got != "25" {
		t.Errorf("hz = %q after CONFIG SET, want 25", got)
	}
}

// everyLiveOverride has a valid, non-default value for every live directive.
func everyLiveOverride() map[string]string {
	values := map[string]string{
		"maxmemory": "1gb", "maxmemory-policy": "allkeys-lfu", "maxmemory-samples": "7",
		"maxmemory-eviction-tenacity": "20", "save": "3600 1 300 100", "appendonly": "yes",
		"appendfsync": "everysec", "no-appendfsync-on-rewrite": "yes", "auto-aof-rewrite-percentage": "50",
		"auto-aof-rewrite-min-size": "32mb", "aof-use-rdb-preamble": "yes", "stop-writes-on-bgsave-error": "no",
		"rdbcompression": "yes", "hz": "20", "dynamic-hz": "no", "timeout": "60", "tcp-keepalive": "60",
		"maxclients": "5000", "loglevel": "warning", "slowlog-log-slower-than": "5000", "slowlog-max-len": "64",
		"latency-monitor-threshold": "50", "notify-keyspace-events": "Ex", "lazyfree-lazy-eviction": "yes",
		"lazyfree-lazy-expire": "yes", "lazyfree-lazy-server-del": "yes", "lazyfree-lazy-user-del": "yes",
		"lazyfree-lazy-user-flush": "yes", "replica-lazy-flush": "yes",
		"active-defrag-ignore-bytes": "200mb", "active-defrag-threshold-lower": "15", "active-defrag-threshold-upper": "70",
		"active-defrag-cycle-min": "2", "active-defrag-cycle-max": "30", "active-defrag-max-scan-fields": "500",
		"active-expire-effort": "2", "lfu-log-factor": "12", "lfu-decay-time": "2", "busy-reply-threshold": "6000",
		"repl-backlog-size": "16mb", "repl-diskless-sync": "yes", "repl-timeout": "90", "min-replicas-to-write": "0",
		"min-replicas-max-lag": "15", "client-output-buffer-limit": "pubsub 64mb 16mb 60",
		"cluster-require-full-coverage": "no", "cluster-allow-reads-when-down": "yes",
		"cluster-replica-validity-factor": "0", "cluster-migration-barrier": "1",
		"cluster-allow-replica-migration": "no", "hash-max-listpack-entries": "256",
		"hash-max-listpack-value": "128", "zset-max-listpack-entries": "256", "zset-max-listpack-value": "128",
		"set-max-intset-entries": "1024",
	}
	for name := range rules {
		if _, ok := values[name]; !ok && Live(name) {
			// A new live directive without a test value fails loudly.
			values[name] = "missing test value"
		}
	}
	return values
}

// sameValue compares a rendered value with what CONFIG GET reports: sizes
// come back in bytes and some lists with normalised spacing.
func sameValue(name, rendered, server string) bool {
	if rendered == server {
		return true
	}
	switch name {
	case "maxmemory", "repl-backlog-size", "auto-aof-rewrite-min-size", "active-defrag-ignore-bytes":
		return bytes(rendered) == server
	case "notify-keyspace-events":
		a, b := []rune(rendered), []rune(server)
		slices.Sort(a)
		slices.Sort(b)
		return string(a) == string(b)
	case "client-output-buffer-limit":
		return strings.Contains(server, "pubsub 67108864 16777216 60")
	}
	return false
}

func bytes(v string) string {
	units := map[string]int64{"gb": 1 << 30, "mb": 1 << 20, "kb": 1 << 10}
	for suffix, mul := range units {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			x, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return v
			}
			return strconv.FormatInt(x*mul, 10)
		}
	}
	return v
}
