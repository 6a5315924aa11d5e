package controllers

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=gatehouse.dev,resources=sessionpolicies/status,verbs=get;update;patch

// setupSessionPolicy registers the SessionPolicy reconciler: at most one
// SessionPolicy applies to a pod, the oldest winning conflicts.
func setupSessionPolicy(mgr ctrl.Manager, s *configSyncer) error {
	r := &policyReconciler[v1alpha1.SessionPolicy, *v1alpha1.SessionPolicy, v1alpha1.SessionPolicyList, *v1alpha1.SessionPolicyList]{
		client: mgr.GetClient(), kind: render.KindSession, syncer: s, recorder: mgr.GetEventRecorder("gatehouse-sessionpolicy"),
	}
	return r.setup(mgr)
}
