package ratelimit

import (
	"sync"
	"time"
)

// denyCacheMaxKeys bounds the memory of the local "denied until" cache.
const denyCacheMaxKeys = 10000

// denyCache remembers, per counter key, until when Redis said an enforced
// rule denies, so a client hammering a closed limit is answered locally
// without a Redis call. It can only deny, never admit, so it cannot break a
// limit; it is exact for FixedWindow and SlidingWindow (counts cannot fall
// before the time the script reported) and conservative for TokenBucket,
// where the cached time is when the next token arrives, which another
// sidecar may take first (this one then asks Redis again). Times are on the
// local monotonic clock, measured from the script's relative answer, so clock
// skew between sidecars and Redis does not matter.
type denyCache struct {
	mu    sync.Mutex
	until map[string]time.Time
	max   int
}

func newDenyCache(max int) *denyCache {
	return &denyCache{until: make(map[string]time.Time), max: max}
}

// get returns how much longer key is known to be denied at now.
func (d *denyCache) get(key string, now time.Time) (time.Duration, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.until[key]
	if !ok {
		return 0, false
	}
	if !now.Before(u) {
		delete(d.until, key)
		return 0, false
	}
	return u.Sub(now), true
}

// put records that key is denied until u.
func (d *denyCache) put(key string, u, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.until[key]; !ok && len(d.until) >= d.max {
		d.evictLocked(now)
	}
	d.until[key] = u
}

// evictLocked makes room: expired entries of a small random sample first,
// else the sampled entry that expires soonest, which is worth least.
func (d *denyCache) evictLocked(now time.Time) {
	var victim string
	var soonest time.Time
	n := 0
	for k, u := range d.until {
		if !now.Before(u) {
			delete(d.until, k)
			return
		}
		if n == 0 || u.Before(soonest) {
			victim, soonest = k, u
		}
		n++
		if n == evictSample {
			break
		}
	}
	delete(d.until, victim)
}
