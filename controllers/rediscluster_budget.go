package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/redishealth"
)

// defaultSidecarPoolSize is spec.sidecarPoolSize's API default, for objects
// created before the field existed.
const defaultSidecarPoolSize = 20

// sidecarsUsing counts the pods with the Gatehouse sidecar, not being
// deleted, that a policy referencing rc selects: those are the pods whose
// sidecars connect to rc's nodes. Policies reference clusters of their own
// namespace only, so only rc's namespace is read, from the cache (the pods
// through their index).
func sidecarsUsing(ctx context.Context, c client.Reader, rc *v1alpha1.RedisCluster) (int, error) {
	var (
		sessions   v1alpha1.SessionPolicyList
		rateLimits v1alpha1.RateLimitPolicyList
		caches     v1alpha1.CachePolicyList
	)
	for _, l := range []client.ObjectList{&sessions, &rateLimits, &caches} {
		if err := c.List(ctx, l, client.InNamespace(rc.Namespace)); err != nil {
			return 0, fmt.Errorf("list %T in %s: %w", l, rc.Namespace, err)
		}
	}
	var selectors []labels.Selector
	add := func(ref v1alpha1.RedisReference, sel metav1.LabelSelector) {
		if ref.Name != rc.Name {
			return
		}
		// An unparsable selector selects nothing (the API server validates them).
		if s, err := metav1.LabelSelectorAsSelector(&sel); err == nil {
			selectors = append(selectors, s)
		}
	}
	for _, p := range sessions.Items {
		add(p.Spec.RedisRef, p.Spec.PodSelector)
	}
	for _, p := range rateLimits.Items {
		add(p.Spec.RedisRef, p.Spec.PodSelector)
	}
	for _, p := range caches.Items {
		add(p.Spec.RedisRef, p.Spec.PodSelector)
	}
	if len(selectors) == 0 {
		return 0, nil
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(rc.Namespace), client.MatchingFields{podSidecarIndex: podSidecarIndexValue}); err != nil {
		return 0, fmt.Errorf("list pods with the sidecar: %w", err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, s := range selectors {
			if s.Matches(labels.Set(p.Labels)) {
				n++
				break
			}
		}
	}
	return n, nil
}

// budgetInput gathers PlanBudget's input for rc.
func budgetInput(rc *v1alpha1.RedisCluster, sidecars int, maxClients int64) redishealth.BudgetInput {
	shards, replicas := redisSpec(rc)
	pool := defaultSidecarPoolSize
	if rc.Spec.SidecarPoolSize != nil {
		pool = int(*rc.Spec.SidecarPoolSize)
	}
	return redishealth.BudgetInput{
		Sidecars: sidecars, PoolSize: pool, MaxClients: maxClients,
		Nodes: int(shards * (1 + replicas)), ReplicasPerShard: int(replicas),
	}
}
