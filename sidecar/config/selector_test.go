package config

import "testing"

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "frontend", "canary": ""}
	tests := []struct {
		name   string
		sel    Selector
		labels map[string]string
		want   bool
	}{
		{name: "empty selector matches everything", sel: Selector{}, labels: labels, want: true},
		{name: "empty selector matches no labels", sel: Selector{}, labels: nil, want: true},
		{name: "matchLabels hit", sel: Selector{MatchLabels: map[string]string{"app": "web", "tier": "frontend"}}, labels: labels, want: true},
		{name: "matchLabels wrong value", sel: Selector{MatchLabels: map[string]string{"app": "api"}}, labels: labels, want: false},
		{name: "matchLabels missing key", sel: Selector{MatchLabels: map[string]string{"zone": "a"}}, labels: labels, want: false},
		{name: "matchLabels empty value present", sel: Selector{MatchLabels: map[string]string{"canary": ""}}, labels: labels, want: true},
		{name: "matchLabels against no labels", sel: Selector{MatchLabels: map[string]string{"app": "web"}}, labels: nil, want: false},
		{name: "In hit", sel: expr("app", SelectorIn, "api", "web"), labels: labels, want: true},
		{name: "In miss", sel: expr("app", SelectorIn, "api"), labels: labels, want: false},
		{name: "In absent key", sel: expr("zone", SelectorIn, "a"), labels: labels, want: false},
		{name: "NotIn hit", sel: expr("app", SelectorNotIn, "api"), labels: labels, want: true},
		{name: "NotIn miss", sel: expr("app", SelectorNotIn, "web"), labels: labels, want: false},
		{name: "NotIn absent key matches", sel: expr("zone", SelectorNotIn, "a"), labels: labels, want: true},
		{name: "Exists", sel: expr("canary", SelectorExists), labels: labels, want: true},
		{name: "Exists absent", sel: expr("zone", SelectorExists), labels: labels, want: false},
		{name: "DoesNotExist", sel: expr("zone", SelectorDoesNotExist), labels: labels, want: true},
		{name: "DoesNotExist present", sel: expr("canary", SelectorDoesNotExist), labels: labels, want: false},
		{name: "unknown operator never matches", sel: expr("app", "Like", "web"), labels: labels, want: false},
		{
			name: "all requirements must hold",
			sel: Selector{
				MatchLabels:      map[string]string{"app": "web"},
				MatchExpressions: []SelectorRequirement{{Key: "tier", Operator: SelectorIn, Values: []string{"backend"}}},
			},
			labels: labels, want: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sel.Matches(tt.labels); got != tt.want {
				t.Errorf("Matches(%v) = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
}

func expr(key string, op SelectorOperator, values ...string) Selector {
	return Selector{MatchExpressions: []SelectorRequirement{{Key: key, Operator: op, Values: values}}}
}
