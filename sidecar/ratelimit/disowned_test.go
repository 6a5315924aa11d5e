package ratelimit

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// TestDisownedSubjectDecidesAsAnonymous replays a hostile review's race:
// the session's in-process tier resolves a revoked token (the revocation's
// broadcast is still on its way), so the request is planned under the old
// subject; the batch's extension then finds the session gone and the
// session step clears the subject. The subject-keyed rule must decide
// under the request's final identity, the anonymous per-IP key: not answer
// 429 for the old subject's cached denial, and not let the request off the
// anonymous limit.
func TestDisownedSubjectDecidesAsAnonymous(t *testing.T) {
	_, c := startRedis(t)
	r := newRule("per-user", config.FixedWindow, 1, time.Hour)
	r.Key = config.RateLimitKey{Subject: true}
	l := newLimiter(t, one(t, c), nil, testPolicy("ns", "disowned", "main", r))
	h := l.Middleware(okHandler)
	// planned under alice; the session step then disowns her.
	disowned := func(ip string) *http.Request {
		pr := req("GET", "/", ip, "alice")
		ctx, _ := l.Plan(pr.Context(), pr, new(redisconn.Batch))
		return pr.WithContext(identity.WithSubject(ctx, ""))
	}

	// alice's limit is spent and her denial cached.
	for range 2 {
		serve(h, req("GET", "/", "10.70.0.1", "alice"))
	}
	if got := serve(h, req("GET", "/", "10.70.0.1", "alice")).StatusCode; got != http.StatusTooManyRequests {
		t.Fatalf("alice after her limit: %d, want 429", got)
	}
	if got := serve(h, disowned("10.70.0.2")).StatusCode; got != http.StatusOK {
		t.Errorf("disowned request planned under alice's cached denial: %d, want 200 (its anonymous key is fresh)", got)
	}
	// That request spent 10.70.0.2's anonymous budget.
	if got := serve(h, req("GET", "/", "10.70.0.2", "")).StatusCode; got != http.StatusTooManyRequests {
		t.Errorf("anonymous request after a disowned one from the same address: %d, want 429", got)
	}

	// Without a cached denial: the disowned request is charged to its
	// address, not to the subject it was planned under.
	if got := serve(h, disowned("10.70.0.3")).StatusCode; got != http.StatusOK {
		t.Fatalf("disowned request: %d, want 200", got)
	}
	if got := serve(h, req("GET", "/", "10.70.0.3", "")).StatusCode; got != http.StatusTooManyRequests {
		t.Errorf("anonymous request after a disowned one from the same address: %d, want 429", got)
	}
}
