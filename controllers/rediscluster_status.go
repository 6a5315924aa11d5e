package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
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
	case o.Health == nil:
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
	if changing && !h.Converged {
		set(v1alpha1.ConditionProgressing, true, o.Operation, strings.Join(h.Problems, "; "))
	} else {
		set(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonAsExpected, "")
	}

	problems := h.Problems
	if o.OpErr != nil {
		problems = append(slices.Clip(problems), o.OpErr.Error())
	}
	switch {
	case o.Refused != nil:
		set(v1alpha1.ConditionDegraded, true, v1alpha1.ReasonScaleInRefused, o.Refused.Error())
	case changing || (h.Converged && o.OpErr == nil):
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

// redisRequeue is when to look again. Kubernetes watches cover the objects
// and pods; only the cluster's own convergence (gossip, failovers) is
// invisible to them, so it is the only reason to requeue.
func redisRequeue(o redisObservation) time.Duration {
	switch {
	case o.ConfigErr != nil || o.PasswordErr != nil:
		return 0 // a spec or Secret change triggers the next reconcile
	case o.Health == nil && o.Members == 0:
		return 0 // pods appearing (or the local source changing) trigger it
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
