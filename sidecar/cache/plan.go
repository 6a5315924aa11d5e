package cache

import (
	"context"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// plan is the cache's part of a request's Redis batch (sidecar/proxy's
// planner): the first round trip of the lookup the cache will make, queued
// with the session lookup and the rate-limit calls so that it costs no
// round trip of its own. It is only a read made early: the cache decides
// nothing until its middleware runs, after the session step and the rate
// limits have decided, on the request as they leave it. A request they
// refuse never reaches the cache, so it is neither answered from the cache
// nor counted by it; the lookup was a read, and nothing else happened.
type plan struct {
	// key is the variant the lookup reads (request.key when planned): the
	// middleware uses the lookup only if the request's key is still that,
	// so a subject, a Vary header value or a Vary spec that changed since
	// is looked up afresh.
	key string
	// ended is the request's flights.ended when planned: a flight for the
	// key that ended since may have stored what the lookup missed.
	ended uint32
	// localOn and epoch are the in-process tier's state before the
	// lookup was sent (found.localOn).
	localOn bool
	epoch   uint64
	look    *pendingLookup
}

type planKey struct{ c *Cache }

// Plan queues into b the first round trip of the lookup r would need, when
// b already carries another feature's calls (a round trip the request pays
// anyway) and the lookup's key cannot change before the cache serves:
//
//   - no lookup while the session step still has to ask Redis who the
//     request is (identity.SubjectPending): the subject decides whether
//     the request bypasses the cache and, for varyBySubject rules, the key;
//   - none for requests that bypass the cache, that its in-process tier
//     answers, or that will collapse onto a flight already under way;
//   - the request's directives (no-cache, max-age, only-if-cached…) and
//     Authorization (RFC 9111 3.5) are decided by the middleware, on the
//     found entry, as for an unplanned lookup.
//
// It returns ctx carrying the plan for Middleware, and never reports
// final: the cache decides only after every feature before it.
func (c *Cache) Plan(ctx context.Context, r *http.Request, b *redisconn.Batch) (context.Context, bool) {
	if b.Pending() == 0 || identity.SubjectPending(ctx) {
		return ctx, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return ctx, false
	}
	rl := c.ruleFor(r)
	if rl == nil {
		return ctx, false
	}
	now := time.Now()
	q := c.newRequest(ctx, r, rl)
	if c.bypassReason(q, now) != "" {
		return ctx, false
	}
	if e := c.findLocal(q, now); e != nil {
		switch q.decide(e, false, now) {
		case actFresh, actStaleClient:
			return ctx, false
		}
	}
	if q.mayCollapse() && rl.lockTimeout > 0 && c.flights.inFlight(q.key) {
		// It will most likely follow that flight's leader, without a
		// lookup of its own.
		return ctx, false
	}
	p := &plan{key: q.key, ended: c.flights.ended(q.key)}
	if c.local != nil {
		p.localOn, p.epoch = c.local.snapshot()
	}
	p.look = c.st.queueLookup(ctx, b, q.path, q.key)
	return context.WithValue(ctx, planKey{c}, p), false
}

// planned returns the lookup planned for q, if it still is q's: the same
// variant key, and no flight for it ended since.
func (c *Cache) planned(ctx context.Context, q *request) *plan {
	p, _ := ctx.Value(planKey{c}).(*plan)
	if p == nil || p.key != q.key || c.flights.ended(q.key) != p.ended {
		return nil
	}
	return p
}
