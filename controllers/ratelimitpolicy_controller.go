package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// +kubebuilder:rbac:groups=gatehouse.dev,resources=ratelimitpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=ratelimitpolicies/status,verbs=get;update;patch

// setupRateLimitPolicy registers the RateLimitPolicy reconciler. Rate-limit
// policies never conflict: every one that selects a pod applies.
func setupRateLimitPolicy(mgr ctrl.Manager, s *configSyncer) error {
	r := &policyReconciler[v1alpha1.RateLimitPolicy, *v1alpha1.RateLimitPolicy, v1alpha1.RateLimitPolicyList, *v1alpha1.RateLimitPolicyList]{
		client: mgr.GetClient(), kind: render.KindRateLimit, syncer: s, recorder: mgr.GetEventRecorder("gatehouse-ratelimitpolicy"),
	}
	return r.setup(mgr)
}
