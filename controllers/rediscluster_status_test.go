package controllers

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/rediscluster"
)

func TestRedisClusterStatus(t *testing.T) {
	spec := rediscluster.Spec{Shards: 3, ReplicasPerShard: 1}
	healthy := rediscluster.Health{ClusterOK: true, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots,
		Shards: 3, ReadyNodes: 6, Converged: true}
	failedPrimary := rediscluster.Health{ClusterOK: false, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots - 5461,
		Shards: 2, ReadyNodes: 5, Unreachable: []string{"n0"}, FailedNodes: []string{"abc"},
		Problems: []string{"primary abc failed", "unreachable members: [n0]"}}
	missingReplica := rediscluster.Health{ClusterOK: true, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots,
		Shards: 3, ReadyNodes: 5, MissingReplicas: 1, Problems: []string{"1 replicas missing"}}
	blank := rediscluster.Health{ClusterOK: false, ReadyNodes: 0, Problems: []string{"16384 slots unassigned"}}
	formed := v1alpha1.RedisClusterStatus{SlotsAssigned: rediscluster.Slots}

	type cond struct{ Status, Reason string }
	type want struct {
		conds                map[string]cond
		observedGeneration   int64
		state                string
		slots, nodes, shards int32
		configHash           string
		requeue              time.Duration
	}
	tests := []struct {
		name string
		cur  v1alpha1.RedisClusterStatus
		obs  redisObservation
		want want
	}{{
		name: "invalid config is reported and waits for the spec",
		obs:  redisObservation{ConfigErr: errors.New("maxmemory-policy: bad")},
		want: want{observedGeneration: 7, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonInvalidConfig},
			"Progressing": {"False", v1alpha1.ReasonInvalidConfig},
		}},
	}, {
		name: "missing password Secret",
		obs:  redisObservation{PasswordErr: errors.New("Secret x not found")},
		want: want{observedGeneration: 7, conds: map[string]cond{"Ready": {"False", v1alpha1.ReasonPasswordUnavailable}}},
	}, {
		name: "no nodes yet: bootstrapping, not degraded, no requeue",
		obs:  redisObservation{},
		want: want{observedGeneration: 7, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonNodesNotReady},
			"Progressing": {"True", v1alpha1.ReasonBootstrapping},
			"Degraded":    {"False", v1alpha1.ReasonAsExpected},
		}},
	}, {
		name: "a formed cluster whose nodes stopped answering is degraded",
		cur:  formed,
		obs:  redisObservation{Members: 6},
		want: want{observedGeneration: 7, slots: rediscluster.Slots, requeue: 10 * time.Second, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonNodesNotReady},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"True", v1alpha1.ReasonNodesNotReady},
		}},
	}, {
		name: "forming",
		obs:  redisObservation{Members: 6, Health: &blank, Operation: v1alpha1.ReasonBootstrapping},
		want: want{observedGeneration: 7, state: "fail", requeue: 2 * time.Second, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonBootstrapping},
			"Progressing": {"True", v1alpha1.ReasonBootstrapping},
			"Degraded":    {"False", v1alpha1.ReasonAsExpected},
		}},
	}, {
		name: "converged: ready, fields filled, looked at again only to monitor it",
		obs:  redisObservation{Members: 6, Health: &healthy, ConfigHash: "h1"},
		want: want{observedGeneration: 7, state: "ok", slots: rediscluster.Slots, nodes: 6, shards: 3, configHash: "h1", requeue: monitorQuiet, conds: map[string]cond{
			"Ready":       {"True", v1alpha1.ReasonClusterReady},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"False", v1alpha1.ReasonAsExpected},
		}},
	}, {
		name: "a failed primary: slots uncovered, degraded, repairing",
		obs:  redisObservation{Members: 6, Health: &failedPrimary, Operation: v1alpha1.ReasonRepairing},
		want: want{observedGeneration: 7, state: "fail", slots: rediscluster.Slots, nodes: 5, shards: 2, requeue: 10 * time.Second, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonSlotsUncovered},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"True", v1alpha1.ReasonSlotsUncovered},
		}},
	}, {
		name: "a missing replica keeps the cluster from Ready",
		obs:  redisObservation{Members: 5, Health: &missingReplica},
		want: want{observedGeneration: 7, state: "ok", slots: rediscluster.Slots, nodes: 5, shards: 3, requeue: 2 * time.Second, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonReplicasMissing},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"True", v1alpha1.ReasonReplicasMissing},
		}},
	}, {
		name: "a refused scale-in is degraded with its reason",
		obs: redisObservation{Members: 6, Health: &missingReplica, Operation: v1alpha1.ReasonScaling,
			Refused: errors.New("refused: would lose data")},
		want: want{observedGeneration: 7, state: "ok", slots: rediscluster.Slots, nodes: 5, shards: 3, requeue: 2 * time.Second, conds: map[string]cond{
			"Ready":       {"False", v1alpha1.ReasonReplicasMissing},
			"Progressing": {"True", v1alpha1.ReasonScaling},
			"Degraded":    {"True", v1alpha1.ReasonScaleInRefused},
		}},
	}, {
		name: "a failed CONFIG SET on a converged cluster is degraded and retried",
		obs:  redisObservation{Members: 6, Health: &healthy, OpErr: errors.New("config set on n0: refused")},
		want: want{observedGeneration: 7, state: "ok", slots: rediscluster.Slots, nodes: 6, shards: 3, requeue: 10 * time.Second, conds: map[string]cond{
			"Ready":       {"True", v1alpha1.ReasonClusterReady},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"True", v1alpha1.ReasonClusterUnhealthy},
		}},
	}, {
		name: "a failed reconcile keeps the previous observedGeneration",
		cur:  v1alpha1.RedisClusterStatus{ObservedGeneration: 6, ConfigHash: "old"},
		obs:  redisObservation{Members: 6, Health: &healthy, Failed: true},
		want: want{observedGeneration: 6, state: "ok", slots: rediscluster.Slots, nodes: 6, shards: 3, configHash: "old", requeue: monitorQuiet, conds: map[string]cond{
			"Ready":       {"True", v1alpha1.ReasonClusterReady},
			"Progressing": {"False", v1alpha1.ReasonAsExpected},
			"Degraded":    {"False", v1alpha1.ReasonAsExpected},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.obs.Generation, tt.obs.Spec = 7, spec
			got := redisClusterStatus(tt.cur, tt.obs)
			conds := map[string]cond{}
			for _, c := range got.Conditions {
				if c.ObservedGeneration != 7 {
					t.Errorf("condition %s observedGeneration = %d, want 7", c.Type, c.ObservedGeneration)
				}
				if slices.Contains(healthConditions, c.Type) {
					continue // TestRedisClusterHealthConditions
				}
				conds[c.Type] = cond{string(c.Status), c.Reason}
			}
			gotWant := want{conds: conds, observedGeneration: got.ObservedGeneration, state: got.ClusterState,
				slots: got.SlotsAssigned, nodes: got.ReadyNodes, shards: got.Shards, configHash: got.ConfigHash,
				requeue: redisRequeue(tt.obs)}
			if diff := cmp.Diff(tt.want, gotWant, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRedisClusterStatusIsStable(t *testing.T) {
	h := rediscluster.Health{ClusterOK: true, SlotsAssigned: rediscluster.Slots, SlotsServed: rediscluster.Slots, Shards: 3, ReadyNodes: 6, Converged: true}
	obs := redisObservation{Generation: 2, Spec: rediscluster.Spec{Shards: 3, ReplicasPerShard: 1}, Members: 6, Health: &h,
		ConfigHash: "h", PasswordSecret: "s", ClientService: "c:6379"}
	first := redisClusterStatus(v1alpha1.RedisClusterStatus{}, obs)
	// Reconciling an unchanged cluster again must produce an equal status,
	// or every reconcile would write one.
	second := redisClusterStatus(first, obs)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("second status differs (-first +second):\n%s", diff)
	}
	if c := meta.FindStatusCondition(second.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v, want True", c)
	}
	if second.PasswordSecret != "s" || second.ClientService != "c:6379" {
		t.Errorf("passwordSecret, clientService = %q, %q", second.PasswordSecret, second.ClientService)
	}
}
