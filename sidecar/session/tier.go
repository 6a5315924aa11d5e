package session

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"
)

// The in-process tier holds resolved sessions so that a busy session costs
// no Redis round trip. It stays coherent with revocation: every revoke and
// revoke-all is broadcast on the policy's channel (sharded Pub/Sub on a
// cluster, as the cache's invalidations), every sidecar evicts on receipt,
// and a sidecar whose subscription is not confirmed and delivering within
// its lease (redisconn.Watch) neither serves from the tier nor fills it,
// and drops it when the subscription is lost.
const (
	// tierMaxEntries bounds the tier; a full tier evicts a sampled least
	// recently used entry.
	tierMaxEntries = 10000
	// tierMaxAge is how long an entry is served before it is read from
	// Redis again. It bounds how long a session deleted behind the
	// sidecars' back (not through the admin API: a FLUSHDB, an eviction, a
	// failover that lost the write) stays usable.
	tierMaxAge = 10 * time.Second
	// slideEvery spaces the extensions of a sliding session without
	// refreshBelow: each sidecar extends a session in Redis at most once per
	// slideEvery (or ttl/100, if shorter), so its idle timeout restarts
	// within that much of its last use.
	slideEvery = time.Second
)

// tierEntry is one resolved session.
type tierEntry struct {
	secret  [secretLen]byte
	sc      *Context
	subject [sha256.Size]byte
	// until is when the entry must be read from Redis again.
	until time.Time
	// idleEnd is when Redis drops the key unless extended (sliding only);
	// a lower bound, since another sidecar may have extended it since.
	idleEnd time.Time
	// extended is when this sidecar last sent an extension.
	extended time.Time
	last     time.Time
}

// tier is the in-process session tier. Its epoch advances on every
// eviction, so a lookup that read Redis before a revocation arrived cannot
// put the revoked session back (see put).
type tier struct {
	mu      sync.Mutex
	entries map[string]*tierEntry
	epoch   uint64
}

func newTier() *tier { return &tier{entries: map[string]*tierEntry{}} }

// get returns the entry of key if its secret matches and it may be served
// at now, and the epoch to fill with otherwise.
func (t *tier) get(key string, secret *[secretLen]byte, now time.Time) (*tierEntry, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.entries[key]
	if !ok || subtle.ConstantTimeCompare(e.secret[:], secret[:]) != 1 {
		return nil, t.epoch
	}
	if !now.Before(e.until) || (!e.idleEnd.IsZero() && !now.Before(e.idleEnd)) {
		delete(t.entries, key)
		return nil, t.epoch
	}
	e.last = now
	return e, t.epoch
}

// put stores e under key unless an eviction happened since epoch.
func (t *tier) put(key string, e *tierEntry, epoch uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epoch != epoch {
		return
	}
	if _, ok := t.entries[key]; !ok && len(t.entries) >= tierMaxEntries {
		t.evictLocked()
	}
	t.entries[key] = e
}

// extending marks that a request is sending an extension of e at now, and
// reports whether one is due: sliding without refreshBelow, slideEvery
// after the last; with refreshBelow, when less than that remains.
func (t *tier) extending(e *tierEntry, m *Manager, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	due := false
	switch {
	case !m.sliding:
	case m.refresh > 0:
		due = e.idleEnd.Sub(now) < m.refresh && now.Sub(e.extended) >= m.slide
	default:
		due = now.Sub(e.extended) >= m.slide
	}
	if due {
		e.extended = now
	}
	return due
}

// extended records a confirmed extension sent at sent.
func (t *tier) extended(e *tierEntry, ttl time.Duration, sent time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if end := sent.Add(ttl); end.After(e.idleEnd) {
		e.idleEnd = end
	}
}

// evictKey drops one session.
func (t *tier) evictKey(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch++
	delete(t.entries, key)
}

// evictSubject drops every session of the subject with hash sum.
func (t *tier) evictSubject(sum [sha256.Size]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch++
	for k, e := range t.entries {
		if e.subject == sum {
			delete(t.entries, k)
		}
	}
}

// clear drops everything: the subscription that keeps the tier coherent
// was lost.
func (t *tier) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.epoch++
	clear(t.entries)
}

// evictLocked drops the least recently used of a few entries (Go's map
// order makes them a random sample), as Redis' own eviction does.
func (t *tier) evictLocked() {
	var victim string
	var oldest time.Time
	n := 0
	for k, e := range t.entries {
		if n == 0 || e.last.Before(oldest) {
			victim, oldest = k, e.last
		}
		if n++; n == 8 {
			break
		}
	}
	delete(t.entries, victim)
}

// revocation is the broadcast of a revoke (Session: the session key) or a
// revoke-all (Subject: base64url of the subject hash). Neither names a
// token or a subject.
type revocation struct {
	Session string `json:"s,omitempty"`
	Subject string `json:"u,omitempty"`
}

// receive applies another sidecar's (or this one's own) revocation.
func (t *tier) receive(payload string) {
	var rv revocation
	if err := json.Unmarshal([]byte(payload), &rv); err != nil {
		// Unreadable: something was revoked, but not what. Drop it all.
		t.clear()
		return
	}
	if rv.Session != "" {
		t.evictKey(rv.Session)
	}
	if rv.Subject != "" {
		var sum [sha256.Size]byte
		if n, err := base64.RawURLEncoding.Decode(sum[:], []byte(rv.Subject)); err != nil || n != len(sum) {
			t.clear()
			return
		}
		t.evictSubject(sum)
	}
}
