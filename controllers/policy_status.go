package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// statusInput is what a policy's status is computed from.
type statusInput struct {
	generation int64
	verdict    render.Verdict
	// hash of the document written to the ConfigMap; empty when the write failed.
	hash string
	// syncErr is the error writing the ConfigMap, if any.
	syncErr      error
	selectedPods int32
}

// policyStatus computes the next status from the current one. It is pure,
// so the reconciler can compare and skip the write when nothing changed;
// meta.SetStatusCondition keeps lastTransitionTime when a status stays.
func policyStatus(cur v1alpha1.PolicyStatus, in statusInput) v1alpha1.PolicyStatus {
	next := *cur.DeepCopy()
	next.SelectedPods = in.selectedPods

	accepted := metav1.Condition{Type: v1alpha1.ConditionAccepted, ObservedGeneration: in.generation,
		Status: metav1.ConditionTrue, Reason: in.verdict.Reason, Message: in.verdict.Message}
	if !in.verdict.Accepted {
		accepted.Status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&next.Conditions, accepted)

	ready := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: in.generation}
	switch {
	case !in.verdict.Accepted:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, in.verdict.Reason, in.verdict.Message
	case in.verdict.NotReadyReason != "":
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, in.verdict.NotReadyReason, in.verdict.NotReadyMessage
	case in.syncErr != nil:
		ready.Status, ready.Reason = metav1.ConditionFalse, v1alpha1.ReasonRenderFailed
		ready.Message = "Writing the namespace's sidecar configuration failed: " + in.syncErr.Error()
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonRendered
		ready.Message = "In force: rendered into ConfigMap " + SidecarConfigMapName
	}
	meta.SetStatusCondition(&next.Conditions, ready)

	if in.syncErr == nil {
		next.ObservedGeneration = in.generation
		if in.verdict.Accepted {
			next.ConfigHash = in.hash
		} else {
			next.ConfigHash = ""
		}
	}
	return next
}
