// Package redisconf renders the redis.conf of a Gatehouse-managed Redis
// Cluster node: the project baseline, adjusted by a profile and by validated
// user overrides. Rendering is a pure function of plain Go values so that the
// operator, the local demo and tests produce byte-identical files, and so the
// content hash that rolls pods changes only when the configuration does.
//
// The package also tells which changed directives Redis accepts at runtime
// (CONFIG SET) and which need a rolling restart, so a change such as a new
// maxmemory does not restart a fleet of nodes.
package redisconf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile selects how a cluster trades memory pressure against data safety.
type Profile string

const (
	// Cache evicts least-recently-used keys under memory pressure and keeps
	// only RDB snapshots (a restarted node comes back warm, without paying a
	// per-second fsync). For data that can be recomputed: the response cache.
	Cache Profile = "Cache"
	// Durable never evicts (writes fail with OOM instead of silently dropping
	// keys) and appends every write to the AOF, fsynced every second. For data
	// whose loss is visible to users: sessions and rate-limit counters.
	Durable Profile = "Durable"
)

// Defaults used when the corresponding Params field is zero.
const (
	DefaultPort        = 6379
	DefaultDir         = "/data"
	DefaultNodeTimeout = 5 * time.Second
)

// Params are the inputs of Render. They are plain values on purpose: the
// caller maps its API object onto them.
type Params struct {
	// Profile is Cache or Durable; empty means Cache.
	Profile Profile
	// Port is the client port; 0 means DefaultPort.
	Port int
	// BusPort is the cluster bus port; 0 leaves Redis' default (Port+10000).
	BusPort int
	// Dir is the data directory (nodes.conf, RDB, AOF); "" means DefaultDir.
	Dir string
	// NodeTimeout is cluster-node-timeout; 0 means DefaultNodeTimeout.
	NodeTimeout time.Duration
	// AnnounceHostname is the stable name this node announces. A StatefulSet
	// shares one file between pods, so it usually leaves this empty and passes
	// --cluster-announce-hostname per pod on the command line instead.
	AnnounceHostname string
	// Overrides are user directives (name → value) applied last. Names are
	// case-insensitive; operator-owned and unknown directives are refused.
	Overrides map[string]string
}

// Directive is one configuration setting. Value is what CONFIG SET would
// take; "save" holds all its pairs in one value ("900 1 300 10") and renders
// as one line per pair.
type Directive struct {
	Name  string
	Value string
}

// baseline is the project's redis.conf (DESIGN.md), before profile and
// overrides. Order here is the rendered order.
var baseline = []Directive{
	{"maxmemory", "8gb"},
	{"maxmemory-policy", "allkeys-lru"},
	{"save", "900 1 300 10 60 10000"},
	{"appendonly", "yes"},
	{"appendfsync", "everysec"},
	{"hz", "10"},
	{"dynamic-hz", "yes"},
	{"tcp-backlog", "511"},
	{"timeout", "300"},
}

// defragThresholds tune active defragmentation: start when 10% of the
// memory is lost to fragmentation (and at least 100mb), work hardest at
// 50%, the ratio 1.5 at which a RedisCluster reports Fragmented, and never
// take more than a quarter of a core. Every build of redis-server accepts
// them; activedefrag itself is not rendered, because a build without
// defragmentation support (Debian's, linked with the system jemalloc)
// refuses to start with "activedefrag yes" in its file. The operator turns
// it on at run time with CONFIG SET where the build accepts it.
var defragThresholds = []Directive{
	{"active-defrag-ignore-bytes", "100mb"},
	{"active-defrag-threshold-lower", "10"},
	{"active-defrag-threshold-upper", "50"},
	{"active-defrag-cycle-min", "1"},
	{"active-defrag-cycle-max", "25"},
}

// Build returns the effective directives in a deterministic order: operator
// directives first, then the baseline as adjusted by the profile, then
// overrides that add directives, sorted by name. It reports every invalid
// override at once.
func Build(p Params) ([]Directive, error) {
	profile := p.Profile
	if profile == "" {
		profile = Cache
	}
	if profile != Cache && profile != Durable {
		return nil, fmt.Errorf("profile %q: must be %s or %s", p.Profile, Cache, Durable)
	}
	port := p.Port
	if port == 0 {
		port = DefaultPort
	}
	dir := p.Dir
	if dir == "" {
		dir = DefaultDir
	}
	timeout := p.NodeTimeout
	if timeout == 0 {
		timeout = DefaultNodeTimeout
	}
	if port < 1 || port > 65535 || p.BusPort < 0 || p.BusPort > 65535 {
		return nil, fmt.Errorf("ports %d/%d: out of range", port, p.BusPort)
	}
	if timeout < 100*time.Millisecond {
		return nil, fmt.Errorf("node timeout %s: must be at least 100ms", timeout)
	}

	out := []Directive{
		{"port", strconv.Itoa(port)},
		{"dir", dir},
		{"cluster-enabled", "yes"},
		{"cluster-config-file", "nodes.conf"},
		{"cluster-node-timeout", strconv.FormatInt(timeout.Milliseconds(), 10)},
		// Clients (MOVED, CLUSTER SHARDS) get the stable name, not the pod IP,
		// so a node that comes back with a new IP is still reachable.
		{"cluster-preferred-endpoint-type", "hostname"},
	}
	if p.BusPort != 0 {
		out = append(out, Directive{"cluster-port", strconv.Itoa(p.BusPort)})
	}
	if p.AnnounceHostname != "" {
		if strings.ContainsAny(p.AnnounceHostname, " \t\r\n\"'") {
			return nil, fmt.Errorf("announce hostname %q: must not contain spaces or quotes", p.AnnounceHostname)
		}
		out = append(out, Directive{"cluster-announce-hostname", p.AnnounceHostname})
	}

	settings := slices.Concat(baseline, defragThresholds)
	set := func(name, value string) {
		for i := range settings {
			if settings[i].Name == name {
				settings[i].Value = value
				return
			}
		}
		settings = append(settings, Directive{name, value})
	}
	switch profile {
	case Cache:
		set("appendonly", "no")
	case Durable:
		set("maxmemory-policy", "noeviction")
		set("appendonly", "yes")
		set("appendfsync", "everysec")
	}

	var problems []error
	names := make([]string, 0, len(p.Overrides))
	for name := range p.Overrides {
		names = append(names, name)
	}
	slices.Sort(names)
	var added []Directive
	seen := map[string]bool{}
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		value := strings.TrimSpace(p.Overrides[raw])
		if seen[name] {
			problems = append(problems, fmt.Errorf("override %q: given more than once (names are case-insensitive)", raw))
			continue
		}
		seen[name] = true
		if err := Validate(name, value); err != nil {
			problems = append(problems, err)
			continue
		}
		value = normalize(name, value)
		if err := profileAllows(profile, name, value); err != nil {
			problems = append(problems, err)
			continue
		}
		if slices.ContainsFunc(settings, func(d Directive) bool { return d.Name == name }) {
			set(name, value)
			continue
		}
		added = append(added, Directive{name, value})
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid overrides: %w", errors.Join(problems...))
	}
	slices.SortFunc(added, func(a, b Directive) int { return strings.Compare(a.Name, b.Name) })
	out = append(out, settings...)
	return append(out, added...), nil
}

// Render returns the redis.conf text for p.
func Render(p Params) (string, error) {
	ds, err := Build(p)
	if err != nil {
		return "", fmt.Errorf("render redis.conf: %w", err)
	}
	return Format(ds), nil
}

// Format writes directives as redis.conf text.
func Format(ds []Directive) string {
	var b strings.Builder
	b.WriteString("# Rendered by the Gatehouse operator; edit the RedisCluster, not this file.\n")
	for _, d := range ds {
		if d.Name == "save" {
			pairs := strings.Fields(d.Value)
			if len(pairs) == 0 {
				b.WriteString("save \"\"\n")
				continue
			}
			for i := 0; i+1 < len(pairs); i += 2 {
				fmt.Fprintf(&b, "save %s %s\n", pairs[i], pairs[i+1])
			}
			continue
		}
		value := d.Value
		if value == "" || strings.ContainsAny(value, " \t") {
			value = strconv.Quote(value)
		}
		fmt.Fprintf(&b, "%s %s\n", d.Name, value)
	}
	return b.String()
}

// Parse reads text written by Format back into directives, merging repeated
// save lines, so the operator can compare the deployed file with a new one.
func Parse(text string) ([]Directive, error) {
	var out []Directive
	saveAt := -1
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, " ")
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, `"`) {
			uq, err := strconv.Unquote(value)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			value = uq
		}
		if name == "save" {
			if saveAt < 0 {
				saveAt = len(out)
				out = append(out, Directive{"save", value})
			} else if value != "" {
				out[saveAt].Value = strings.TrimSpace(out[saveAt].Value + " " + value)
			}
			continue
		}
		out = append(out, Directive{name, value})
	}
	return out, nil
}

// Hash is the content hash of a rendered file, for status and change checks.
func Hash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// RestartHash hashes only the directives that need a restart to change. Put
// it in the pod template annotation: pods then roll for those changes and
// not for the ones a CONFIG SET (ConfigSetArgs) applies to running nodes.
func RestartHash(ds []Directive) string {
	h := sha256.New()
	for _, d := range ds {
		if !Live(d.Name) {
			fmt.Fprintf(h, "%s\x00%s\n", d.Name, d.Value)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Change is one directive whose value differs between two configurations.
// Old or New is empty when the directive was added or removed.
type Change struct {
	Name, Old, New string
}

// Update splits the differences between two configurations by how they can
// be applied.
type Update struct {
	// Live changes are applied to running nodes with CONFIG SET.
	Live []Change
	// Restart changes need the pods rolled (or a directive was removed, which
	// CONFIG SET cannot express).
	Restart []Change
}

// Compare returns what changed from old to new, each list ordered by name.
func Compare(old, new []Directive) Update {
	index := func(ds []Directive) map[string]string {
		m := make(map[string]string, len(ds))
		for _, d := range ds {
			m[d.Name] = d.Value
		}
		return m
	}
	o, n := index(old), index(new)
	var names []string
	for k := range o {
		names = append(names, k)
	}
	for k := range n {
		if _, ok := o[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var u Update
	for _, name := range names {
		ov, inOld := o[name]
		nv, inNew := n[name]
		if inOld && inNew && ov == nv {
			continue
		}
		c := Change{Name: name, Old: ov, New: nv}
		if inNew && Live(name) {
			u.Live = append(u.Live, c)
		} else {
			u.Restart = append(u.Restart, c)
		}
	}
	return u
}

// ConfigSetArgs returns the arguments of one CONFIG SET command applying all
// changes at once (Redis 7 applies a multi-parameter CONFIG SET atomically).
func ConfigSetArgs(changes []Change) []any {
	args := make([]any, 0, 2+2*len(changes))
	args = append(args, "CONFIG", "SET")
	for _, c := range changes {
		args = append(args, c.Name, c.New)
	}
	return args
}

// profileAllows refuses overrides that contradict the profile's promise: a
// Durable cluster holds sessions and counters, so it must neither evict
// (volatile-* policies would evict sessions, which all have a TTL) nor drop
// its append-only file.
func profileAllows(p Profile, name, value string) error {
	if p != Durable {
		return nil
	}
	switch {
	case name == "maxmemory-policy" && value != "noeviction":
		return fmt.Errorf("override %q: the %s profile never evicts; use a %s cluster for evictable data", name, Durable, Cache)
	case name == "appendonly" && value != "yes":
		return fmt.Errorf("override %q: the %s profile keeps its append-only file", name, Durable)
	}
	return nil
}
