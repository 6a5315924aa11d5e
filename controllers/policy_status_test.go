package controllers

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

// conditionReason is metav1.Condition's reason pattern from the CRD schema:
// a status with any other reason (an empty one included) is refused whole.
var conditionReason = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

func TestPolicyStatus(t *testing.T) {
	accepted := render.Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted, Message: "ok"}
	conflicted := render.Verdict{Reason: v1alpha1.ReasonConflicted, Message: "older wins"}
	prevAccepted := metav1.Condition{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAccepted, Message: "ok", ObservedGeneration: 1}
	type cond struct{ Status, Reason string }
	tests := []struct {
		name         string
		cur          v1alpha1.PolicyStatus
		in           statusInput
		wantAccepted cond
		wantReady    cond
		wantObserved int64
		wantHash     string
		wantPods     int32
	}{
		{
			name:         "accepted and written",
			in:           statusInput{generation: 3, verdict: &accepted, hash: "abc", selectedPods: new(int32(2))},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"True", v1alpha1.ReasonRendered},
			wantObserved: 3, wantHash: "abc", wantPods: 2,
		},
		{
			name:         "conflicted",
			cur:          v1alpha1.PolicyStatus{ConfigHash: "old", ObservedGeneration: 1},
			in:           statusInput{generation: 2, verdict: &conflicted, hash: "abc", selectedPods: new(int32(0))},
			wantAccepted: cond{"False", v1alpha1.ReasonConflicted}, wantReady: cond{"False", v1alpha1.ReasonConflicted},
			wantObserved: 2, wantHash: "",
		},
		{
			name: "in force while its RedisCluster is down",
			in: statusInput{generation: 4, hash: "abc", verdict: &render.Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted,
				NotReadyReason: v1alpha1.ReasonRedisClusterNotReady, NotReadyMessage: "down"}},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"False", v1alpha1.ReasonRedisClusterNotReady},
			wantObserved: 4, wantHash: "abc",
		},
		{
			name:         "write failed keeps the last observed generation and hash",
			cur:          v1alpha1.PolicyStatus{ConfigHash: "old", ObservedGeneration: 1, SelectedPods: 5},
			in:           statusInput{generation: 2, verdict: &accepted, syncErr: errors.New("forbidden")},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
			wantObserved: 1, wantHash: "old", wantPods: 5,
		},
		{
			// The sync failed before rendering (listing RedisClusters, say):
			// there is no verdict. A zero verdict used to reach the
			// conditions with an empty reason, which the API server refuses.
			name:         "no verdict on a new policy: acceptance unknown, not ready, reasons set",
			in:           statusInput{generation: 1, syncErr: errors.New("list RedisClusters: timeout")},
			wantAccepted: cond{"Unknown", v1alpha1.ReasonRenderFailed}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
			wantObserved: 0,
		},
		{
			name:         "no verdict on a known policy: acceptance kept, not ready",
			cur:          v1alpha1.PolicyStatus{ObservedGeneration: 1, ConfigHash: "h", Conditions: []metav1.Condition{prevAccepted}},
			in:           statusInput{generation: 1, syncErr: errors.New("list RedisClusters: timeout")},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
			wantObserved: 1, wantHash: "h",
		},
		{
			name:         "no verdict and no error still has reasons",
			in:           statusInput{generation: 1},
			wantAccepted: cond{"Unknown", v1alpha1.ReasonRenderFailed}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
		},
		{
			name:         "a verdict without a reason gets one",
			in:           statusInput{generation: 1, verdict: &render.Verdict{Message: "?"}},
			wantAccepted: cond{"False", v1alpha1.ReasonRenderFailed}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
			wantObserved: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policyStatus(tt.cur, tt.in)
			get := func(typ string, want cond) cond {
				c := meta.FindStatusCondition(got.Conditions, typ)
				if c == nil {
					return cond{}
				}
				if !conditionReason.MatchString(c.Reason) {
					t.Errorf("%s reason %q does not match the CRD schema", typ, c.Reason)
				}
				if len(c.Message) > maxConditionMessage {
					t.Errorf("%s message has %d bytes", typ, len(c.Message))
				}
				// A kept condition keeps its generation; a new one has this one.
				if c.ObservedGeneration != tt.in.generation && (want.Status != "True" || typ != v1alpha1.ConditionAccepted || tt.in.verdict != nil) {
					t.Errorf("%s condition observedGeneration = %d, want %d", typ, c.ObservedGeneration, tt.in.generation)
				}
				return cond{string(c.Status), c.Reason}
			}
			if diff := cmp.Diff(tt.wantAccepted, get(v1alpha1.ConditionAccepted, tt.wantAccepted)); diff != "" {
				t.Errorf("Accepted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReady, get(v1alpha1.ConditionReady, tt.wantReady)); diff != "" {
				t.Errorf("Ready (-want +got):\n%s", diff)
			}
			if got.ObservedGeneration != tt.wantObserved || got.ConfigHash != tt.wantHash {
				t.Errorf("observedGeneration, hash = %d, %q; want %d, %q", got.ObservedGeneration, got.ConfigHash, tt.wantObserved, tt.wantHash)
			}
			if got.SelectedPods != tt.wantPods {
				t.Errorf("selectedPods = %d, want %d", got.SelectedPods, tt.wantPods)
			}
		})
	}

	t.Run("unchanged input gives an equal status", func(t *testing.T) {
		in := statusInput{generation: 1, verdict: &accepted, hash: "h"}
		first := policyStatus(v1alpha1.PolicyStatus{}, in)
		if diff := cmp.Diff(first, policyStatus(first, in)); diff != "" {
			t.Errorf("second computation differs, the reconciler would write again (-first +second):\n%s", diff)
		}
	})

	// The sidecar's validation errors list every field; a policy with many
	// bad fields must still get a status the API server takes.
	t.Run("a huge message is cut to the schema bound on a rune boundary", func(t *testing.T) {
		huge := render.Verdict{Reason: v1alpha1.ReasonInvalidSpec, Message: strings.Repeat("é", maxConditionMessage)}
		got := policyStatus(v1alpha1.PolicyStatus{}, statusInput{generation: 1, verdict: &huge})
		for _, c := range got.Conditions {
			if len(c.Message) > maxConditionMessage || !utf8.ValidString(c.Message) || !strings.HasSuffix(c.Message, "(truncated)") {
				t.Errorf("%s message: %d bytes, valid UTF-8 %v", c.Type, len(c.Message), utf8.ValidString(c.Message))
			}
		}
	})
}
