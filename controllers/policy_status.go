package controllers

import (
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// statusInput is what a policy's status is computed from.
type statusInput struct {
	generation int64
	// verdict is the policy's verdict from the namespace's render; nil when
	// the namespace could not be rendered at all.
	verdict *render.Verdict
	// hash of the document written to the ConfigMap.
	hash string
	// syncErr is why the namespace could not be rendered or its ConfigMap
	// not written, if so.
	syncErr error
	// selectedPods is nil when the pods could not be counted; the count in
	// status then stays.
	selectedPods *int32
}

// maxConditionMessage is the CRD schema's bound on a condition message
// (metav1.Condition); a longer one would make the API server refuse the
// whole status patch, losing the reason with it.
const maxConditionMessage = 32768

// policyStatus computes the next status from the current one. It is pure,
// so the reconciler can compare and skip the write when nothing changed;
// meta.SetStatusCondition keeps lastTransitionTime when a status stays.
//
// Every path yields conditions the CRD schema accepts: a reason from the
// v1alpha1 constants (never empty) and a bounded message. A status the API
// server refuses would hide the very error it was meant to report.
func policyStatus(cur v1alpha1.PolicyStatus, in statusInput) v1alpha1.PolicyStatus {
	next := *cur.DeepCopy()
	if in.selectedPods != nil {
		next.SelectedPods = *in.selectedPods
	}

	if in.verdict == nil {
		// Nothing was decided about the policy: its acceptance stays what it
		// was (a first status says it is unknown), readiness cannot be
		// claimed, and observedGeneration stays with the last success.
		msg := "Rendering the namespace's sidecar configuration failed"
		if in.syncErr != nil {
			msg += ": " + in.syncErr.Error()
		}
		if meta.FindStatusCondition(next.Conditions, v1alpha1.ConditionAccepted) == nil {
			setCondition(&next, v1alpha1.ConditionAccepted, in.generation, metav1.ConditionUnknown, v1alpha1.ReasonRenderFailed, msg)
		}
		setCondition(&next, v1alpha1.ConditionReady, in.generation, metav1.ConditionFalse, v1alpha1.ReasonRenderFailed, msg)
		return next
	}
	v := *in.verdict

	accepted := metav1.ConditionTrue
	if !v.Accepted {
		accepted = metav1.ConditionFalse
	}
	setCondition(&next, v1alpha1.ConditionAccepted, in.generation, accepted, v.Reason, v.Message)

	switch {
	case !v.Accepted:
		setCondition(&next, v1alpha1.ConditionReady, in.generation, metav1.ConditionFalse, v.Reason, v.Message)
	case v.NotReadyReason != "":
		setCondition(&next, v1alpha1.ConditionReady, in.generation, metav1.ConditionFalse, v.NotReadyReason, v.NotReadyMessage)
	case in.syncErr != nil:
		setCondition(&next, v1alpha1.ConditionReady, in.generation, metav1.ConditionFalse, v1alpha1.ReasonRenderFailed,
			"Writing the namespace's sidecar configuration failed: "+in.syncErr.Error())
	default:
		setCondition(&next, v1alpha1.ConditionReady, in.generation, metav1.ConditionTrue, v1alpha1.ReasonRendered,
			"In force: rendered into ConfigMap "+SidecarConfigMapName)
	}

	if in.syncErr == nil {
		next.ObservedGeneration = in.generation
		next.ConfigHash = ""
		if v.Accepted {
			next.ConfigHash = in.hash
		}
	}
	return next
}

// setCondition sets one condition, never with an empty reason or an
// oversized message.
func setCondition(st *v1alpha1.PolicyStatus, typ string, generation int64, status metav1.ConditionStatus, reason, message string) {
	if reason == "" {
		reason = v1alpha1.ReasonRenderFailed
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, ObservedGeneration: generation, Reason: reason, Message: truncate(message, maxConditionMessage),
	})
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "… (truncated)"
	s = s[:n-len(mark)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimRight(s, " ") + mark
}
