package cache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// flights collapses concurrent requests for one variant into one lookup and
// at most one upstream call (RFC 9111 4: "collapsed requests"). The leader
// publishes its outcome the moment it is known — an entry it found fresh,
// one it fetched and may share, or nothing — before it writes its own
// response, so no follower waits on the leader's client. Followers wait at
// most their rule's lockTimeout (like nginx's proxy_cache_lock_timeout);
// a leader whose response headers show it will not be stored releases them
// at once, and they ask the app themselves.
type flights struct {
	seed   maphash.Seed
	shards [32]flightShard
	// ends counts the flights that ended, per slot of the key's hash: a
	// lookup made before the request joined its flight (Cache.Plan) is
	// stale if a flight for its key ended in between. Keys sharing a slot
	// only cost a needless second lookup.
	ends [1024]atomic.Uint32
}

type flightShard struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	once sync.Once
	// e is the leader's shareable entry (nil: none) and key the variant key
	// it is stored under; fetched says the leader got it from the origin
	// (or validated it) for this flight, rather than finding it stored.
	e       *entry
	key     string
	fetched bool
	tier    detail
}

func (g *flights) shard(key string) *flightShard {
	return &g.shards[maphash.String(g.seed, key)%uint64(len(g.shards))]
}

func (g *flights) endsOf(key string) *atomic.Uint32 {
	return &g.ends[maphash.String(g.seed, key)%uint64(len(g.ends))]
}

// ended is a count that changes whenever a flight for key ends.
func (g *flights) ended(key string) uint32 { return g.endsOf(key).Load() }

// inFlight reports whether a flight for key is under way.
func (g *flights) inFlight(key string) bool {
	s := g.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.calls[key]
	return ok
}

func newFlights() *flights { return &flights{seed: maphash.MakeSeed()} }

// join returns the flight for key and whether the caller leads it.
func (g *flights) join(key string) (*flight, bool) {
	s := g.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.calls[key]; ok {
		return f, false
	}
	if s.calls == nil {
		s.calls = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	s.calls[key] = f
	return f, true
}

// publish ends the flight with the leader's outcome; only the first call
// counts, so a leader can publish early and still defer a publish(nil).
func (g *flights) publish(key string, f *flight, e *entry, storedKey string, fetched bool, tier detail) {
	f.once.Do(func() {
		s := g.shard(key)
		s.mu.Lock()
		if s.calls[key] == f {
			delete(s.calls, key)
		}
		s.mu.Unlock()
		g.endsOf(key).Add(1)
		f.e, f.key, f.fetched, f.tier = e, storedKey, fetched, tier
		close(f.done)
	})
}
