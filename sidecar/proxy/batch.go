package proxy

import (
	"context"
	"net/http"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
)

// planner is a feature whose Redis calls can share the request's batch.
// Plan inspects the request before any feature decides, queues the calls
// its decision will need into b (those it can know of yet), and returns the
// context its middleware reads its plan from. A planner may put what it
// already knows into the context for later planners: the session step puts
// a subject its in-process tier resolved, so that subject-keyed rate limits
// join the same batch, or marks the subject pending when only Redis can
// tell, so that the cache does not plan a lookup whose key the subject may
// change. The cache plans its lookup only into a batch that already has
// calls, so the lookup rides on a round trip the request pays anyway. final
// says that the feature will answer the request itself whatever Redis
// replies (a required session without a token, a rate limit whose deny
// cache refuses it): the features after it are not planned, so such a
// request is counted nowhere and costs no lookup, as if they had never
// seen it.
//
// Planning only reads ahead: every feature still decides in its
// middleware, in chain order (session, rate limit, cache), on the request
// as the features before it left it, so a cache hit is still refused by
// the session step and counted by the rate limits first.
type planner interface {
	Plan(ctx context.Context, r *http.Request, b *redisconn.Batch) (_ context.Context, final bool)
}

// planned runs the planners of the chain, in chain order, and sends what
// they queued as one batch: one pipeline per Redis node, the nodes
// concurrently, so a request whose session lookup and rate-limit scripts
// all need Redis pays one round trip of wall time. A feature whose calls
// depend on an earlier feature's decision (rate limits keyed by a subject
// the session step only now resolved) adds them to the same batch later
// and sends only those.
func planned(ps []planner, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := new(redisconn.Batch)
		ctx := r.Context()
		for _, p := range ps {
			var final bool
			if ctx, final = p.Plan(ctx, r, b); final {
				break
			}
		}
		if b.Pending() > 0 {
			b.Exec(ctx)
		}
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
