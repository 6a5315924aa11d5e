// Package ratelimit enforces rate limits shared by every replica of a
// service: counters live in Redis and are updated atomically there (two
// commands for a strict fixed window, a Lua script for the other algorithms
// and for leases), so a limit of N admits at most N requests per window
// however many sidecars race for it.
//
// A Limiter is built from the rate-limit policies that select the pod and is
// immutable; a config reload builds a new one. Each request is matched
// against every rule; Plan queues the calls of all matching rules into the
// request's batch (one pipeline per Redis node, shared with the session
// lookup), leased rules spend slices of their quota taken from Redis
// beforehand (lease.go), and the request passes only if every enforced rule
// admits it. See docs/rate-limiting.md for the algorithms, key layout,
// leases, headers and failure modes.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

var (
	//go:embed fixed_window_lease.lua
	fixedLeaseSrc string
	//go:embed fixed_window_return.lua
	fixedWindowReturnSrc string
	//go:embed sliding_window.lua
	slidingWindowSrc string
	//go:embed token_bucket.lua
	tokenBucketSrc string
	//go:embed token_bucket_lease.lua
	bucketLeaseSrc string

	fixedLeaseScript    = redisconn.NewScript(fixedLeaseSrc)
	slidingWindowScript = redisconn.NewScript(slidingWindowSrc)
	tokenBucketScript   = redisconn.NewScript(tokenBucketSrc)
	bucketLeaseScript   = redisconn.NewScript(bucketLeaseSrc)
)

// conn is one Redis connection and the rules that keep their counters there.
type conn struct {
	name   string
	client *redisconn.Client
	rules  []*rule
	// fallback limits rules that fail open while this connection is down.
	fallback *fallback
}

// Limiter enforces a set of rate-limit policies.
type Limiter struct {
	conns  []*conn
	denied *denyCache
	leases *leases
	m      *Metrics
	log    *slog.Logger
	now    func() time.Time

	// quit ends the goroutine that gives back idle leased units.
	quit chan struct{}
	done chan struct{}
}

// New builds the Limiter of ps, policies Compile accepted. conns maps
// connection names (config RedisConnection.Name) to connections; every
// policy's connection must be there. New validates nothing of ps, and does
// not talk to Redis, so it succeeds during a Redis outage and the rules'
// failure modes apply until Redis returns: its only errors are missing
// connections.
func New(ps []*Policy, conns map[string]*redisconn.Conn, m *Metrics, log *slog.Logger) (*Limiter, error) {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{denied: newDenyCache(denyCacheMaxKeys), leases: newLeases(), m: m, log: log, now: time.Now}
	byName := map[string]*conn{}
	var errs []error
	for _, p := range ps {
		if rc, ok := conns[p.redis]; !ok || rc == nil {
			errs = append(errs, fmt.Errorf("rate limit policy %s/%s: unknown redis connection %q", p.namespace, p.name, p.redis))
			continue
		}
		c := byName[p.redis]
		if c == nil {
			c = &conn{name: p.redis, fallback: newFallback(fallbackMaxKeys)}
			byName[p.redis] = c
			l.conns = append(l.conns, c)
		}
		c.rules = append(c.rules, p.rules...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	leased := false
	for _, c := range l.conns {
		c.client = conns[c.name].Client("ratelimit", c.refuses())
		for _, r := range c.rules {
			leased = leased || r.leased
		}
	}
	if leased {
		l.quit, l.done = make(chan struct{}), make(chan struct{})
		go l.returnIdle()
	}
	return l, nil
}

// returnIdle gives back idle leased units until Close.
func (l *Limiter) returnIdle() {
	defer close(l.done)
	t := time.NewTicker(returnEvery)
	defer t.Stop()
	for {
		select {
		case <-l.quit:
			return
		case now := <-t.C:
			l.leases.giveBack(context.Background(), now)
		}
	}
}

// Close stops giving back idle leased units and gives back what it holds,
// so a replaced Limiter strands nothing.
func (l *Limiter) Close() error {
	if l.quit == nil {
		return nil
	}
	close(l.quit)
	<-l.done
	l.leases.giveBack(context.Background(), time.Now().Add(returnIdle+time.Second))
	return nil
}

// refuses reports whether a rule on c answers 503 while Redis is down.
func (c *conn) refuses() bool {
	for _, r := range c.rules {
		if r.failClosed && !r.shadow {
			return true
		}
	}
	return false
}

// outcome is one rule's verdict on one request.
type outcome struct {
	rule *rule
	conn *conn
	key  string
	// deferred: the key depends on the session subject, which was not known
	// when the request was planned.
	deferred bool
	// local: a leased unit admitted the request without Redis.
	local bool
	want  int64 // units a lease asks for
	sent  time.Time
	end   time.Time // strict FixedWindow: the window's end on the sidecar's clock
	cmd   *redis.Cmd
	incr  *redis.IntCmd
	call  *redisconn.Call

	err       error
	known     bool // remaining and reset are known, for the headers
	allowed   bool
	remaining int64
	reset     time.Duration // until the quota is restored (see docs)
	retry     time.Duration // until a denied request could pass
	result    string
}

// verdict is the decision on a request across all its rules.
type verdict struct {
	status int // 0: pass on; 429 or 503
	retry  time.Duration
}

// maxInlineRules is how many matching rules a request can have before the
// outcome slice spills to the heap.
const maxInlineRules = 8

// plan is the limiter's view of one request, made before any feature
// decides: the matching rules, their keys and the Redis calls they need.
type plan struct {
	buf    [maxInlineRules]outcome
	outs   []outcome
	b      *redisconn.Batch
	start  time.Time
	denied *outcome // an enforced rule the deny cache answered
	// subject is the session subject the plan keyed its rules by ("" when
	// the session step had not established one yet).
	subject string
}

type planKey struct{ l *Limiter }

// Plan matches r against every rule and queues into b the calls of those
// whose keys are known: every rule not keyed by the session subject, and
// those too when an earlier feature already put the subject in ctx (a
// session the in-process tier resolved). A leased rule with a unit left
// needs no call. It returns ctx carrying the plan for Middleware, and
// reports final when the deny cache already refuses the request: the
// limiter answers it 429 whatever Redis says, so the features after it
// (the cache's lookup) are not planned and a client hammering a closed
// limit costs Redis nothing.
func (l *Limiter) Plan(ctx context.Context, r *http.Request, b *redisconn.Batch) (context.Context, bool) {
	p := l.plan(ctx, r, b)
	return context.WithValue(ctx, planKey{l}, p), p.denied != nil
}

func (l *Limiter) plan(ctx context.Context, r *http.Request, b *redisconn.Batch) *plan {
	p := &plan{b: b, start: l.now()}
	var subject bool
	p.subject, subject = identity.Subject(ctx)
	p.outs = p.buf[:0]
	for _, c := range l.conns {
		for _, ru := range c.rules {
			if !ru.match.Match(r) {
				continue
			}
			o := outcome{rule: ru, conn: c}
			if ru.key.Subject && !subject {
				o.deferred = true
			} else {
				o.key = ru.keyFor(ctx, r)
			}
			p.outs = append(p.outs, o)
		}
	}
	for i := range p.outs {
		if o := &p.outs[i]; !o.deferred && !l.prepare(ctx, p, o) {
			break
		}
	}
	return p
}

// prepare queues o's call, unless the deny cache or a leased unit answers
// it; it returns false once the request is known to be denied, when nothing
// more is queued (a request denied locally is counted nowhere).
func (l *Limiter) prepare(ctx context.Context, p *plan, o *outcome) bool {
	if p.denied != nil {
		return false
	}
	now := p.start
	if o.rule.leased {
		// Units in hand first: a denial cached while they were on their
		// way must not strand them.
		if ok, remaining, reset := l.leases.spend(o.key, now); ok {
			o.local, o.known, o.allowed, o.remaining, o.reset = true, true, true, remaining, reset
			return true
		}
	}
	if !o.rule.shadow {
		if left, ok := l.denied.get(o.key, now); ok {
			o.remaining, o.reset, o.retry = 0, left, left
			p.denied = o
			// The calls queued for the request's earlier rules are
			// withdrawn while the batch is unsent: a refused request
			// counts against no other limit.
			for i := range p.outs {
				if e := &p.outs[i]; e.call != nil && p.b.Drop(e.call) {
					e.call = nil
					if e.rule.leased {
						// Its lease was asked for (leases.want): it
						// is not on its way after all.
						l.leases.failed(e.key)
					}
				}
			}
			return false
		}
	}
	if o.rule.leased {
		o.want = l.leases.want(o.key, now)
	}
	o.sent = now
	ru, key := o.rule, o.key
	o.call = p.b.Add(o.conn.client, "script", key, func(q *redisconn.Pipe) {
		switch {
		case ru.algorithm == config.FixedWindow && !ru.leased:
			// A counter per window and an expiry set on its creation: two
			// commands, no script, windows on this sidecar's clock (see
			// docs). The expiry is relative, the time left in the window
			// plus windowGrace, so it is in the future on Redis' clock
			// whatever this clock's skew against it: an absolute
			// PEXPIREAT from a clock more than windowGrace behind would
			// delete the counter right after INCR made it, and every
			// request would be admitted.
			ms := ru.window.Milliseconds()
			at := now.UnixMilli()
			idx := at / ms
			end := (idx + 1) * ms
			o.end = time.UnixMilli(end)
			wkey := key + ":" + strconv.FormatInt(idx, 10)
			o.incr = q.Incr(ctx, wkey)
			q.Do(ctx, "pexpire", wkey, end-at+windowGrace.Milliseconds(), "nx")
		case ru.leased:
			o.cmd = q.Run(ctx, ru.script, []string{key}, append(slices.Clip(ru.args), o.want)...)
		default:
			o.cmd = q.Run(ctx, ru.script, []string{key}, ru.args...)
		}
	})
	return true
}

// replan handles a plan keyed by a subject the session step then
// disowned: the in-process tier resolved the token, and the batch's
// extension found the session gone (revoked, the broadcast still on its
// way). The rules keyed by the subject decide again under the request's
// final identity (anonymous: the per-IP fallback key), so the request is
// neither refused for the old subject's denial nor let off the anonymous
// limit. Calls already sent for the old subject are spent.
func (l *Limiter) replan(r *http.Request, p *plan) *plan {
	if p.denied != nil {
		// Refused by the deny cache while planning: nothing of this
		// limiter was sent (prepare stops at the denial and the batch
		// withdraws the calls queued before it), so plan afresh.
		return l.plan(r.Context(), r, new(redisconn.Batch))
	}
	for i := range p.outs {
		if o := &p.outs[i]; o.rule.key.Subject {
			*o = outcome{rule: o.rule, conn: o.conn, deferred: true}
		}
	}
	return p
}

// windowGrace is how long a strict FixedWindow counter outlives its window
// on the clock of the sidecar that created it: sidecars whose clocks run
// behind that one by less than this still count into it.
const windowGrace = 5 * time.Second

// Middleware enforces the limits before next. Requests no rule matches pass
// through untouched and cost no Redis call.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(planKey{l}).(*plan)
		if p == nil {
			// Not planned by the proxy (the middleware used on its own).
			var b redisconn.Batch
			p = l.plan(r.Context(), r, &b)
		}
		if len(p.outs) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		v := l.decide(r, p)
		setHeaders(w.Header(), p.outs)
		switch v.status {
		case http.StatusTooManyRequests:
			problem.Write(w, r, &problem.Error{
				Status: http.StatusTooManyRequests,
				Kind:   "rate-limited",
				Title:  "Too many requests",
				Detail: "A rate limit for this route is exhausted; retry after the number of seconds in Retry-After.",
				Header: http.Header{"Retry-After": {seconds(v.retry, 1)}},
			})
		case http.StatusServiceUnavailable:
			problem.Write(w, r, &problem.Error{
				Status: http.StatusServiceUnavailable,
				Kind:   "rate-limit-unavailable",
				Title:  "Rate limiting unavailable",
				Detail: "The rate-limit store cannot be reached and this route fails closed.",
				Header: http.Header{"Retry-After": {"1"}},
			})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// decide finishes the plan: the rules keyed by a subject that only the
// session step established are queued now, whatever the request's batch
// has not sent yet goes out (one pipeline per node, the nodes and
// connections concurrently), and the outcomes are combined.
func (l *Limiter) decide(r *http.Request, p *plan) verdict {
	ctx := r.Context()
	if s, _ := identity.Subject(ctx); p.subject != "" && s != p.subject {
		p = l.replan(r, p)
	}
	for i := range p.outs {
		o := &p.outs[i]
		if o.deferred && p.denied == nil {
			o.key = o.rule.keyFor(ctx, r)
			o.deferred = false
			l.prepare(ctx, p, o)
		}
	}
	if p.denied != nil {
		// Known to be denied without Redis: the other rules are not
		// evaluated (their calls, if any, were never sent).
		o := p.denied
		l.m.decisions.WithLabelValues(o.rule.policy, o.rule.name, resultDenied).Inc()
		l.m.latency.Observe(time.Since(p.start).Seconds())
		for i := range p.outs {
			p.outs[i].known = &p.outs[i] == o
		}
		o.result = resultDenied
		return verdict{status: http.StatusTooManyRequests, retry: o.retry}
	}
	if p.b.Pending() > 0 {
		p.b.Exec(ctx)
	}
	logged := false
	for i := range p.outs {
		o := &p.outs[i]
		if o.local {
			continue
		}
		if err := o.call.Err(); err != nil {
			o.err = err
			if o.rule.leased {
				l.leases.failed(o.key)
			}
			// Calls the breaker answered are not logged: during an
			// outage that would be one line per request.
			if !logged && !o.call.Skipped() {
				logged = true
				l.log.Warn("rate limit store unavailable", "redis", o.conn.name, "error", err)
			}
			continue
		}
		o.err = l.parse(o)
		o.known = o.err == nil
	}
	v := l.judge(p.outs, l.now())
	l.m.latency.Observe(time.Since(p.start).Seconds())
	return v
}

// parse reads a rule's reply.
func (l *Limiter) parse(o *outcome) error {
	ru := o.rule
	if o.incr != nil {
		n, err := o.incr.Result()
		if err != nil {
			return fmt.Errorf("rate limit counter for rule %s/%s: %w", ru.policy, ru.name, err)
		}
		o.allowed = n <= ru.limit
		o.remaining = max(ru.limit-n, 0)
		o.reset = max(o.end.Sub(o.sent), time.Millisecond)
		if !o.allowed {
			o.retry = o.reset
		}
		return nil
	}
	vals, err := o.cmd.Slice()
	if err != nil {
		return fmt.Errorf("rate limit script for rule %s/%s: %w", ru.policy, ru.name, err)
	}
	if len(vals) != 4 {
		return fmt.Errorf("rate limit script for rule %s/%s: %d values, want 4", ru.policy, ru.name, len(vals))
	}
	var n [3]int64
	for i := range n {
		v, ok := vals[i].(int64)
		if !ok {
			return fmt.Errorf("rate limit script for rule %s/%s: value %d is %T", ru.policy, ru.name, i, vals[i])
		}
		n[i] = v
	}
	o.reset = time.Duration(n[2]) * time.Millisecond
	if !ru.leased {
		retry, _ := vals[3].(int64)
		o.allowed, o.remaining, o.retry = n[0] == 1, n[1], time.Duration(retry)*time.Millisecond
		return nil
	}
	granted, left := n[0], n[1]
	o.allowed = granted > 0
	var window int64
	expires := o.sent.Add(ru.leaseLife)
	if ru.algorithm == config.FixedWindow {
		w, _ := vals[3].(string)
		if window, err = strconv.ParseInt(w, 10, 64); err != nil {
			return fmt.Errorf("rate limit script for rule %s/%s: window index %q: %w", ru.policy, ru.name, w, err)
		}
		// The window ends no sooner than reset after the script ran (the
		// script rounds down), which was after the call was sent: spending
		// until sent + reset never spends a unit after its window.
		expires = o.sent.Add(o.reset)
	}
	if o.allowed {
		l.leases.granted(o, granted, left, o.reset, window, expires)
		o.remaining = left + granted - 1
		return nil
	}
	l.leases.failed(o.key)
	o.remaining = 0
	o.retry = o.reset
	if ru.algorithm == config.TokenBucket {
		retry, _ := vals[3].(int64)
		o.retry = time.Duration(retry) * time.Millisecond
	}
	return nil
}

// judge records each outcome and combines them: every enforced rule must
// admit; a failing-closed rule whose store is down answers 503, which wins
// over 429 because no counter could be consulted.
func (l *Limiter) judge(outs []outcome, now time.Time) verdict {
	var v verdict
	for i := range outs {
		o := &outs[i]
		ru := o.rule
		switch {
		case o.err != nil && ru.shadow:
			o.result = resultErrorOpen
		case o.err != nil && ru.failClosed:
			o.result = resultErrorClosed
			v.status = http.StatusServiceUnavailable
		case o.err != nil:
			if o.conn.fallback.allow(o.key, ru.fallbackRate, ru.fallbackBurst, now) {
				o.result = resultErrorOpen
			} else {
				o.result = resultFallbackDenied
				if v.status == 0 {
					v.status = http.StatusTooManyRequests
				}
				v.retry = max(v.retry, time.Duration(float64(time.Second)/ru.fallbackRate))
			}
		case o.allowed:
			o.result = resultAllowed
			if o.remaining*10 < max(ru.limit, ru.burst) {
				l.m.nearLimit.WithLabelValues(ru.policy, ru.name).Inc()
			}
		case ru.shadow:
			o.result = resultShadowDenied
			l.log.Debug("shadow rate limit would deny", "policy", ru.policy, "rule", ru.name, "key", o.key)
		default:
			o.result = resultDenied
			if v.status == 0 {
				v.status = http.StatusTooManyRequests
			}
			v.retry = max(v.retry, o.retry)
			if o.retry > 0 {
				until := o.retry
				if ru.leased {
					// Units another sidecar gives back (lease.go) must be
					// reachable well before the window ends.
					until = min(until, leaseDenyFor)
				}
				l.denied.put(o.key, now.Add(until), now)
			}
		}
		l.m.decisions.WithLabelValues(ru.policy, ru.name, o.result).Inc()
	}
	return v
}

// seconds formats d as whole seconds rounded up, at least floor: a client
// told to wait 0 seconds while still limited would retry immediately.
func seconds(d time.Duration, floor int64) string {
	s := int64(math.Ceil(d.Seconds()))
	return strconv.FormatInt(max(s, floor), 10)
}

// RedisHealth is the feature's view of each Redis connection it uses, for
// /readyz.
func (l *Limiter) RedisHealth() []redisconn.Health {
	out := make([]redisconn.Health, len(l.conns))
	for i, c := range l.conns {
		out[i] = c.client.Health()
	}
	return out
}
