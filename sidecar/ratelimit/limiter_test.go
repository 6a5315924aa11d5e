package ratelimit

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

// TestLegacyHeaders: in the Legacy header form (earlier drafts' separate
// fields), Remaining counts down to 0, the limit then answers 429
// problem+json, and Reset/Retry-After agree with the algorithm.
func TestLegacyHeaders(t *testing.T) {
	_, c := startRedis(t)
	tb := newRule("tb", config.TokenBucket, 5, time.Minute)
	tests := []struct {
		rule       config.RateLimitRule
		policy     string
		retryEqual bool // Retry-After equals Reset (windows) or is one token's wait (bucket)
	}{
		{newRule("fixed", config.FixedWindow, 5, time.Minute), "5;w=60", true},
		{newRule("sliding", config.SlidingWindow, 5, time.Minute), "5;w=60", true},
		{tb, "5;w=60;burst=5", false},
	}
	for _, tt := range tests {
		t.Run(tt.rule.Name, func(t *testing.T) {
			tt.rule.Key = config.RateLimitKey{ClientIP: true}
			p := testPolicy("ns", "headers", "main", tt.rule)
			p.Headers = config.HeadersLegacy
			h := newLimiter(t, one(t, c), nil, p).Middleware(okHandler)
			lastReset := int64(1 << 62)
			for want := int64(4); want >= 0; want-- {
				resp := serve(h, req("GET", "/", "10.1.0.1", ""))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: status %d", 5-want, resp.StatusCode)
				}
				if got := headerInt(t, resp, "RateLimit-Remaining"); got != want {
					t.Errorf("RateLimit-Remaining = %d, want %d", got, want)
				}
				if got := resp.Header.Get("RateLimit-Limit"); got != "5" {
					t.Errorf("RateLimit-Limit = %q, want 5", got)
				}
				if got := resp.Header.Get("RateLimit-Policy"); got != tt.policy {
					t.Errorf("RateLimit-Policy = %q, want %q", got, tt.policy)
				}
				reset := headerInt(t, resp, "RateLimit-Reset")
				// A sliding window frees capacity when its oldest slot (1/20 of
				// the window) leaves it, up to one slot after the window.
				if reset < 1 || reset > 63 {
					t.Errorf("RateLimit-Reset = %d, want within the 60s window (+3s slot)", reset)
				}
				if tt.rule.Algorithm == config.TokenBucket {
					// Each request pushes the bucket's refill further out.
					if want < 4 && reset < lastReset {
						t.Errorf("RateLimit-Reset went down from %d to %d while tokens were taken", lastReset, reset)
					}
				} else if reset > lastReset {
					t.Errorf("RateLimit-Reset went up from %d to %d within one window", lastReset, reset)
				}
				lastReset = reset
			}

			resp := serve(h, req("GET", "/", "10.1.0.1", ""))
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("6th request: status %d, want 429", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Errorf("Content-Type = %q, want %q", ct, problem.ContentType)
			}
			if got := headerInt(t, resp, "RateLimit-Remaining"); got != 0 {
				t.Errorf("denied: RateLimit-Remaining = %d, want 0", got)
			}
			retry, reset := headerInt(t, resp, "Retry-After"), headerInt(t, resp, "RateLimit-Reset")
			if tt.retryEqual {
				if retry != reset {
					t.Errorf("Retry-After = %d, RateLimit-Reset = %d; want equal", retry, reset)
				}
			} else if retry < 11 || retry > 12 || reset < 59 || reset > 60 {
				// One token per 12s; the bucket is full again after 60s.
				t.Errorf("Retry-After = %d (want 12s for one token), RateLimit-Reset = %d (want 60s to refill)", retry, reset)
			}
			// Another client is unaffected.
			if resp := serve(h, req("GET", "/", "10.1.0.2", "")); resp.StatusCode != http.StatusOK {
				t.Errorf("other client: status %d, want 200", resp.StatusCode)
			}
		})
	}
	t.Run("unmatched route has no headers", func(t *testing.T) {
		r := newRule("api", config.FixedWindow, 1, time.Minute)
		r.Match.PathPrefix = "/api/"
		h := newLimiter(t, one(t, c), nil, testPolicy("ns", "unmatched", "main", r)).Middleware(okHandler)
		for range 3 {
			resp := serve(h, req("GET", "/static/x", "10.1.0.3", ""))
			for _, f := range []string{"RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining"} {
				if resp.StatusCode != http.StatusOK || resp.Header.Get(f) != "" {
					t.Fatalf("unmatched route: status %d, %s %q", resp.StatusCode, f, resp.Header.Get(f))
				}
			}
		}
	})
}

// TestMostRestrictiveHeaders: with several rules the legacy headers
// describe the one closest to denying, and a request denied by one rule is
// denied.
func TestMostRestrictiveHeaders(t *testing.T) {
	_, c := startRedis(t)
	loose := newRule("loose", config.FixedWindow, 100, time.Minute)
	tight := newRule("tight", config.SlidingWindow, 3, 10*time.Second)
	tight.Match.Methods = []string{"POST"}
	p := testPolicy("ns", "multi", "main", loose, tight)
	p.Headers = config.HeadersLegacy
	h := newLimiter(t, one(t, c), nil, p).Middleware(okHandler)

	resp := serve(h, req("GET", "/", "10.2.0.1", ""))
	if got := resp.Header.Get("RateLimit-Policy"); got != "100;w=60" {
		t.Errorf("GET matches only the loose rule: RateLimit-Policy = %q", got)
	}
	for i := range 3 {
		resp = serve(h, req("POST", "/", "10.2.0.1", ""))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %d: status %d", i, resp.StatusCode)
		}
		if got := resp.Header.Get("RateLimit-Policy"); got != "3;w=10" {
			t.Errorf("POST %d: RateLimit-Policy = %q, want the tight rule", i, got)
		}
	}
	resp = serve(h, req("POST", "/", "10.2.0.1", ""))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th POST: status %d, want 429", resp.StatusCode)
	}
	if resp := serve(h, req("GET", "/", "10.2.0.1", "")); resp.StatusCode != http.StatusOK || headerInt(t, resp, "RateLimit-Remaining") != 100-6 {
		t.Errorf("GET after POSTs: status %d, remaining %s; want 200 and 94 (every request counts against the loose rule)", resp.StatusCode, resp.Header.Get("RateLimit-Remaining"))
	}
}

// TestScriptCacheFlushed: EVALSHA in a pipeline does not fall back by
// itself; a server without the scripts (fresh, failed over, flushed) must
// still answer on the first request.
func TestScriptCacheFlushed(t *testing.T) {
	_, c := startRedis(t)
	ctx := context.Background()
	leased := newRule("leased", config.FixedWindow, 10, time.Minute)
	leased.Quota = config.QuotaLeased
	l := newLimiter(t, one(t, c), nil, testPolicy("ns", "flush", "main",
		newRule("sliding", config.SlidingWindow, 10, time.Minute),
		newRule("bucket", config.TokenBucket, 10, time.Minute),
		leased,
	))
	h := l.Middleware(okHandler)
	for i := range 3 {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		resp := serve(h, req("GET", "/", "10.3.0.1", ""))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after SCRIPT FLUSH: status %d", i, resp.StatusCode)
		}
		if got := remaining(t, resp, "flush/sliding"); got != int64(9-i) {
			t.Errorf("request %d: remaining = %d, want %d", i, got, 9-i)
		}
		// A leased unit would not reach Redis: drop the slice.
		l.leases = newLeases()
	}
	exists, err := c.ScriptExists(ctx, slidingWindowScript.Hash(), tokenBucketScript.Hash(), fixedLeaseScript.Hash()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(exists) != "[true true true]" {
		t.Errorf("scripts cached after the EVAL fallback: %v, want all", exists)
	}
}

// TestShadow: a Shadow rule never denies, but its metrics count what it
// would have denied.
func TestShadow(t *testing.T) {
	_, c := startRedis(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := newRule("trial", config.SlidingWindow, 2, time.Minute)
	r.Mode = config.Shadow
	h := newLimiter(t, one(t, c), m, testPolicy("ns", "shadow", "main", r)).Middleware(okHandler)
	for i := range 5 {
		if resp := serve(h, req("GET", "/", "10.4.0.1", "")); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d; Shadow must never deny", i, resp.StatusCode)
		}
	}
	for result, want := range map[string]float64{resultAllowed: 2, resultShadowDenied: 3, resultDenied: 0} {
		if got := testutil.ToFloat64(m.decisions.WithLabelValues("ns/shadow", "trial", result)); got != want {
			t.Errorf("decisions{result=%q} = %v, want %v", result, got, want)
		}
	}
}

// TestKeyIsolation: two policies with the same names in different
// namespaces keep separate counters, even when one request counts in both.
func TestKeyIsolation(t *testing.T) {
	_, c := startRedis(t)
	r := newRule("per-ip", config.FixedWindow, 3, time.Minute)
	r.Key.ClientIP = true
	h := newLimiter(t, one(t, c), nil,
		testPolicy("team-a", "api", "main", r),
		testPolicy("team-b", "api", "main", r),
	).Middleware(okHandler)
	admitted := 0
	for range 10 {
		if serve(h, req("GET", "/", "10.5.0.1", "")).StatusCode == http.StatusOK {
			admitted++
		}
	}
	if admitted != 3 {
		t.Errorf("admitted %d, want 3: shared counters would admit fewer", admitted)
	}
	keys, err := c.Keys(context.Background(), "rl:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !strings.HasPrefix(strings.Join(keys, " "), "rl:{team-") {
		t.Errorf("keys %v, want one per namespace", keys)
	}
}

// TestFailureModes stops Redis under a running Limiter: Closed rules answer
// 503, Open rules admit through the local fallback that still caps a flood,
// and enforcement through Redis resumes once it is back.
func TestFailureModes(t *testing.T) {
	s, c := startRedis(t)
	m := NewMetrics(prometheus.NewRegistry())
	closed := newRule("closed", config.FixedWindow, 3, time.Minute)
	closed.Match.PathPrefix = "/closed"
	closed.FailureMode = config.FailClosed
	open := newRule("open", config.FixedWindow, 10, time.Minute)
	open.Match.PathPrefix = "/open"
	open.FailureMode = config.FailOpen
	open.Key.ClientIP = true
	conns, reg := oneWithMetrics(t, c)
	h := newLimiter(t, conns, m, testPolicy("ns", "fail", "main", closed, open)).Middleware(okHandler)
	for _, p := range []string{"/closed", "/open"} {
		if resp := serve(h, req("GET", p, "10.6.0.1", "")); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s before the outage: status %d", p, resp.StatusCode)
		}
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	resp := serve(h, req("GET", "/closed", "10.6.0.1", ""))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != problem.ContentType || resp.Header.Get("Retry-After") == "" {
		t.Errorf("Closed during outage: status %d, Content-Type %q, Retry-After %q; want 503 problem+json with Retry-After",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Retry-After"))
	}
	admitted := 0
	const flood = 50
	floodStart := time.Now()
	for range flood {
		if serve(h, req("GET", "/open", "10.6.0.1", "")).StatusCode == http.StatusOK {
			admitted++
		}
	}
	// The fallback bucket holds the rule's limit and refills at 10/min, so a
	// flood gets the limit (plus at most a token or two if the flood is slow).
	t.Logf("flood of %d during the outage took %s", flood, time.Since(floodStart))
	if admitted < 10 || admitted > 12 {
		t.Errorf("Open during outage admitted %d of %d, want the fallback's 10", admitted, flood)
	}
	if resp := serve(h, req("GET", "/open", "10.6.0.2", "")); resp.StatusCode != http.StatusOK {
		t.Errorf("Open during outage: another client got %d; the fallback is per key", resp.StatusCode)
	}
	for result, want := range map[string]float64{resultErrorClosed: 1, resultErrorOpen: float64(admitted) + 1, resultFallbackDenied: float64(flood - admitted)} {
		label := "open"
		if result == resultErrorClosed {
			label = "closed"
		}
		if got := testutil.ToFloat64(m.decisions.WithLabelValues("ns/fail", label, result)); got != want {
			t.Errorf("decisions{rule=%s,result=%s} = %v, want %v", label, result, got, want)
		}
	}
	// The first failure opens the node's breaker; the flood then fails fast
	// without asking Redis: only probes waited for it.
	if got := redisCalls(t, reg, "unavailable"); got < 1 || got > 5 {
		t.Errorf("calls that waited for the stopped Redis = %v, want a few probes", got)
	}
	if got := redisCalls(t, reg, "skipped"); got < flood-5 {
		t.Errorf("calls answered by the breaker = %v, want nearly all of the flood of %d", got, flood)
	}

	// Redis comes back empty (no persistence): the same Limiter enforces again.
	s.Start(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp := serve(h, req("GET", "/closed", "10.6.0.1", ""))
		if resp.StatusCode == http.StatusOK {
			if got := remaining(t, resp, "fail/closed"); got != 2 {
				t.Fatalf("first request after recovery: remaining = %d, want 2", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Closed rule still answers %d 20s after Redis returned", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	admitted = 0
	for range 15 {
		resp := serve(h, req("GET", "/open", "10.6.0.1", ""))
		if resp.StatusCode == http.StatusOK {
			admitted++
		} else if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("RateLimit") == "" || remaining(t, resp, "fail/open") != 0 {
			t.Fatalf("after recovery: status %d, RateLimit %q; want a Redis-backed 429", resp.StatusCode, resp.Header.Get("RateLimit"))
		}
	}
	if admitted != 10 {
		t.Errorf("after recovery admitted %d of 15, want the limit of 10 counted in Redis", admitted)
	}
}

// TestFixedWindowBoundary shows the weakness SlidingWindow exists for: a
// fixed window admits its limit at the end of one window and again at the
// start of the next, 2×N within much less than one window.
func TestFixedWindowBoundary(t *testing.T) {
	_, c := startRedis(t)
	const window, limit = 1500 * time.Millisecond, 10
	r := newRule("fixed", config.FixedWindow, limit, window)
	r.Key.ClientIP = true
	h := newLimiter(t, one(t, c), nil, testPolicy("ns", "boundary", "main", r)).Middleware(okHandler)
	for attempt := range 5 {
		// A fresh client per attempt: a failed attempt leaves counts behind.
		ip := fmt.Sprintf("10.7.0.%d", attempt+1)
		// Aim at 200ms before a window boundary on the server's clock.
		now := serverTime(t, c)
		end := now.Truncate(window).Add(window)
		if end.Sub(now) < 300*time.Millisecond {
			end = end.Add(window)
		}
		time.Sleep(end.Sub(now) - 200*time.Millisecond)
		start := serverTime(t, c)
		admitted := 0
		for range limit + 2 {
			if serve(h, req("GET", "/", ip, "")).StatusCode == http.StatusOK {
				admitted++
			}
		}
		if serverTime(t, c).After(end) {
			continue // too slow to finish before the boundary; try the next one
		}
		if admitted != limit {
			t.Fatalf("first window admitted %d, want %d", admitted, limit)
		}
		time.Sleep(time.Until(time.Now().Add(end.Sub(serverTime(t, c)) + 20*time.Millisecond)))
		for range limit + 2 {
			if serve(h, req("GET", "/", ip, "")).StatusCode == http.StatusOK {
				admitted++
			}
		}
		span := serverTime(t, c).Sub(start)
		if admitted != 2*limit || span >= window {
			t.Fatalf("admitted %d within %s, want %d within less than one %s window", admitted, span, 2*limit, window)
		}
		return
	}
	t.Fatal("could not finish a burst before a window boundary in 5 attempts")
}

// TestStrictFixedWindowUnderClockSkew replays the caller-clock attack on
// the strict FixedWindow, whose windows come from the sidecar's clock: a
// sidecar far behind Redis used to send PEXPIREAT with a time already past
// on the server, which deleted the counter right after INCR created it, so
// every INCR returned 1 and the limit was switched off for that replica.
// Whatever the skew, in either direction, a burst within one of the
// sidecar's windows is admitted exactly limit times, and the counter lives
// on Redis until that window's end plus the grace, never less.
func TestStrictFixedWindowUnderClockSkew(t *testing.T) {
	_, c := startRedis(t)
	const limit, window = 5, time.Minute
	for i, skew := range []time.Duration{-time.Hour, -10 * time.Second, -6 * time.Second, -2 * time.Second, 0,
		2 * time.Second, 10 * time.Second, time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			r := newRule("login", config.FixedWindow, limit, window)
			r.Key.ClientIP = true
			p := testPolicy("ns", "skew", "main", r)
			l := newLimiter(t, one(t, c), nil, p)
			l.now = func() time.Time { return time.Now().Add(skew) }
			h := l.Middleware(okHandler)
			ip := fmt.Sprintf("10.99.0.%d", i+1)
			first := l.now().UnixMilli() / window.Milliseconds()
			admitted := 0
			for range 4 * limit {
				if serve(h, req("GET", "/", ip, "")).StatusCode == http.StatusOK {
					admitted++
				}
			}
			last := l.now().UnixMilli() / window.Milliseconds()
			// A burst that straddled one of the sidecar's boundaries gets
			// each window's limit.
			if want := limit * int(last-first+1); admitted != want {
				t.Errorf("sidecar clock %v off Redis: admitted %d of %d to a limit of %d per window, want %d", skew, admitted, 4*limit, limit, want)
			}
			key := mustCompile(t, p, r).counterKey(req("GET", "/", ip, "")) + ":" + strconv.FormatInt(last, 10)
			pttl, err := c.PTTL(context.Background(), key).Result()
			if err != nil {
				t.Fatal(err)
			}
			left := time.UnixMilli((last + 1) * window.Milliseconds()).Sub(l.now())
			if pttl <= left || pttl > left+windowGrace+time.Second {
				t.Errorf("counter expires in %v; want the window's %v left on the sidecar's clock plus the %v grace", pttl, left.Round(time.Millisecond), windowGrace)
			}
		})
	}
}

// TestStrictFixedWindowSharedWithinGrace: two sidecars whose clocks are 3s
// apart (less than the grace) count one window into one counter: together
// they admit the limit, not twice it.
func TestStrictFixedWindowSharedWithinGrace(t *testing.T) {
	_, c := startRedis(t)
	const limit, window = 10, time.Minute
	r := newRule("global", config.FixedWindow, limit, window)
	p := testPolicy("ns", "skew-shared", "main", r)
	// Mid-window on the ahead sidecar's clock, so both are in one window.
	ahead := time.Now().Truncate(window).Add(window / 2)
	a, b := newLimiter(t, one(t, c), nil, p), newLimiter(t, one(t, c), nil, p)
	a.now = func() time.Time { return ahead }
	b.now = func() time.Time { return ahead.Add(-3 * time.Second) }
	ha, hb := a.Middleware(okHandler), b.Middleware(okHandler)
	admitted := 0
	for i := range 4 * limit {
		h := ha
		if i%2 == 1 {
			h = hb
		}
		if serve(h, req("GET", "/", "10.99.1.1", "")).StatusCode == http.StatusOK {
			admitted++
		}
	}
	if admitted != limit {
		t.Errorf("two sidecars 3s apart admitted %d of %d, want the limit %d", admitted, 4*limit, limit)
	}
}

// admission is one admitted request, bracketed by when it was sent and
// when its answer arrived; the script ran at some time in between.
type admission struct{ sent, done time.Time }

// TestSlidingWindowNeverExceeds hammers a SlidingWindow rule from several
// goroutines and checks, from the timestamps of admitted requests, that no
// interval of one window length ever held more than the limit.
func TestSlidingWindowNeverExceeds(t *testing.T) {
	_, c := startRedis(t)
	const window, limit = 1500 * time.Millisecond, 10
	h := newLimiter(t, one(t, c), nil, testPolicy("ns", "sliding", "main", newRule("sliding", config.SlidingWindow, limit, window))).Middleware(okHandler)

	var mu sync.Mutex
	var admitted []admission
	stop := time.Now().Add(3500 * time.Millisecond)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				sent := time.Now()
				ok := serve(h, req("GET", "/", "10.8.0.1", "")).StatusCode == http.StatusOK
				if ok {
					mu.Lock()
					admitted = append(admitted, admission{sent, time.Now()})
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	// Sorted by send time (appends are nearly in order already).
	for i := 1; i < len(admitted); i++ {
		for j := i; j > 0 && admitted[j].sent.Before(admitted[j-1].sent); j-- {
			admitted[j], admitted[j-1] = admitted[j-1], admitted[j]
		}
	}
	// limit+1 admissions whose latest possible spread is under one window
	// are a certain violation.
	for i := 0; i+limit < len(admitted); i++ {
		if spread := admitted[i+limit].done.Sub(admitted[i].sent); spread < window {
			t.Fatalf("%d requests admitted within %s (< %s window), limit %d", limit+1, spread, window, limit)
		}
	}
	// And the limit is not simply denying everything: over 3.5s (at least two
	// full windows) a sliding window of 1500ms admits well over 2×limit.
	if len(admitted) < 2*limit+1 {
		t.Errorf("admitted only %d in 3.5s, want more than %d", len(admitted), 2*limit)
	}
}

// TestTokenBucket: the burst is admitted at once, then the steady rate.
func TestTokenBucket(t *testing.T) {
	_, c := startRedis(t)
	r := newRule("bucket", config.TokenBucket, 20, time.Second) // one token per 50ms
	r.Burst = 15
	h := newLimiter(t, one(t, c), nil, testPolicy("ns", "bucket", "main", r)).Middleware(okHandler)

	start := serverTime(t, c)
	for i := range 15 {
		if resp := serve(h, req("GET", "/", "10.9.0.1", "")); resp.StatusCode != http.StatusOK {
			t.Fatalf("burst request %d: status %d", i, resp.StatusCode)
		}
	}
	burstEnd := serverTime(t, c)
	resp := serve(h, req("GET", "/", "10.9.0.1", ""))
	if burstEnd.Sub(start) < 50*time.Millisecond && resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("request after the burst: status %d, want 429", resp.StatusCode)
	}

	var mu sync.Mutex
	steady := 0
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if serve(h, req("GET", "/", "10.9.0.1", "")).StatusCode == http.StatusOK {
					mu.Lock()
					steady++
					mu.Unlock()
				}
				time.Sleep(3 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := serverTime(t, c).Sub(start)
	// After the burst, GCRA admits one request per emission interval counted
	// from the first request.
	want := elapsed.Seconds() * 20
	if diff := float64(steady) - want; diff > want/10 || diff < -want/10 {
		t.Errorf("steady state admitted %d in %s, want %.0f ±10%%", steady, elapsed, want)
	}
}

// TestDenyCache: once Redis has denied a client, its further requests until
// Retry-After are denied locally and cost no Redis call.
func TestDenyCache(t *testing.T) {
	_, c := startRedis(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := newRule("per-ip", config.FixedWindow, 3, time.Minute)
	r.Key.ClientIP = true
	h := newLimiter(t, one(t, c), m, testPolicy("ns", "cache", "main", r)).Middleware(okHandler)
	for range 4 {
		serve(h, req("GET", "/", "10.10.0.1", ""))
	}
	// scriptCalls lists the call counts of every command but INFO.
	scriptCalls := func() string {
		info, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		var calls []string
		for line := range strings.Lines(info) {
			if strings.HasPrefix(line, "cmdstat_") && !strings.HasPrefix(line, "cmdstat_info:") {
				calls = append(calls, line[:strings.Index(line, ",")])
			}
		}
		slices.Sort(calls)
		return strings.Join(calls, " ")
	}
	before := scriptCalls()
	for i := range 20 {
		resp := serve(h, req("GET", "/", "10.10.0.1", ""))
		retry := headerInt(t, resp, "Retry-After")
		if resp.StatusCode != http.StatusTooManyRequests || retry < 1 || retry > 60 || remaining(t, resp, "cache/per-ip") != 0 {
			t.Fatalf("request %d while denied: status %d, Retry-After %d, RateLimit %q", i, resp.StatusCode, retry, resp.Header.Get("RateLimit"))
		}
	}
	if after := scriptCalls(); after != before {
		t.Errorf("script calls went from %q to %q while the client was known to be denied", before, after)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("ns/cache", "per-ip", resultDenied)); got != 21 {
		t.Errorf("denied decisions = %v, want 21 (1 from Redis, 20 cached)", got)
	}
	if resp := serve(h, req("GET", "/", "10.10.0.2", "")); resp.StatusCode != http.StatusOK {
		t.Errorf("another client: status %d, want 200", resp.StatusCode)
	}
	if after := scriptCalls(); after == before {
		t.Errorf("another client's request did not reach Redis (%q)", after)
	}
}

// TestClientCancelIsNotAnOutage: a client that hangs up mid-decision must
// not count as a Redis failure, or a Closed rule would answer 503 to
// everyone for the breaker's cooldown.
func TestClientCancelIsNotAnOutage(t *testing.T) {
	_, c := startRedis(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := newRule("closed", config.FixedWindow, 100, time.Minute)
	r.FailureMode = config.FailClosed
	conns, reg := oneWithMetrics(t, c)
	h := newLimiter(t, conns, m, testPolicy("ns", "cancel", "main", r)).Middleware(okHandler)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	serve(h, req("GET", "/", "10.11.0.1", "").WithContext(ctx))
	if resp := serve(h, req("GET", "/", "10.11.0.2", "")); resp.StatusCode != http.StatusOK {
		t.Errorf("request after a canceled one: status %d, want 200", resp.StatusCode)
	}
	if got := redisCalls(t, reg, "ok"); got != 2 {
		t.Errorf("successful Redis calls = %v after a client cancel, want both", got)
	}
}

// TestSeveralConnections: policies on different Redis connections are
// evaluated together (one pipeline per connection, concurrently) and each
// keeps its counters on its own server.
func TestSeveralConnections(t *testing.T) {
	_, a := startRedis(t)
	_, b := startRedis(t)
	clients := map[string]*redisconn.Conn{"a": connFor(t, a, prometheus.NewRegistry()), "b": connFor(t, b, prometheus.NewRegistry())}
	ra := newRule("per-ip", config.FixedWindow, 5, time.Minute)
	ra.Key.ClientIP = true
	rb := newRule("per-ip", config.SlidingWindow, 3, time.Minute)
	rb.Key.ClientIP = true
	h := newLimiter(t, clients, nil, testPolicy("ns", "on-a", "a", ra), testPolicy("ns", "on-b", "b", rb)).Middleware(okHandler)
	var codes []int
	for range 4 {
		codes = append(codes, serve(h, req("GET", "/", "10.12.0.1", "")).StatusCode)
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429}, codes); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	for name, c := range map[string]*redis.Client{"a": a, "b": b} {
		keys, err := c.Keys(context.Background(), "rl:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !strings.HasPrefix(keys[0], "rl:{ns/on-"+name+"/") {
			t.Errorf("server %s holds %v, want only its policy's counter", name, keys)
		}
	}
}
