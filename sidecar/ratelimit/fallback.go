package ratelimit

import (
	"sync"
	"time"
)

// fallbackMaxKeys bounds the in-process fallback limiter's memory.
const fallbackMaxKeys = 10000

// evictSample is how many entries are examined to pick one to evict when the
// fallback is full: an approximate LRU in the manner of Redis' own eviction,
// O(1) per insert and with no list to maintain on the hot path.
const evictSample = 8

// fallback is the in-process limiter used while Redis is unreachable by rules
// that fail open. Each counter key gets a token bucket refilled at the rule's
// limit per window with the rule's limit (TokenBucket: burst) as capacity, so
// a single sidecar admits at most about what the fleet-wide limit would have
// admitted per client; the fleet as a whole admits up to that times the number
// of replicas. Buckets outlive an outage: idle ones are full again after one
// window, so a later outage starts fresh, while a client that hammers across
// two short outages does not get a new allowance for each. A key evicted
// under memory pressure starts again with a full bucket.
type fallback struct {
	mu      sync.Mutex
	buckets map[string]*localBucket
	max     int
}

type localBucket struct {
	tokens float64
	last   time.Time
}

func newFallback(max int) *fallback {
	return &fallback{buckets: make(map[string]*localBucket), max: max}
}

// allow takes one token from key's bucket, refilled at rate tokens per second
// up to burst.
func (f *fallback) allow(key string, rate, burst float64, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.buckets[key]
	if !ok {
		if len(f.buckets) >= f.max {
			f.evictLocked()
		}
		b = &localBucket{tokens: burst, last: now}
		f.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(burst, b.tokens+el*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evictLocked drops the least recently used of a few entries.
func (f *fallback) evictLocked() {
	evictSampled(f.buckets, func(b *localBucket) time.Time { return b.last })
}

// evictSampled deletes from m the entry whose used time is oldest among
// evictSample of them: Go's map iteration order is randomised, which makes
// them a random sample. An approximate LRU in the manner of Redis' own
// eviction, O(1) per insert and with no list to maintain on the hot path.
func evictSampled[V any](m map[string]V, used func(V) time.Time) {
	var victim string
	var oldest time.Time
	n := 0
	for k, v := range m {
		if t := used(v); n == 0 || t.Before(oldest) {
			victim, oldest = k, t
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(m, victim)
}
