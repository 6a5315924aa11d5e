package session

import (
	"context"
	"sync"
	"time"
)

// A revocation whose broadcast could not be published (the channel's
// primary did not answer in time) has deleted the session in Redis, but
// the other sidecars' tiers may still hold it. The admin API answers 503
// so the app retries, and every retry broadcasts again, found or not; but
// an app that does not retry, or a retry that goes through no sidecar at
// all, must not leave another tier serving the session until its entry
// ages out. So the revoking sidecar republishes the revocation every
// republishEvery until it gets through or tierMaxAge has passed: by then
// every entry filled before the delete has expired (an entry's age counts
// from before its Redis read), and nothing is left to evict.
const (
	// republishEvery spaces the attempts: the breaker's cooldown, so every
	// attempt can be the node's probe.
	republishEvery = 100 * time.Millisecond
	// republishFor is how long a revocation is republished.
	republishFor = tierMaxAge
)

// pendingRevocations are the revocations still to be published, each with
// the time it is given up at.
type pendingRevocations struct {
	mu    sync.Mutex
	items map[revocation]time.Time
	kick  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	stop  sync.Once
}

func newPendingRevocations() *pendingRevocations {
	return &pendingRevocations{
		items: map[revocation]time.Time{},
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

func (p *pendingRevocations) add(rv revocation, until time.Time) {
	p.mu.Lock()
	p.items[rv] = until
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pendingRevocations) remove(rv revocation) {
	p.mu.Lock()
	delete(p.items, rv)
	p.mu.Unlock()
}

// due returns the pending revocations, dropping those past their time.
func (p *pendingRevocations) due(now time.Time) []revocation {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]revocation, 0, len(p.items))
	for rv, until := range p.items {
		if now.After(until) {
			delete(p.items, rv)
			continue
		}
		out = append(out, rv)
	}
	return out
}

// announce broadcasts rv. If the broadcast fails, rv is republished in
// the background (see republish) and the error is returned: the admin API
// answers 503, and the app's retry broadcasts once more.
func (m *Manager) announce(ctx context.Context, rv revocation) error {
	if err := m.broadcast(ctx, rv); err != nil {
		m.pending.add(rv, time.Now().Add(republishFor))
		return err
	}
	m.pending.remove(rv)
	return nil
}

// republish publishes pending revocations until Close.
func (m *Manager) republish() {
	p := m.pending
	defer close(p.done)
	for {
		select {
		case <-p.quit:
			return
		case <-p.kick:
		}
		for len(p.due(time.Now())) > 0 {
			select {
			case <-p.quit:
				return
			case <-time.After(republishEvery):
			}
			m.publishPending(context.Background())
		}
	}
}

// publishPending tries every pending revocation once, within one deadline.
func (m *Manager) publishPending(ctx context.Context) {
	ctx, cancel := m.rdb.Phase(ctx)
	defer cancel()
	for _, rv := range m.pending.due(time.Now()) {
		if err := m.broadcast(ctx, rv); err != nil {
			continue
		}
		m.pending.remove(rv)
		m.log.Info("revocation broadcast published after a failed attempt")
	}
}

// stopRepublishing ends the background republishing, after one last
// attempt at what is still pending. What that attempt does not publish is
// given up: the other tiers then drop the session when their entries age
// out (at most tierMaxAge after the revocation), or at the app's retry.
func (m *Manager) stopRepublishing() {
	m.pending.stop.Do(func() { close(m.pending.quit) })
	<-m.pending.done
	m.publishPending(context.Background())
	if n := len(m.pending.due(time.Now())); n > 0 {
		m.log.Warn("revocation broadcasts given up at close; other sidecars' tiers drop the sessions when their entries age out", "pending", n, "within", tierMaxAge)
	}
}
