// Package ratelimit enforces rate limits shared by every replica of a
// service: counters live in Redis and are updated by one atomic Lua script
// per rule, so a limit of N admits at most N requests per window however many
// sidecars race for it.
//
// A Limiter is built from the rate-limit policies that select the pod and is
// immutable; a config reload builds a new one. Each request is matched
// against every rule; the scripts of all matching rules run in one pipeline
// per Redis connection (one round trip), and the request passes only if every
// enforced rule admits it. See docs/rate-limiting.md for the algorithms, key
// layout, headers and failure modes.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

var (
	//go:embed fixed_window.lua
	fixedWindowSrc string
	//go:embed sliding_window.lua
	slidingWindowSrc string
	//go:embed token_bucket.lua
	tokenBucketSrc string

	fixedWindowScript   = redisconn.NewScript(fixedWindowSrc)
	slidingWindowScript = redisconn.NewScript(slidingWindowSrc)
	tokenBucketScript   = redisconn.NewScript(tokenBucketSrc)
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
	m      *Metrics
	log    *slog.Logger
}

// New compiles the policies ps. conns maps connection names (config
// RedisConnection.Name) to connections; every policy's connection must be there.
// New does not talk to Redis, so it succeeds during a Redis outage and the
// rules' failure modes apply until Redis returns. It reports every invalid
// rule at once.
func New(ps []config.RateLimitPolicy, conns map[string]*redisconn.Conn, m *Metrics, log *slog.Logger) (*Limiter, error) {
	if m == nil {
		m = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{denied: newDenyCache(denyCacheMaxKeys), m: m, log: log}
	byName := map[string]*conn{}
	var errs []error
	for _, p := range ps {
		where := "rate limit policy " + p.Namespace + "/" + p.Name
		if rc, ok := conns[p.Redis]; !ok || rc == nil {
			errs = append(errs, fmt.Errorf("%s: unknown redis connection %q", where, p.Redis))
			continue
		}
		c := byName[p.Redis]
		if c == nil {
			c = &conn{name: p.Redis, fallback: newFallback(fallbackMaxKeys)}
			byName[p.Redis] = c
			l.conns = append(l.conns, c)
		}
		seen := map[string]bool{}
		for _, r := range p.Rules {
			if seen[r.Name] {
				errs = append(errs, fmt.Errorf("%s: rule %q: duplicate name", where, r.Name))
				continue
			}
			seen[r.Name] = true
			cr, err := compile(p, r)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: rule %q: %w", where, r.Name, err))
				continue
			}
			c.rules = append(c.rules, cr)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, c := range l.conns {
		c.client = conns[c.name].Client("ratelimit", c.refuses())
	}
	return l, nil
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
	rule      *rule
	conn      *conn
	key       string
	cmd       *redis.Cmd
	call      *redisconn.Call
	err       error
	allowed   bool
	remaining int64
	reset     time.Duration // until the quota is restored (see docs)
	retry     time.Duration // until a denied request could pass
	result    string
}

// verdict is the decision on a request across all its rules.
type verdict struct {
	status int      // 0: pass on; 429 or 503
	header *outcome // the most restrictive enforced rule, for RateLimit-*
	retry  time.Duration
}

// maxInlineRules is how many matching rules a request can have before the
// outcome slice spills to the heap.
const maxInlineRules = 8

// Middleware enforces the limits before next. Requests no rule matches pass
// through untouched and cost no Redis call.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [maxInlineRules]outcome
		outs := l.match(r, buf[:0])
		if len(outs) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		v := l.decide(r.Context(), outs)
		if v.header != nil {
			setHeaders(w.Header(), v.header)
		}
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

// match appends the rules r counts against, grouped by connection.
func (l *Limiter) match(r *http.Request, outs []outcome) []outcome {
	for _, c := range l.conns {
		for _, ru := range c.rules {
			if ru.match.Match(r) {
				outs = append(outs, outcome{rule: ru, conn: c, key: ru.counterKey(r)})
			}
		}
	}
	return outs
}

// decide runs the matching rules' scripts in one batch (one pipeline per
// Redis node, the nodes and connections concurrently) and combines the
// outcomes. A request that an enforced rule is already known to deny is
// answered without Redis.
func (l *Limiter) decide(ctx context.Context, outs []outcome) verdict {
	start := time.Now()
	if v, ok := l.cachedDenial(outs, start); ok {
		l.m.latency.Observe(time.Since(start).Seconds())
		return v
	}
	var b redisconn.Batch
	for i := range outs {
		o := &outs[i]
		o.call = b.Add(o.conn.client, "script", o.key, func(p *redisconn.Pipe) {
			o.cmd = p.Run(ctx, o.rule.script, []string{o.key}, o.rule.args...)
		})
	}
	b.Exec(ctx)
	logged := false
	for i := range outs {
		o := &outs[i]
		if err := o.call.Err(); err != nil {
			o.err = err
			// Calls the breaker answered are not logged: during an
			// outage that would be one line per request.
			if !logged && !o.call.Skipped() {
				logged = true
				l.log.Warn("rate limit store unavailable", "redis", o.conn.name, "error", err)
			}
			continue
		}
		o.err = o.parse()
	}
	v := l.judge(outs, start)
	l.m.latency.Observe(time.Since(start).Seconds())
	return v
}

// cachedDenial answers a request one of whose enforced rules is in the deny
// cache. The other rules are not evaluated, so a request denied locally is
// not counted anywhere.
func (l *Limiter) cachedDenial(outs []outcome, now time.Time) (verdict, bool) {
	for i := range outs {
		o := &outs[i]
		if o.rule.shadow {
			continue
		}
		left, ok := l.denied.get(o.key, now)
		if !ok {
			continue
		}
		o.remaining, o.reset, o.retry = 0, left, left
		l.m.decisions.WithLabelValues(o.rule.policy, o.rule.name, resultDenied).Inc()
		return verdict{status: http.StatusTooManyRequests, header: o, retry: left}, true
	}
	return verdict{}, false
}

// parse reads the script reply {allowed, remaining, reset_ms, retry_ms}.
func (o *outcome) parse() error {
	vals, err := o.cmd.Int64Slice()
	if err != nil {
		return fmt.Errorf("rate limit script for rule %s/%s: %w", o.rule.policy, o.rule.name, err)
	}
	if len(vals) != 4 {
		return fmt.Errorf("rate limit script for rule %s/%s: %d values, want 4", o.rule.policy, o.rule.name, len(vals))
	}
	o.allowed = vals[0] == 1
	o.remaining = vals[1]
	o.reset = time.Duration(vals[2]) * time.Millisecond
	o.retry = time.Duration(vals[3]) * time.Millisecond
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
				l.denied.put(o.key, now.Add(o.retry), now)
			}
		}
		l.m.decisions.WithLabelValues(ru.policy, ru.name, o.result).Inc()
		if o.err == nil && !ru.shadow && restrictive(o, v.header) {
			v.header = o
		}
	}
	return v
}

// restrictive reports whether o should supply the RateLimit-* headers
// instead of cur: the one with fewer requests remaining, then the one that
// takes longer to reset.
func restrictive(o, cur *outcome) bool {
	if cur == nil {
		return true
	}
	if o.remaining != cur.remaining {
		return o.remaining < cur.remaining
	}
	return o.reset > cur.reset
}

// setHeaders writes the RateLimit-* headers of the IETF draft for o.
func setHeaders(h http.Header, o *outcome) {
	h["Ratelimit-Limit"] = []string{o.rule.limitHeader}
	h["Ratelimit-Remaining"] = []string{strconv.FormatInt(o.remaining, 10)}
	h["Ratelimit-Reset"] = []string{seconds(o.reset, 0)}
	h["Ratelimit-Policy"] = []string{o.rule.policyHeader}
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
