package controllers

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/gatehouse-dev/gatehouse/api/v1alpha1"
	"github.com/gatehouse-dev/gatehouse/internal/render"
)

func TestPolicyStatus(t *testing.T) {
	accepted := render.Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted, Message: "ok"}
	conflicted := render.Verdict{Reason: v1alpha1.ReasonConflicted, Message: "older wins"}
	type cond struct{ Status, Reason string }
	tests := []struct {
		name         string
		cur          v1alpha1.PolicyStatus
		in           statusInput
		wantAccepted cond
		wantReady    cond
		wantObserved int64
		wantHash     string
	}{
		{
			name:         "accepted and written",
			in:           statusInput{generation: 3, verdict: accepted, hash: "abc", selectedPods: 2},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"True", v1alpha1.ReasonRendered},
			wantObserved: 3, wantHash: "abc",
		},
		{
			name:         "conflicted",
			cur:          v1alpha1.PolicyStatus{ConfigHash: "old", ObservedGeneration: 1},
			in:           statusInput{generation: 2, verdict: conflicted, hash: "abc"},
			wantAccepted: cond{"False", v1alpha1.ReasonConflicted}, wantReady: cond{"False", v1alpha1.ReasonConflicted},
			wantObserved: 2, wantHash: "",
		},
		{
			name: "in force while its RedisCluster is down",
			in: statusInput{generation: 4, hash: "abc", verdict: render.Verdict{Accepted: true, Reason: v1alpha1.ReasonAccepted,
				NotReadyReason: v1alpha1.ReasonRedisClusterNotReady, NotReadyMessage: "down"}},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"False", v1alpha1.ReasonRedisClusterNotReady},
			wantObserved: 4, wantHash: "abc",
		},
		{
			name:         "write failed keeps the last observed generation and hash",
			cur:          v1alpha1.PolicyStatus{ConfigHash: "old", ObservedGeneration: 1},
			in:           statusInput{generation: 2, verdict: accepted, syncErr: errors.New("forbidden")},
			wantAccepted: cond{"True", v1alpha1.ReasonAccepted}, wantReady: cond{"False", v1alpha1.ReasonRenderFailed},
			wantObserved: 1, wantHash: "old",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policyStatus(tt.cur, tt.in)
			get := func(typ string) cond {
				c := meta.FindStatusCondition(got.Conditions, typ)
				if c == nil {
					return cond{}
				}
				if c.ObservedGeneration != tt.in.generation {
					t.Errorf("%s condition observedGeneration = %d, want %d", typ, c.ObservedGeneration, tt.in.generation)
				}
				return cond{string(c.Status), c.Reason}
			}
			if diff := cmp.Diff(tt.wantAccepted, get(v1alpha1.ConditionAccepted)); diff != "" {
				t.Errorf("Accepted (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReady, get(v1alpha1.ConditionReady)); diff != "" {
				t.Errorf("Ready (-want +got):\n%s", diff)
			}
			if got.ObservedGeneration != tt.wantObserved || got.ConfigHash != tt.wantHash {
				t.Errorf("observedGeneration, hash = %d, %q; want %d, %q", got.ObservedGeneration, got.ConfigHash, tt.wantObserved, tt.wantHash)
			}
			if got.SelectedPods != tt.in.selectedPods {
				t.Errorf("selectedPods = %d, want %d", got.SelectedPods, tt.in.selectedPods)
			}
		})
	}

	t.Run("unchanged input gives an equal status", func(t *testing.T) {
		in := statusInput{generation: 1, verdict: accepted, hash: "h"}
		first := policyStatus(v1alpha1.PolicyStatus{}, in)
		if diff := cmp.Diff(first, policyStatus(first, in)); diff != "" {
			t.Errorf("second computation differs, the reconciler would write again (-first +second):\n%s", diff)
		}
	})
}
