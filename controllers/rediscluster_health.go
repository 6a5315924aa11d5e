package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
)

// This file is the reconciler's "monitor and tune" half: it turns the
// observed State into health inputs, applies the per-process settings
// (live redis.conf and activedefrag) and runs the maintenance window's
// fragmentation restarts. Decisions are redishealth's and rediscluster's
// pure functions; this file gathers their inputs and carries them out.

// redisMemory is what the reconciler remembers of each cluster between
// reconciles. Losing it (an operator restart) costs one observation: the
// next look has no rejected-connection baseline, and every process is sent
// its settings once more (CONFIG SET is idempotent).
type redisMemory struct {
	mu       sync.Mutex
	clusters map[types.NamespacedName]*clusterMemory
}

type clusterMemory struct {
	look *redishealth.Look
	// processes maps a redis-server process (run_id) to what it was sent:
	// a restarted node is a new process, which runs its file's settings
	// and must be sent the live ones again.
	processes map[string]processSettings
}

type processSettings struct {
	// configHash is the redis.conf whose live settings it runs.
	configHash string
	// defrag is the activedefrag it runs: "yes", "no", or
	// defragUnsupported when its build refused.
	defrag string
}

// activedefrag values: what CONFIG SET takes, and what the memory records
// for a build that refused.
const (
	defragOn          = "yes"
	defragOff         = "no"
	defragUnsupported = "unsupported"
)

func newRedisMemory() *redisMemory {
	return &redisMemory{clusters: map[types.NamespacedName]*clusterMemory{}}
}

func (r *redisMemory) cluster(key types.NamespacedName) *clusterMemory {
	c, ok := r.clusters[key]
	if !ok {
		c = &clusterMemory{processes: map[string]processSettings{}}
		r.clusters[key] = c
	}
	return c
}

func (r *redisMemory) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clusters, key)
}

// rejections returns what the nodes refused since the previous look and
// remembers this one.
func (r *redisMemory) rejections(key types.NamespacedName, nodes []redishealth.Node, now time.Time) redishealth.Rejections {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cluster(key)
	rej, next := redishealth.RejectedSince(c.look, nodes, now)
	c.look = &next
	return rej
}

// healthNodes describes every member for the health decisions: shard
// numbers follow the primaries' lowest slots, so they stay put across
// failovers. s may hold no reachable member (Observe failed).
func healthNodes(s *rediscluster.State) []redishealth.Node {
	if s == nil {
		return nil
	}
	type shard struct {
		id     string
		lowest int
	}
	var shards []shard
	for _, id := range s.Primaries() {
		shards = append(shards, shard{id, slices.Min(s.Nodes[id].Slots)})
	}
	slices.SortFunc(shards, func(a, b shard) int { return cmp.Compare(a.lowest, b.lowest) })
	index := map[string]int{}
	for i, sh := range shards {
		index[sh.id] = i
	}
	out := make([]redishealth.Node, 0, len(s.Members))
	for _, m := range s.Members {
		n := redishealth.Node{Name: m.Name, Shard: redishealth.NoShard, Err: m.Err}
		if !m.Reachable() {
			if n.Err == nil {
				n.Err = rediscluster.ErrUnreachable
			}
			out = append(out, n)
			continue
		}
		self := s.Nodes[m.ID]
		n.Primary, n.Info = self.Primary, m.NodeInfo
		owner := m.ID
		if !self.Primary {
			owner = self.PrimaryID
		}
		if i, ok := index[owner]; ok {
			n.Shard = i
		}
		out = append(out, n)
	}
	return out
}

// thresholds maps spec.thresholds, with the API defaults for what is unset.
func thresholds(rc *v1alpha1.RedisCluster) redishealth.Thresholds {
	t := redishealth.DefaultThresholds()
	spec := rc.Spec.Thresholds
	if spec == nil {
		return t
	}
	if spec.MemoryPressurePercent != nil {
		t.MemoryPressure = float64(*spec.MemoryPressurePercent) / 100
	}
	if q := spec.FragmentationRatio; q != nil {
		t.Fragmentation = q.AsApproximateFloat64()
	}
	if q := spec.FragmentationMinBytes; q != nil {
		t.FragmentationMinBytes = q.Value()
	}
	if q := spec.ReplicaLagBytes; q != nil {
		t.ReplicaLagBytes = q.Value()
	}
	return t
}

// wantedDefrag is the activedefrag every process should run.
func wantedDefrag(rc *v1alpha1.RedisCluster) string {
	if rc.Spec.ActiveDefrag == v1alpha1.ActiveDefragDisabled {
		return defragOff
	}
	return defragOn
}

// defragUnsupportedMessage is how Redis refuses activedefrag on a build
// without its jemalloc (config.c, isValidActiveDefrag).
const defragUnsupportedMessage = "Active defragmentation cannot be enabled"

// nodeSettings is the outcome of applyNodeSettings.
type nodeSettings struct {
	// configApplied: every reachable member runs conf's live settings.
	configApplied bool
	// defrag is the status.health.activeDefrag value ("" when unknown).
	defrag string
}

// applyNodeSettings sends each reachable process that has not had them the
// live settings of conf (one atomic CONFIG SET) and the wanted
// activedefrag (a separate CONFIG SET: a build without defragmentation
// refuses it, and that must not fail the rest).
func (r *redisClusterReconciler) applyNodeSettings(ctx context.Context, rc *v1alpha1.RedisCluster, s *rediscluster.State, password string, conf redisConfig) (nodeSettings, error) {
	key := types.NamespacedName{Namespace: rc.Namespace, Name: rc.Name}
	args := redisconfSetArgs(conf)
	want := wantedDefrag(rc)
	r.memory.mu.Lock()
	mem := r.memory.cluster(key)
	known := maps.Clone(mem.processes)
	r.memory.mu.Unlock()

	out := nodeSettings{configApplied: true}
	var errs []error
	seen := map[string]processSettings{}
	for _, m := range s.Members {
		id := m.NodeInfo.Server.RunID
		if !m.Reachable() || id == "" {
			continue
		}
		p := known[id]
		// A build that refused activedefrag is not asked again; it is asked
		// to turn it off, which every build accepts.
		needDefrag := p.defrag != want && (want == defragOff || p.defrag != defragUnsupported)
		if p.configHash != conf.Hash || needDefrag {
			c := redis.NewClient(&redis.Options{Addr: m.Addr, Password: password, DialTimeout: 2 * time.Second,
				ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, MaxRetries: -1, PoolSize: 1})
			if p.configHash != conf.Hash {
				if err := setConfig(ctx, c, args); err != nil {
					errs = append(errs, fmt.Errorf("config set on %s: %w", m.Name, err))
				} else {
					p.configHash = conf.Hash
				}
			}
			if needDefrag {
				err := c.ConfigSet(ctx, "activedefrag", want).Err()
				switch {
				case err == nil:
					p.defrag = want
				case want == defragOn && strings.Contains(err.Error(), defragUnsupportedMessage):
					p.defrag = defragUnsupported
				default:
					errs = append(errs, fmt.Errorf("config set activedefrag on %s: %w", m.Name, err))
				}
			}
			_ = c.Close()
		}
		if p.configHash != conf.Hash {
			out.configApplied = false
		}
		seen[id] = p
	}

	// Once every member answered, only the processes observed now are
	// kept, so the map stays as large as the cluster; a member that missed
	// one look keeps its entry and is not sent everything again.
	r.memory.mu.Lock()
	if len(seen) < len(s.Members) {
		for id, p := range mem.processes {
			if _, ok := seen[id]; !ok {
				seen[id] = p
			}
		}
	}
	mem.processes = seen
	r.memory.mu.Unlock()
	out.defrag = defragStatus(want, seen)
	return out, errors.Join(errs...)
}

func setConfig(ctx context.Context, c *redis.Client, args []any) error {
	if args == nil {
		return nil
	}
	return c.Do(ctx, args...).Err()
}

// defragStatus summarises what the processes run for status.health.
func defragStatus(want string, processes map[string]processSettings) string {
	if want == defragOff {
		return "Disabled"
	}
	if len(processes) == 0 {
		return ""
	}
	all := true
	for _, p := range processes {
		if p.defrag == defragUnsupported {
			return "Unsupported"
		}
		all = all && p.defrag == defragOn
	}
	if all {
		return "Enabled"
	}
	return ""
}

// maintenanceObservation is what the maintenance window did in one
// reconcile.
type maintenanceObservation struct {
	Open bool
	Next time.Time
	// Pending are the nodes to restart in this occurrence of the window.
	Pending []string
	// Restarted is the restart this reconcile made, if any.
	Restarted *v1alpha1.RedisNodeRestart
	// Wait says why no step was taken although nodes are pending.
	Wait string
	// Err is a failed failover or restart.
	Err error
}

// inProgress reports whether restarts are under way.
func (m *maintenanceObservation) inProgress() bool {
	return m != nil && m.Open && len(m.Pending) > 0
}

// maintenanceWindow maps spec.maintenance.
func maintenanceWindow(m *v1alpha1.RedisMaintenance) (redishealth.Window, error) {
	start, err := redishealth.ParseStart(m.Start)
	if err != nil {
		return redishealth.Window{}, err
	}
	w := redishealth.Window{Start: start, Duration: 2 * time.Hour}
	if m.Duration != nil {
		w.Duration = m.Duration.Duration
	}
	for _, d := range m.Days {
		for wd := time.Sunday; wd <= time.Saturday; wd++ {
			if wd.String() == string(d) {
				w.Days = append(w.Days, wd)
			}
		}
	}
	return w, nil
}

// maintain reports the window and, given a State (nil: report only), takes
// at most one step of the fragmentation restarts: a graceful failover of a
// candidate primary, or the restart of a candidate replica. The next step comes in a later reconcile, once PlanRestart sees
// the cluster converged and caught up again.
func (r *redisClusterReconciler) maintain(ctx context.Context, rc *v1alpha1.RedisCluster, admin *rediscluster.Admin,
	members []rediscluster.Member, s *rediscluster.State, nodes []redishealth.Node, spec rediscluster.Spec, now time.Time) *maintenanceObservation {
	m := rc.Spec.Maintenance
	if m == nil {
		return nil
	}
	w, err := maintenanceWindow(m)
	if err != nil {
		return &maintenanceObservation{Err: err}
	}
	out := &maintenanceObservation{Next: w.NextOpen(now)}
	opened, open := w.OpenedAt(now)
	out.Open = open
	if !open {
		return out
	}
	ratio := 2.0
	if m.FragmentationRatio != nil {
		ratio = m.FragmentationRatio.AsApproximateFloat64()
	}
	t := thresholds(rc)
	out.Pending = redishealth.RestartCandidates(nodes, ratio, t.FragmentationMinBytes, opened, now)
	if s == nil {
		return out // report only: no step without a fresh State
	}
	step := rediscluster.PlanRestart(s, spec, out.Pending, t.ReplicaLagBytes)
	log := ctrl.LoggerFrom(ctx)
	frag := func(name string) string {
		for _, n := range nodes {
			if n.Name == name {
				return fmt.Sprintf("%.2f", n.Info.Memory.FragmentationRatio)
			}
		}
		return ""
	}
	switch {
	case step.Failover != "":
		log.Info("Failing over a fragmented primary before restarting it", "primary", step.Primary, "replica", step.Failover)
		r.event(rc, corev1.EventTypeNormal, "MaintenanceFailover", "Handing the slots of %s (fragmentation %s) to its replica %s before restarting it",
			step.Primary, frag(step.Primary), step.Failover)
		if err := admin.Failover(ctx, members, step.Failover); err != nil {
			out.Err = fmt.Errorf("maintenance failover to %s: %w", step.Failover, err)
		}
	case step.Restart != "":
		member, _ := s.Member(step.Restart)
		log.Info("Restarting a fragmented node", "member", step.Restart)
		if err := r.members.Restart(ctx, rc, member.Member); err != nil {
			out.Err = fmt.Errorf("maintenance restart of %s: %w", step.Restart, err)
			break
		}
		out.Restarted = &v1alpha1.RedisNodeRestart{Node: step.Restart, Time: metav1.NewTime(now), FragmentationRatio: frag(step.Restart)}
		redisMetrics.restarted(types.NamespacedName{Namespace: rc.Namespace, Name: rc.Name})
		r.event(rc, corev1.EventTypeNormal, "MaintenanceRestart", "Restarted %s (fragmentation %s) in the maintenance window", step.Restart, out.Restarted.FragmentationRatio)
	default:
		out.Wait = step.Wait
	}
	if out.Err != nil {
		r.event(rc, corev1.EventTypeWarning, "MaintenanceFailed", "%v", out.Err)
	}
	return out
}

// healthSummary is status.health from a Summary; nil when no node answered.
func healthSummary(nodes []redishealth.Node, rej redishealth.Rejections, defrag string) *v1alpha1.RedisClusterHealth {
	if !slices.ContainsFunc(nodes, redishealth.Node.Observed) {
		return nil
	}
	s := redishealth.Summarize(nodes)
	// Rounded to MiB so that status is not rewritten for every byte; the
	// client count, which moves with every connection (the operator's
	// own too), is left to the metrics.
	const mib = 1 << 20
	used := resource.NewQuantity((s.MemoryUsed+mib/2)/mib*mib, resource.BinarySI)
	maxMem := resource.NewQuantity(s.MemoryMax/mib*mib, resource.BinarySI)
	h := &v1alpha1.RedisClusterHealth{
		MemoryUsed:            used,
		MemoryMax:             maxMem,
		MaxFragmentationRatio: fmt.Sprintf("%.2f", s.MaxFragmentation),
		RejectedConnections:   rej.Total,
		ActiveDefrag:          defrag,
	}
	if s.HasMemoryPercent {
		h.MemoryUsedPercent = new(int32(s.MemoryUsedPercent))
	}
	if s.HasHitRatio {
		h.KeyspaceHitRatio = fmt.Sprintf("%.2f", s.HitRatio)
	}
	return h
}

// maxClients is the lowest maxclients the nodes report, else the rendered
// one, else Redis' default (PlanBudget's).
func maxClients(nodes []redishealth.Node, conf redisConfig) int64 {
	if mc := redishealth.Summarize(nodes).MaxClients; mc > 0 {
		return mc
	}
	for _, d := range conf.Directives {
		if d.Name == "maxclients" {
			var n int64
			if _, err := fmt.Sscan(d.Value, &n); err == nil {
				return n
			}
		}
	}
	return 0
}

// clusterOK reports whether every answering node says cluster_state:ok.
func clusterOK(h *rediscluster.Health) bool { return h != nil && h.ClusterOK }
