package ratelimit

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// setHeaders writes the rate-limit headers of the enforced rules whose
// state is known, in the form each rule's policy asks for:
//
//   - Draft (draft-ietf-httpapi-ratelimit-headers, the RateLimit and
//     RateLimit-Policy Structured Fields): one list member per rule, named
//     "<policy>/<rule>", RateLimit-Policy with its quota q and window w in
//     seconds, RateLimit with what remains (r) and the seconds until it
//     comes back (t);
//   - Legacy (the separate fields of earlier drafts): RateLimit-Limit,
//     RateLimit-Remaining, RateLimit-Reset and RateLimit-Policy of the most
//     restrictive rule (fewest remaining, then the longest reset);
//   - Both: the draft's fields and the legacy Limit, Remaining and Reset
//     (the two forms' RateLimit-Policy cannot both be sent; the draft's is).
func setHeaders(h http.Header, outs []outcome) {
	var policy, state strings.Builder
	var legacy *outcome
	draft := false
	for i := range outs {
		o := &outs[i]
		if !o.known || o.rule.shadow {
			continue
		}
		if o.rule.headers != config.HeadersLegacy {
			draft = true
			if policy.Len() > 0 {
				policy.WriteString(", ")
				state.WriteString(", ")
			}
			policy.WriteString(o.rule.draftPolicy)
			state.WriteString(o.rule.draftName)
			state.WriteString(";r=")
			state.WriteString(strconv.FormatInt(o.remaining, 10))
			state.WriteString(";t=")
			state.WriteString(seconds(o.reset, 0))
		}
		if o.rule.headers != config.HeadersDraft && restrictive(o, legacy) {
			legacy = o
		}
	}
	if draft {
		h["Ratelimit-Policy"] = []string{policy.String()}
		h["Ratelimit"] = []string{state.String()}
	}
	if legacy != nil {
		h["Ratelimit-Limit"] = []string{legacy.rule.limitHeader}
		h["Ratelimit-Remaining"] = []string{strconv.FormatInt(legacy.remaining, 10)}
		h["Ratelimit-Reset"] = []string{seconds(legacy.reset, 0)}
		if !draft {
			h["Ratelimit-Policy"] = []string{legacy.rule.policyHeader}
		}
	}
}

// restrictive reports whether o should supply the legacy headers instead
// of cur: the one with fewer requests remaining, then the one that takes
// longer to reset.
func restrictive(o, cur *outcome) bool {
	if cur == nil {
		return true
	}
	if o.remaining != cur.remaining {
		return o.remaining < cur.remaining
	}
	return o.reset > cur.reset
}
