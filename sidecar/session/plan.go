package session

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// plan is the session step's view of one request, made before any feature
// decides: which paths apply, the token (removed from the request once
// read, unless the policy forwards it), and either the tier's entry or the
// Redis call that resolves it. The call joins the request's batch, so the
// lookup shares its round trip with the other features' calls.
type plan struct {
	now       time.Time
	public    bool
	required  bool
	present   bool
	malformed bool
	t         token
	key       string

	// entry is the tier's session, when it served the request; ext the
	// extension sent with it, if one was due.
	entry *tierEntry
	ext   *redis.BoolCmd

	call  *redisconn.Call
	get   *redis.StringCmd
	pttl  *redis.DurationCmd
	fill  bool // the tier was usable when the lookup was planned
	epoch uint64
}

type planKey struct{ m *Manager }

// Plan queues the session lookup of r into b (nothing, when the tier holds
// the session and no extension is due) and returns ctx carrying the plan
// for Middleware. A session the tier resolved is put in the context at
// once, so that the rate limiter's subject-keyed rules join the same batch;
// a token only Redis can resolve marks the subject pending, so that the
// cache does not plan a lookup whose key the subject may change.
//
// A required path without a token, or with a malformed one, is refused by
// the session step whatever Redis says: Plan reports it final, so that the
// features after it do not count the request.
func (m *Manager) Plan(ctx context.Context, r *http.Request, b *redisconn.Batch) (context.Context, bool) {
	p := m.plan(r, b)
	ctx = context.WithValue(ctx, planKey{m}, p)
	switch {
	case p.entry != nil:
		ctx = identity.WithSubject(ctx, p.entry.sc.Subject)
	case p.call != nil:
		// Only Redis' answer tells whether the request has a subject.
		ctx = identity.WithSubjectPending(ctx)
	}
	return ctx, p.required && (!p.present || p.malformed)
}

func (m *Manager) plan(r *http.Request, b *redisconn.Batch) *plan {
	p := &plan{now: m.now()}
	if request.AnyMatch(m.public, r) {
		p.public = true
		m.stripToken(r)
		return p
	}
	p.required = request.AnyMatch(m.requireFor, r)
	raw, present := m.extract(r)
	// Read; from here on the token is the sidecar's, not the app's, nor
	// any feature's planned after this one (a rate limit keyed by the
	// token header sees none).
	m.stripToken(r)
	if p.present = present; !present {
		return p
	}
	t, err := parseToken(raw)
	if err != nil {
		p.malformed = true
		return p
	}
	m.planToken(r.Context(), p, t, b)
	return p
}

// planToken plans the resolution of t: from the tier if it may serve,
// otherwise with a Redis lookup queued into b.
func (m *Manager) planToken(ctx context.Context, p *plan, t token, b *redisconn.Batch) {
	p.t, p.key = t, m.keyFor(t)
	key := p.key
	if m.watch.Usable(p.now) {
		e, epoch := m.tier.get(key, &t.secret, p.now)
		p.fill, p.epoch = true, epoch
		if e != nil && (e.sc.ExpiresMs == 0 || p.now.UnixMilli() < e.sc.ExpiresMs) {
			p.entry = e
			if m.tier.extending(e, m, p.now) {
				p.call = b.Add(m.rdb, "extend", key, func(q *redisconn.Pipe) { p.ext = q.PExpire(ctx, key, m.ttl) })
			}
			return
		}
	}
	p.call = b.Add(m.rdb, "lookup", key, func(q *redisconn.Pipe) {
		switch {
		case m.sliding && m.refresh > 0:
			// GET and PTTL in one round trip; write only when the session
			// is about to run out, trading a slightly shorter idle window
			// for far fewer writes.
			p.get, p.pttl = q.Get(ctx, key), q.PTTL(ctx, key)
		case m.sliding:
			p.get = q.GetEx(ctx, key, m.ttl)
		default:
			p.get = q.Get(ctx, key)
		}
	})
}

// resolve reads the plan's outcome once its batch ran: the session, or why
// there is none.
func (m *Manager) resolve(ctx context.Context, p *plan) (*Context, error) {
	if p.entry != nil {
		if p.ext != nil {
			switch err := p.call.Err(); {
			case err != nil:
				// The session stays valid for what the tier knows remains
				// of it; the next request tries again.
				m.log.WarnContext(ctx, "extend session", "err", err)
			case !p.ext.Val():
				// Gone from Redis: revoked or expired meanwhile.
				m.tier.evictKey(p.key)
				return nil, errNotFound
			default:
				m.tier.extended(p.entry, m.ttl, p.now)
			}
		}
		return p.entry.sc, nil
	}
	if err := p.call.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", errStore, err)
	}
	val, err := p.get.Result()
	if errors.Is(err, redis.Nil) {
		return nil, errNotFound
	}
	key := p.key
	var idleEnd time.Time
	switch {
	case p.pttl != nil:
		idleEnd = p.now.Add(max(p.pttl.Val(), 0))
		if left := p.pttl.Val(); left >= 0 && left < m.refresh {
			// The session is still valid for its remaining time; a failed
			// extension must not fail this request.
			if err := m.rdb.Do(ctx, "extend", key, func(q *redisconn.Pipe) { q.PExpire(ctx, key, m.ttl) }); err != nil {
				m.log.WarnContext(ctx, "extend session", "err", err)
			} else {
				idleEnd = p.now.Add(m.ttl)
			}
		}
	case m.sliding:
		idleEnd = p.now.Add(m.ttl)
	}
	sc, err := m.decode(p.t, key, val)
	if err != nil {
		return nil, err
	}
	if sc.ExpiresMs > 0 && m.now().UnixMilli() >= sc.ExpiresMs {
		// Sliding kept the key alive past its absolute end; remove it now
		// rather than let further attempts keep extending it.
		if err := m.rdb.Do(ctx, "delete_expired", key, func(q *redisconn.Pipe) { q.Del(ctx, key) }); err != nil {
			m.log.WarnContext(ctx, "delete expired session", "err", err)
		}
		return nil, errExpired
	}
	if p.fill {
		e := &tierEntry{secret: p.t.secret, sc: sc, subject: m.subjectSum(sc.Subject),
			until: p.now.Add(tierMaxAge), idleEnd: idleEnd, extended: p.now, last: p.now}
		if m.sliding && m.refresh == 0 {
			// GETEX just extended it.
			e.extended = p.now
		}
		m.tier.put(key, e, p.epoch)
	}
	return sc, nil
}

// lookup resolves t on its own (not as part of a request's batch).
func (m *Manager) lookup(ctx context.Context, t token) (*Context, error) {
	ctx, cancel := m.rdb.Phase(ctx)
	defer cancel()
	p := &plan{now: m.now()}
	var b redisconn.Batch
	m.planToken(ctx, p, t, &b)
	b.Exec(ctx)
	return m.resolve(ctx, p)
}

// broadcast tells every sidecar of the policy, this one included, to evict
// what rv names from its tier. A revocation is confirmed only once the
// broadcast left: until then other sidecars may still serve the session.
func (m *Manager) broadcast(ctx context.Context, rv revocation) error {
	msg, err := json.Marshal(rv)
	if err != nil {
		return fmt.Errorf("encode revocation: %w", err)
	}
	if _, err := m.rdb.Publish(ctx, "broadcast", m.channel, msg); err != nil {
		return fmt.Errorf("broadcast revocation: %w", err)
	}
	return nil
}

func subjectB64(sum [32]byte) string { return base64.RawURLEncoding.EncodeToString(sum[:]) }

// Close ends the revocation subscription and the republishing of failed
// broadcasts.
func (m *Manager) Close() error {
	m.watch.Close()
	m.stopRepublishing()
	return nil
}
