package render

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOverlap(t *testing.T) {
	labels := func(kv ...string) metav1.LabelSelector {
		s := metav1.LabelSelector{MatchLabels: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			s.MatchLabels[kv[i]] = kv[i+1]
		}
		return s
	}
	expr := func(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	}
	tests := []struct {
		name string
		a, b metav1.LabelSelector
		want bool
	}{
		{"same labels", labels("app", "shop"), labels("app", "shop"), true},
		{"different values of one key", labels("app", "shop"), labels("app", "cart"), false},
		{"subset", labels("app", "shop"), labels("app", "shop", "tier", "web"), true},
		{"disjoint keys", labels("app", "shop"), labels("tier", "web"), true},
		{"In containing the value", labels("app", "shop"), expr("app", metav1.LabelSelectorOpIn, "shop", "cart"), true},
		{"In without the value", labels("app", "shop"), expr("app", metav1.LabelSelectorOpIn, "cart"), false},
		{"NotIn the value", labels("app", "shop"), expr("app", metav1.LabelSelectorOpNotIn, "shop"), false},
		{"NotIn another value", labels("app", "shop"), expr("app", metav1.LabelSelectorOpNotIn, "cart"), true},
		{"Exists vs label", expr("app", metav1.LabelSelectorOpExists), labels("app", "shop"), true},
		{"DoesNotExist vs label", expr("app", metav1.LabelSelectorOpDoesNotExist), labels("app", "shop"), false},
		{"Exists vs DoesNotExist", expr("app", metav1.LabelSelectorOpExists), expr("app", metav1.LabelSelectorOpDoesNotExist), false},
		{"NotIn vs NotIn", expr("app", metav1.LabelSelectorOpNotIn, "a"), expr("app", metav1.LabelSelectorOpNotIn, "b"), true},
		{"In sets intersect", expr("app", metav1.LabelSelectorOpIn, "a", "b"), expr("app", metav1.LabelSelectorOpIn, "b", "c"), true},
		{"In sets disjoint", expr("app", metav1.LabelSelectorOpIn, "a"), expr("app", metav1.LabelSelectorOpIn, "b"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Overlap(tt.a, tt.b); got != tt.want {
				t.Errorf("Overlap(a, b) = %v, want %v", got, tt.want)
			}
			if got := Overlap(tt.b, tt.a); got != tt.want {
				t.Errorf("Overlap(b, a) = %v, want %v (must be symmetric)", got, tt.want)
			}
		})
	}
}
