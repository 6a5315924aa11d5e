package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// +kubebuilder:rbac:groups=gatehouse.dev,resources=cachepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=cachepolicies/status,verbs=get;update;patch

// setupCachePolicy registers the CachePolicy reconciler: at most one
// CachePolicy applies to a pod, the oldest winning conflicts.
func setupCachePolicy(mgr ctrl.Manager, s *configSyncer) error {
	r := &policyReconciler[v1alpha1.CachePolicy, *v1alpha1.CachePolicy, v1alpha1.CachePolicyList, *v1alpha1.CachePolicyList]{
		client: mgr.GetClient(), kind: render.KindCache, syncer: s, recorder: mgr.GetEventRecorder("gatehouse-cachepolicy"),
	}
	return r.setup(mgr)
}
