package ratelimit

import (
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// TestStrictFixedWindowSidecarClockFarBehind replays the caller-clock attack
// on the strict FixedWindow (INCR + PEXPIREAT … NX, the window from the
// sidecar's clock). docs/rate-limiting.md ("Clock skew") says a sidecar more
// than 5 s behind "would count into a counter that expires at once and
// admit up to `limit` more per window". What actually happens: PEXPIREAT
// with a time already past on the Redis server deletes the key right after
// INCR created it, so every INCR returns 1 and the sidecar admits every
// request — the limit is switched off for that replica, not doubled.
//
// The clock is the Limiter's own (l.now), set 10 s behind the Redis host.
func TestStrictFixedWindowSidecarClockFarBehind(t *testing.T) {
	_, c := startRedis(t)
	const limit = 5
	r := newRule("login", config.FixedWindow, limit, time.Second)
	r.Key.ClientIP = true
	l := newLimiter(t, one(t, c), nil, testPolicy("ns", "skew", "main", r))
	l.now = func() time.Time { return time.Now().Add(-10 * time.Second) }
	h := l.Middleware(okHandler)

	start := time.Now()
	admitted := 0
	const sent = 100
	for range sent {
		if serve(h, req("GET", "/", "10.99.0.1", "")).StatusCode == http.StatusOK {
			admitted++
		}
	}
	// The documented worst case is limit per window of this sidecar plus
	// limit per window of the others (here: none): at most limit for every
	// sidecar-clock window the burst spanned, doubled.
	windows := int(time.Since(start)/time.Second) + 2
	bound := 2 * limit * windows
	t.Logf("admitted %d of %d in %s with the sidecar 10s behind (documented bound %d)", admitted, sent, time.Since(start), bound)
	if admitted > bound {
		t.Errorf("sidecar clock 10s behind Redis: admitted %d of %d requests to a limit of %d/s; docs promise at most %d", admitted, sent, limit, bound)
	}
}
