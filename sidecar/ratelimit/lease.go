package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Leased rules (quota: Leased). A sidecar takes a slice of a key's quota
// from the global counter in one atomic script call and spends it locally,
// so a busy key costs about one Redis call per leaseHorizon per sidecar
// instead of one per request. The slice is taken from the same budget as
// every other sidecar's, before it is spent, so the fleet never admits more
// than a strict rule would; units that are never spent only under-admit.
// docs/rate-limiting.md states the bounds.
const (
	// leaseHorizon is how long a slice should last at the rate the key was
	// seen at: bigger slices save calls, smaller ones strand fewer units.
	// It also bounds a TokenBucket slice's lifetime (leaseBurst).
	leaseHorizon = 100 * time.Millisecond
	// maxLeaseUnits caps one slice whatever the rate.
	maxLeaseUnits = 100_000
	// rateSample is the shortest time a key's rate is measured over before
	// a slice is sized from it; until then the sidecar leases one unit per
	// request. A few requests microseconds apart are not a rate of a
	// million per second: a slice sized from them would take half of what
	// is left, and a sidecar that dies holding it strands it all.
	rateSample = leaseHorizon / 10
	// returnIdle is how long a sidecar holds a FixedWindow slice it does
	// not use before it gives the units back, so the last units of a
	// window are not stranded in an idle replica.
	returnIdle = 250 * time.Millisecond
	// returnEvery spaces the checks for idle slices.
	returnEvery = 100 * time.Millisecond
	// leaseDenyFor caps how long a leased rule's denial is cached: a key
	// exhausted in Redis costs a sidecar at most one call per leaseDenyFor,
	// and units given back become usable within it.
	leaseDenyFor = 500 * time.Millisecond
	// leaseMaxKeys bounds the slices a Limiter holds; evicting one with
	// units left under-admits them.
	leaseMaxKeys = 10000
)

var returnScript = redisconn.NewScript(fixedWindowReturnSrc)

// leaseBurst is the lifetime of a TokenBucket slice and the burst the lease
// script takes tokens from. Tokens are spent up to life after they were
// taken, so over any interval d a sidecar may spend what the bucket gave
// out over d + life; taking from a bucket smaller by the tokens life adds
// keeps that within burst + d/emission, the strict bound. life is at most
// leaseHorizon and at most half the burst's worth of time, so the reduced
// burst keeps at least half; a burst of 1 cannot be leased (life 0: every
// token is spent by the request that took it).
func leaseBurst(burst int64, emissionUS float64) (time.Duration, int64) {
	half := math.Floor(float64(burst)/2) * emissionUS
	lifeUS := math.Min(float64(leaseHorizon.Microseconds()), half)
	if lifeUS < 1 {
		return 0, burst
	}
	return time.Duration(lifeUS) * time.Microsecond, burst - int64(math.Ceil(lifeUS/emissionUS))
}

// slice is the part of one key's quota a sidecar holds.
type slice struct {
	rule   *rule
	client *redisconn.Client
	key    string
	tokens int64
	// expires is when the units may no longer be spent: the window end
	// (FixedWindow) or the lease lifetime (TokenBucket) from when the lease
	// was sent, on the local monotonic clock.
	expires time.Time
	window  int64 // FixedWindow index the units belong to, for returns
	// left and resetAt are what Redis said at the last lease, for headers.
	left    int64
	resetAt time.Time
	// rate is the key's measured rate (units/s): the units this sidecar
	// admitted (spent) over each interval since, of at least rateSample,
	// smoothed.
	rate  float64
	since time.Time
	spent int64
	// taken is when the slice's lease was sent.
	taken    time.Time
	inflight bool
	lastUse  time.Time
}

// leases are a Limiter's slices.
type leases struct {
	mu   sync.Mutex
	keys map[string]*slice
}

func newLeases() *leases { return &leases{keys: map[string]*slice{}} }

// spend spends one unit of key's slice at now if it has one, returning the
// remaining and reset to show.
func (ls *leases) spend(key string, now time.Time) (ok bool, remaining int64, reset time.Duration) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.keys[key]
	if s == nil {
		return false, 0, 0
	}
	s.lastUse = now
	if s.tokens > 0 && now.Before(s.expires) {
		s.tokens--
		s.spent++
		return true, s.tokens + s.left, max(s.resetAt.Sub(now), 0)
	}
	return false, 0, 0
}

// want is how many units a lease for key sent at now asks for: enough for
// leaseHorizon at the key's measured rate (one before a rate is known), or
// one while another request's lease for the key is on its way. granted or
// failed must follow.
func (ls *leases) want(key string, now time.Time) int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.keys[key]
	if s == nil || s.inflight {
		return 1
	}
	s.inflight = true
	if el := now.Sub(s.since); el >= rateSample {
		r := float64(s.spent) / el.Seconds()
		if s.rate == 0 {
			s.rate = r
		} else {
			s.rate = (s.rate + r) / 2
		}
		s.since, s.spent = now, 0
	}
	want := int64(math.Ceil(s.rate * leaseHorizon.Seconds()))
	return min(max(want, 1), maxLeaseUnits)
}

// granted records a lease reply: of granted units, one admits the request
// that asked; the rest join the slice until expires.
func (ls *leases) granted(o *outcome, granted, left int64, reset time.Duration, window int64, expires time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.keys[o.key]
	if s == nil {
		if len(ls.keys) >= leaseMaxKeys {
			ls.evictLocked()
		}
		s = &slice{rule: o.rule, client: o.conn.client, key: o.key, since: o.sent}
		ls.keys[o.key] = s
	}
	s.inflight = false
	s.spent++ // the unit that admitted the request that asked
	s.lastUse = o.sent
	if window < s.window {
		// The replies of one sidecar's concurrent leases crossed a window
		// boundary out of order: this one is of a window that is over on
		// Redis, so its extra units are worth nothing, while the slice
		// holds the newer window's, which must not be thrown away.
		return
	}
	s.taken = o.sent
	s.left, s.resetAt = left, o.sent.Add(reset)
	extra := max(granted-1, 0)
	if s.tokens > 0 && o.sent.Before(s.expires) && s.window == window {
		s.tokens += extra
		s.expires = minTime(s.expires, expires)
		return
	}
	s.tokens, s.expires, s.window = extra, expires, window
}

// failed clears the in-flight mark of a lease that got no reply.
func (ls *leases) failed(key string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if s := ls.keys[key]; s != nil {
		s.inflight = false
	}
}

// idle takes the units of FixedWindow slices not used for returnIdle out of
// their slices, for returning.
func (ls *leases) idle(now time.Time) []slice {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []slice
	for k, s := range ls.keys {
		switch {
		case !now.Before(s.expires) && now.Sub(s.lastUse) > returnIdle:
			delete(ls.keys, k)
		case s.tokens > 0 && s.rule.algorithm != config.TokenBucket && now.Sub(s.lastUse) > returnIdle:
			out = append(out, *s)
			s.tokens = 0
		}
	}
	return out
}

// giveBack gives back the units of idle slices, in one batch.
func (ls *leases) giveBack(ctx context.Context, now time.Time) {
	idle := ls.idle(now)
	if len(idle) == 0 {
		return
	}
	var b redisconn.Batch
	for _, s := range idle {
		b.Add(s.client, "lease_return", s.key, func(p *redisconn.Pipe) {
			p.Run(ctx, returnScript, []string{s.key}, s.window, s.tokens)
		})
	}
	b.Exec(ctx)
}

func (ls *leases) evictLocked() {
	evictSampled(ls.keys, func(s *slice) time.Time { return s.lastUse })
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
