package cache

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Shared is what one sidecar process keeps for the cache across config
// reloads: the metrics, and the invalidations Redis has not confirmed yet.
// A reload builds a new Cache; an eviction that failed on the old one is
// still retried, and its paths still bypass the cache, on the new one.
// Create one per process.
type Shared struct {
	m      *Metrics
	origin string // names this process in broadcasts
	seq    atomic.Uint64

	mu      sync.Mutex
	pending map[string]*pendingSet // by the policy's keyspace
}

// NewShared creates the cache's process-wide state and registers its
// metrics with reg (nil: not registered).
func NewShared(reg prometheus.Registerer) *Shared {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Shared{m: NewMetrics(reg), origin: hex.EncodeToString(id[:]), pending: map[string]*pendingSet{}}
}

// Metrics are the collectors Caches record into.
func (s *Shared) Metrics() *Metrics { return s.m }

func (s *Shared) pendingFor(policy string) *pendingSet {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[policy]
	if p == nil {
		p = &pendingSet{own: map[string]*invalidation{}, remote: map[string]*invalidation{}, wake: make(chan struct{}, 1), m: s.m}
		s.pending[policy] = p
	}
	return p
}

func (s *Shared) nextID() string { return strconv.FormatUint(s.seq.Add(1), 36) }

// maxPending bounds each kind of pending invalidation per policy. Beyond it
// they are merged into one that evicts the whole policy: coarse, but it
// loses nothing and keeps memory bounded through a long outage.
const maxPending = 1024

// retryEvery is how often a failed invalidation is tried again. While the
// node it needs is in its breaker's cooldown an attempt costs nothing (the
// access layer answers at once), so it can be short: a path stays bypassed
// only as long as it must.
const retryEvery = 100 * time.Millisecond

// invalidation is one eviction Redis has not confirmed.
type invalidation struct {
	origin, id string
	t          targets
	// expires is when everything it evicts has expired anyway: the
	// policy's longest entry lifetime after the write.
	expires time.Time
	// evicted: Redis has evicted; only the broadcast is left to send.
	evicted bool
	busy    bool
	due     time.Time
}

// pendingSet is the unconfirmed invalidations of one policy: this process's
// own, retried until Redis accepts them, and other replicas' that a
// broadcast announced as pending, until their completion arrives. While
// any covers a path, the path bypasses the cache here: no tier serves or
// stores it.
type pendingSet struct {
	n      atomic.Int64 // len(own)+len(remote), read without the lock on every request
	mu     sync.Mutex
	own    map[string]*invalidation // by id
	remote map[string]*invalidation // by origin + "/" + id
	wake   chan struct{}
	m      *Metrics
}

func (p *pendingSet) countLocked() {
	p.n.Store(int64(len(p.own) + len(p.remote)))
	p.m.pending.Set(float64(p.n.Load()))
}

// add records a new invalidation of this process before Redis is asked, so
// that no tier of this sidecar stores what it evicts while it runs.
func (p *pendingSet) add(inv *invalidation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addCapped(p.own, inv.id, inv)
	p.countLocked()
}

// addRemote records another replica's pending invalidation.
func (p *pendingSet) addRemote(inv *invalidation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	addCapped(p.remote, inv.origin+"/"+inv.id, inv)
	p.countLocked()
}

func (p *pendingSet) removeRemote(origin, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.remote, origin+"/"+id)
	p.countLocked()
}

// done removes an invalidation Redis confirmed.
func (p *pendingSet) done(inv *invalidation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.own, inv.id)
	p.countLocked()
}

// retry hands inv back for the retrier, due after retryEvery.
func (p *pendingSet) retry(inv *invalidation, now time.Time) {
	p.mu.Lock()
	inv.busy, inv.due = false, now.Add(retryEvery)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// takeDue marks the own invalidations that are due busy and returns them,
// dropping those that expired; it also returns when the next one is due.
func (p *pendingSet) takeDue(now time.Time) (due []*invalidation, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, inv := range p.own {
		switch {
		case inv.busy:
		case !now.Before(inv.expires):
			delete(p.own, id)
			p.m.invRetries.WithLabelValues("expired").Inc()
		case !now.Before(inv.due):
			inv.busy = true
			due = append(due, inv)
		case next.IsZero() || inv.due.Before(next):
			next = inv.due
		}
	}
	for k, inv := range p.remote {
		if !now.Before(inv.expires) {
			delete(p.remote, k)
		}
	}
	p.countLocked()
	return due, next
}

// covers reports whether a pending invalidation names path, a prefix of
// it, or one of tags.
func (p *pendingSet) covers(path string, tags []string, now time.Time) bool {
	if p.n.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, set := range []map[string]*invalidation{p.own, p.remote} {
		for _, inv := range set {
			if now.Before(inv.expires) && inv.t.covers(path, tags) {
				return true
			}
		}
	}
	return false
}

// addCapped adds inv to set; a full set is merged into one invalidation of
// the whole policy that lives as long as the longest of them.
func addCapped(set map[string]*invalidation, key string, inv *invalidation) {
	if len(set) < maxPending {
		set[key] = inv
		return
	}
	all := &invalidation{origin: inv.origin, id: inv.id, t: targets{PathPrefixes: []string{"/"}}, expires: inv.expires}
	for k, o := range set {
		all.expires = maxTime(all.expires, o.expires)
		delete(set, k)
	}
	set[key] = all
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
