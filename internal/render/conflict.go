package render

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// conflictWith returns the first of the older winners whose selector could
// select a pod c also selects.
//
// Conflicts are decided on the selectors alone, not on the pods that exist
// now: a conflict shows before the first pod is scheduled, and a winner does
// not change when pods come and go.
func conflictWith(winners []candidate, c candidate) (string, bool) {
	for _, w := range winners {
		if Overlap(c.selector, w.selector) {
			return w.key.Name, true
		}
	}
	return "", false
}

// keyRequirement is everything one selector says about one label key.
type keyRequirement struct {
	present, absent bool
	// in is nil when unconstrained; otherwise the allowed values.
	in    []string
	notIn []string
}

// Overlap reports whether some set of labels satisfies both selectors. A
// selector is a conjunction of independent per-key requirements, so they
// overlap exactly when, for every key, the requirements of both together are
// satisfiable.
func Overlap(a, b metav1.LabelSelector) bool {
	reqs := map[string]*keyRequirement{}
	add := func(s metav1.LabelSelector) {
		get := func(k string) *keyRequirement {
			if reqs[k] == nil {
				reqs[k] = &keyRequirement{}
			}
			return reqs[k]
		}
		for k, v := range s.MatchLabels {
			get(k).restrictIn([]string{v})
		}
		for _, e := range s.MatchExpressions {
			r := get(e.Key)
			switch e.Operator {
			case metav1.LabelSelectorOpIn:
				r.restrictIn(e.Values)
			case metav1.LabelSelectorOpNotIn:
				r.notIn = append(r.notIn, e.Values...)
			case metav1.LabelSelectorOpExists:
				r.present = true
			case metav1.LabelSelectorOpDoesNotExist:
				r.absent = true
			}
		}
	}
	add(a)
	add(b)
	for _, r := range reqs {
		if !r.satisfiable() {
			return false
		}
	}
	return true
}

func (r *keyRequirement) restrictIn(values []string) {
	r.present = true
	if r.in == nil {
		r.in = slices.Clone(values)
		return
	}
	r.in = slices.DeleteFunc(r.in, func(v string) bool { return !slices.Contains(values, v) })
	if r.in == nil {
		r.in = []string{}
	}
}

func (r *keyRequirement) satisfiable() bool {
	if r.present && r.absent {
		return false
	}
	if r.in == nil {
		// Any value not excluded will do, and there are infinitely many.
		return true
	}
	for _, v := range r.in {
		if !slices.Contains(r.notIn, v) {
			return true
		}
	}
	return false
}
