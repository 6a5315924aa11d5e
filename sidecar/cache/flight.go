package cache

import "sync"

// flights collapses concurrent misses for one key into one upstream call.
// Unlike a plain singleflight the leader writes its own response itself (it
// may stream), and followers get the result only when it is shareable —
// a response that was not storable (Set-Cookie, private, too large) is never
// handed to another client, the follower fetches on its own instead.
type flights struct {
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	// e is the shareable response and key the variant key it was stored
	// under, set by the leader before done is closed.
	e   *entry
	key string
}

// join returns the flight for key and whether the caller leads it.
func (g *flights) join(key string) (*flight, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.calls[key]; ok {
		return f, false
	}
	if g.calls == nil {
		g.calls = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f
	return f, true
}

// finish publishes the leader's result (nil when not shareable) and ends the flight.
func (g *flights) finish(key string, f *flight, e *entry, storedKey string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.e, f.key = e, storedKey
	delete(g.calls, key)
	close(f.done)
}
