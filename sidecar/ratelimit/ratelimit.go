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
	"sync"
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

	fixedWindowScript   = redis.NewScript(fixedWindowSrc)
	slidingWindowScript = redis.NewScript(slidingWindowSrc)
	tokenBucketScript   = redis.NewScript(tokenBucketSrc)
)

// pipeliner is what the limiter needs of a Redis client: both *redis.Client
// and *redis.ClusterClient satisfy it, and a cluster pipeline is split per
// node by go-redis.
type pipeliner interface {
	Pipeline() redis.Pipeliner
}

// conn is one Redis connection and the rules that keep their counters there.
type conn struct {
	name    string
	client  pipeliner
	timeout time.Duration
	rules   []*rule
	// fallback limits rules that fail open while this connection is down.
	fallback *fallback
	breakers *breakers
}

// Limiter enforces a set of rate-limit policies.
type Limiter struct {
	conns  []*conn
	denied *denyCache
	m      *Metrics
	log    *slog.Logger
}

// New compiles the policies ps. clients maps connection names (config
// RedisConnection.Name) to clients; every policy's connection must be there.
// New does not talk to Redis, so it succeeds during a Redis outage and the
// rules' failure modes apply until Redis returns. It reports every invalid
// rule at once.
func New(ps []config.RateLimitPolicy, clients map[string]redis.UniversalClient, m *Metrics, log *slog.Logger) (*Limiter, error) {
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
		client, ok := clients[p.Redis]
		if !ok || client == nil {
			errs = append(errs, fmt.Errorf("%s: unknown redis connection %q", where, p.Redis))
			continue
		}
		c := byName[p.Redis]
		if c == nil {
			c = &conn{name: p.Redis, client: client, timeout: redisconn.RequestTimeout(client), fallback: newFallback(fallbackMaxKeys), breakers: newBreakers(client)}
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
	return l, nil
}

// outcome is one rule's verdict on one request.
type outcome struct {
	rule      *rule
	conn      *conn
	key       string
	cmd       *redis.Cmd
	brk       *breaker
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
			if ru.matches(r) {
				outs = append(outs, outcome{rule: ru, conn: c, key: ru.counterKey(r)})
			}
		}
	}
	return outs
}

// decide runs the matching rules' scripts, at most one pipeline per
// connection and those concurrently, and combines the outcomes. A request
// that an enforced rule is already known to deny is answered without Redis.
func (l *Limiter) decide(ctx context.Context, outs []outcome) verdict {
	start := time.Now()
	if v, ok := l.cachedDenial(outs, start); ok {
		l.m.latency.Observe(time.Since(start).Seconds())
		return v
	}
	var wg sync.WaitGroup
	for i := 0; i < len(outs); {
		j := i + 1
		for j < len(outs) && outs[j].conn == outs[i].conn {
			j++
		}
		group := outs[i:j]
		if i == 0 && j == len(outs) {
			// The usual case, one connection: no goroutine.
			l.run(ctx, group)
		} else {
			wg.Go(func() { l.run(ctx, group) })
		}
		i = j
	}
	wg.Wait()
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

// run evaluates outs, which share one connection, in one pipeline. Rules
// whose node failed within the last cooldown are not sent and fail at once.
func (l *Limiter) run(ctx context.Context, outs []outcome) {
	c := outs[0].conn
	// Detached from the request's cancellation: a client that hangs up must
	// not look like a Redis failure and open the node's breaker for everyone.
	// The timeout still bounds the call.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	now := time.Now()
	send := 0
	for i := range outs {
		o := &outs[i]
		o.brk = c.breakers.forKey(ctx, o.key)
		// One probe decision per node and request: a second rule on the
		// same node follows the first.
		allowed := -1
		for j := range i {
			if outs[j].brk == o.brk {
				allowed = boolInt(outs[j].err == nil)
				break
			}
		}
		if allowed == -1 {
			allowed = boolInt(o.brk.allow(now))
		}
		if allowed == 0 {
			o.err = errNodeDown
			continue
		}
		send++
	}
	if send == 0 {
		return
	}
	if err := execScripts(ctx, c.client, outs); err != nil {
		l.m.redisErrors.WithLabelValues(c.name).Inc()
		l.log.Warn("rate limit store unavailable", "redis", c.name, "error", err)
	}
	failed := false
	for i := range outs {
		o := &outs[i]
		switch {
		case o.cmd == nil: // not sent
		case o.err != nil && nodeDown(o.err):
			o.brk.fail(now)
			failed = true
		case o.err != nil: // Redis answered, with an error: the node is up
		default:
			o.brk.succeed()
		}
	}
	if failed {
		c.breakers.failed(ctx)
	}
}

// nodeDown reports whether err means the node could not be reached or did
// not answer in time, as opposed to an error reply (a script error,
// CLUSTERDOWN), which comes back fast and needs no breaker.
func nodeDown(err error) bool {
	var reply redis.Error
	return !errors.As(err, &reply)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// execScripts runs the scripts of the outcomes that carry no error yet in
// one pipeline. EVALSHA in a pipeline does not fall back to EVAL by itself,
// so commands answered NOSCRIPT (a fresh server, a failover, SCRIPT FLUSH)
// are sent again with EVAL, which also caches the script for the next
// request. It fills each outcome and returns the first error.
func execScripts(ctx context.Context, client pipeliner, outs []outcome) error {
	pipe := client.Pipeline()
	for i := range outs {
		if o := &outs[i]; o.err == nil {
			o.cmd = o.rule.script.EvalSha(ctx, pipe, []string{o.key}, o.rule.args...)
		}
	}
	_, _ = pipe.Exec(ctx) // errors are per command, read below
	var retry []int
	for i := range outs {
		if outs[i].cmd != nil && redis.HasErrorPrefix(outs[i].cmd.Err(), "NOSCRIPT") {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		pipe = client.Pipeline()
		for _, i := range retry {
			o := &outs[i]
			o.cmd = o.rule.script.Eval(ctx, pipe, []string{o.key}, o.rule.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	var first error
	for i := range outs {
		o := &outs[i]
		if o.cmd == nil {
			continue
		}
		if err := o.parse(); err != nil {
			o.err = err
			if first == nil {
				first = err
			}
		}
	}
	return first
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
