package config

import "slices"

// Selector has the JSON shape of a Kubernetes metav1.LabelSelector, so the
// operator copies a policy's podSelector into the document unchanged, and the
// same semantics: all requirements must hold, and an empty selector matches
// every pod.
type Selector struct {
	// matchLabels must all be present with these values.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// matchExpressions must all hold.
	MatchExpressions []SelectorRequirement `json:"matchExpressions,omitempty"`
}

// SelectorOperator is a label selector operator.
type SelectorOperator string

const (
	SelectorIn           SelectorOperator = "In"
	SelectorNotIn        SelectorOperator = "NotIn"
	SelectorExists       SelectorOperator = "Exists"
	SelectorDoesNotExist SelectorOperator = "DoesNotExist"
)

// SelectorRequirement is one expression of a Selector.
type SelectorRequirement struct {
	Key      string           `json:"key"`
	Operator SelectorOperator `json:"operator"`
	Values   []string         `json:"values,omitempty"`
}

// Matches reports whether labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case SelectorIn:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case SelectorNotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case SelectorExists:
			if !ok {
				return false
			}
		case SelectorDoesNotExist:
			if ok {
				return false
			}
		default:
			// Validate refuses unknown operators; never match on one.
			return false
		}
	}
	return true
}
