package controllers

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
)

// redisObservation is everything one reconcile learnt about a cluster; the
// status is a pure function of it and the previous status.
type redisObservation struct {
	Generation int64
	Spec       rediscluster.Spec
	// ConfigErr: spec.config holds invalid overrides; nothing was applied.
	ConfigErr error
	// PasswordErr: the password could not be read or created.
	PasswordErr error
	// Members is how many nodes the member source reported.
	Members int
	// Health is nil when no member could be observed.
	Health *rediscluster.Health
	// Operation is the reason of the cluster operation that ran
	// (ReasonBootstrapping, ReasonScaling, ReasonRepairing) or "".
	Operation string
	// OpErr is the error of that operation; Refused a scale-in refusal.
	OpErr, Refused error
	// ConfigHash is the redis.conf hash the nodes run now.
	ConfigHash                    string
	PasswordSecret, ClientService string
	// Failed: the reconcile returned an error, so the generation is not
	// reported as observed.
	Failed bool

	// Now is when the observation was made.
	Now time.Time
	// Nodes are the members as observed (INFO), answering or not.
	Nodes []redishealth.Node
	// Thresholds are spec.thresholds with defaults.
	Thresholds redishealth.Thresholds
	// Rejections are the connections refused since the previous look.
	Rejections redishealth.Rejections
	// BudgetInput and Budget are the sidecars' connection budget.
	BudgetInput redishealth.BudgetInput
	Budget      redishealth.Budget
	// ActiveDefrag is status.health.activeDefrag ("" when unknown).
	ActiveDefrag string
	// Maintenance is what the maintenance window did; nil without one.
	Maintenance *maintenanceObservation
}

// healthConditions are the conditions decided from the nodes' INFO.
var healthConditions = []string{
	v1alpha1.ConditionMemoryPressure, v1alpha1.ConditionFragmented, v1alpha1.ConditionPersistenceFailing,
	v1alpha1.ConditionClientsRejected, v1alpha1.ConditionReplicaLagging, v1alpha1.ConditionConnectionBudget,
}

// healthVerdicts decides every health condition from the observation.
func healthVerdicts(o redisObservation) map[string]redishealth.Verdict {
	return map[string]redishealth.Verdict{
		v1alpha1.ConditionMemoryPressure:     redishealth.MemoryPressure(o.Nodes, o.Thresholds),
		v1alpha1.ConditionFragmented:         redishealth.Fragmented(o.Nodes, o.Thresholds),
		v1alpha1.ConditionPersistenceFailing: redishealth.PersistenceFailing(o.Nodes),
		v1alpha1.ConditionClientsRejected:    redishealth.ClientsRejected(o.Nodes, o.Rejections),
		v1alpha1.ConditionReplicaLagging:     redishealth.ReplicaLagging(o.Nodes, o.Thresholds),
		v1alpha1.ConditionConnectionBudget:   redishealth.ConnectionBudget(o.Budget, o.BudgetInput),
	}
}

// setHealth writes the health conditions and summaries into next.
func setHealth(next *v1alpha1.RedisClusterStatus, o redisObservation) {
	verdicts := healthVerdicts(o)
	for _, typ := range healthConditions {
		v := verdicts[typ]
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{
			Type: typ, Status: v.Status, Reason: v.Reason, Message: v.Message, ObservedGeneration: o.Generation,
		})
	}
	if h := healthSummary(o.Nodes, o.Rejections, o.ActiveDefrag); h != nil {
		if h.ActiveDefrag == "" && next.Health != nil {
			h.ActiveDefrag = next.Health.ActiveDefrag
		}
		next.Health = h
	}
	next.SidecarPoolSize = int32(o.Budget.PoolSize)
	next.Connections = &v1alpha1.RedisConnectionBudget{
		Sidecars: int32(o.BudgetInput.Sidecars), PerNode: o.Budget.PerNode, Available: o.Budget.Available,
	}
	m := o.Maintenance
	if m == nil {
		next.Maintenance = nil
		return
	}
	st := &v1alpha1.RedisMaintenanceStatus{WindowOpen: m.Open, Pending: m.Pending}
	if !m.Next.IsZero() {
		st.NextWindow = new(metav1.NewTime(m.Next))
	}
	if next.Maintenance != nil {
		st.LastRestart = next.Maintenance.LastRestart
	}
	if m.Restarted != nil {
		st.LastRestart = m.Restarted
	}
	next.Maintenance = st
}

// redisClusterStatus computes the next status. It is pure: equal input gives
// equal output (condition transition times aside), so the caller can skip
// the write when nothing changed.
func redisClusterStatus(cur v1alpha1.RedisClusterStatus, o redisObservation) v1alpha1.RedisClusterStatus {
	next := *cur.DeepCopy()
	set := func(typ string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{
			Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: o.Generation,
		})
	}
	if !o.Failed {
		next.ObservedGeneration = o.Generation
	}
	if o.PasswordSecret != "" {
		next.PasswordSecret = o.PasswordSecret
	}
	if o.ClientService != "" {
		next.ClientService = o.ClientService
	}
	if o.ConfigHash != "" {
		next.ConfigHash = o.ConfigHash
	}

	switch {
	case o.ConfigErr != nil:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonInvalidConfig, o.ConfigErr.Error())
		set(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonInvalidConfig, "waiting for a valid spec.config")
		return next
	case o.PasswordErr != nil:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonPasswordUnavailable, o.PasswordErr.Error())
		return next
	}
	setHealth(&next, o)
	if o.Health == nil {
		msg := fmt.Sprintf("no node answers (%d of %d present)", o.Members, o.Spec.Nodes())
		next.ReadyNodes, next.ClusterState = 0, ""
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonNodesNotReady, msg)
		formed := cur.SlotsAssigned > 0
		if formed {
			set(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonAsExpected, "")
		} else {
			set(v1alpha1.ConditionProgressing, true, v1alpha1.ReasonBootstrapping, "waiting for the nodes to start")
		}
		if formed {
			set(v1alpha1.ConditionDegraded, true, v1alpha1.ReasonNodesNotReady, msg)
		} else {
			set(v1alpha1.ConditionDegraded, false, v1alpha1.ReasonAsExpected, "")
		}
		return next
	}

	h := o.Health
	next.ReadyNodes = int32(h.ReadyNodes)
	next.Shards = int32(h.Shards)
	next.SlotsAssigned = int32(h.SlotsAssigned)
	next.ClusterState = "fail"
	if h.ClusterOK {
		next.ClusterState = "ok"
	}

	switch {
	case !h.ClusterOK && h.SlotsAssigned == 0:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonBootstrapping, "the cluster is being formed")
	case h.SlotsServed < rediscluster.Slots:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonSlotsUncovered,
			fmt.Sprintf("%d of %d slots are served", h.SlotsServed, rediscluster.Slots))
	case !h.ClusterOK:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonClusterUnhealthy, "cluster_state is not ok on every node")
	case h.MissingReplicas > 0:
		set(v1alpha1.ConditionReady, false, v1alpha1.ReasonReplicasMissing,
			fmt.Sprintf("%d replicas missing", h.MissingReplicas))
	default:
		set(v1alpha1.ConditionReady, true, v1alpha1.ReasonClusterReady,
			fmt.Sprintf("%d shards serve all %d slots", h.Shards, rediscluster.Slots))
	}

	changing := o.Operation == v1alpha1.ReasonBootstrapping || o.Operation == v1alpha1.ReasonScaling
	switch {
	case changing && !h.Converged:
		set(v1alpha1.ConditionProgressing, true, o.Operation, strings.Join(h.Problems, "; "))
	case o.Maintenance.inProgress():
		msg := fmt.Sprintf("restarting fragmented nodes one at a time; pending: %s", strings.Join(o.Maintenance.Pending, ", "))
		if o.Maintenance.Wait != "" {
			msg += "; waiting: " + o.Maintenance.Wait
		}
		set(v1alpha1.ConditionProgressing, true, v1alpha1.ReasonMaintenanceRestart, msg)
	default:
		set(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonAsExpected, "")
	}

	problems := h.Problems
	opErr := o.OpErr
	if o.Maintenance != nil {
		opErr = errors.Join(opErr, o.Maintenance.Err)
	}
	if opErr != nil {
		problems = append(slices.Clip(problems), opErr.Error())
	}
	switch {
	case o.Refused != nil:
		set(v1alpha1.ConditionDegraded, true, v1alpha1.ReasonScaleInRefused, o.Refused.Error())
	case changing || (h.Converged && opErr == nil):
		set(v1alpha1.ConditionDegraded, false, v1alpha1.ReasonAsExpected, "")
	default:
		set(v1alpha1.ConditionDegraded, true, degradedReason(h), strings.Join(problems, "; "))
	}
	return next
}

// degradedReason names the most serious problem.
func degradedReason(h *rediscluster.Health) string {
	switch {
	case h.Stuck || h.SlotsServed < rediscluster.Slots:
		return v1alpha1.ReasonSlotsUncovered
	case len(h.Unreachable) > 0:
		return v1alpha1.ReasonNodesNotReady
	case h.MissingReplicas > 0:
		return v1alpha1.ReasonReplicasMissing
	default:
		return v1alpha1.ReasonClusterUnhealthy
	}
}

// Monitoring intervals: how soon to read INFO again, by what the last
// look saw. Memory, clients and replication change without any event
// Kubernetes could watch, so a formed cluster is always looked at again;
// how soon is computed, never a fixed poll.
const (
	// monitorQuiet: nothing wrong and nothing near a threshold.
	monitorQuiet = time.Minute
	// monitorWatchful: a health condition holds or memory is filling, so
	// its end (or a turn for the worse) shows soon.
	monitorWatchful = 15 * time.Second
	// monitorMaintenance: restarts are under way; each step waits for the
	// previous node to be back and caught up.
	monitorMaintenance = 3 * time.Second
	// memoryWatchful is the share of maxmemory from which a noeviction
	// primary is watched closely, ahead of MemoryPressure.
	memoryWatchful = 0.75
)

// redisRequeue is when to look again: the sooner of what the cluster's
// convergence needs (rediscluster.NextRequeue; Kubernetes watches cover
// objects and pods, but not gossip and failovers) and what monitoring its
// health needs (monitorRequeue).
func redisRequeue(o redisObservation) time.Duration {
	switch {
	case o.ConfigErr != nil || o.PasswordErr != nil:
		return 0 // a spec or Secret change triggers the next reconcile
	case o.Health == nil && o.Members == 0:
		return 0 // pods appearing (or the local source changing) trigger it
	}
	converge := convergeRequeue(o)
	monitor := monitorRequeue(o)
	if converge == 0 {
		return monitor
	}
	return min(converge, monitor)
}

func convergeRequeue(o redisObservation) time.Duration {
	switch {
	case o.Health == nil:
		return rediscluster.NextRequeue(rediscluster.Health{Unreachable: []string{"all"}})
	case o.Health.Converged && o.OpErr != nil:
		// Converged by Redis' own account, but our CONFIG SET or operation
		// failed: retry as for an unreachable member.
		return rediscluster.NextRequeue(rediscluster.Health{Unreachable: []string{"retry"}})
	default:
		return rediscluster.NextRequeue(*o.Health)
	}
}

// monitorRequeue is when to read the nodes' INFO again. It is a pure
// function of the observation.
func monitorRequeue(o redisObservation) time.Duration {
	d := monitorQuiet
	for _, v := range healthVerdicts(o) {
		if v.Status == metav1.ConditionTrue {
			d = monitorWatchful
		}
	}
	for _, n := range o.Nodes {
		m := n.Info.Memory
		if n.Observed() && n.Primary && m.Policy == "noeviction" && m.Max > 0 && float64(m.EvictionUsed()) >= memoryWatchful*float64(m.Max) {
			d = monitorWatchful
		}
	}
	if m := o.Maintenance; m != nil {
		switch {
		case m.inProgress():
			d = monitorMaintenance
		case !m.Open && !m.Next.IsZero():
			// Be there when the window opens.
			d = min(d, max(m.Next.Sub(o.Now), time.Second))
		}
	}
	return d
}
