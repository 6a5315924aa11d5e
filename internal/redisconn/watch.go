package redisconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// watchPing is how often an idle watched subscription is pinged.
	watchPing = 250 * time.Millisecond
	// watchLease is how long after a watched subscription last delivered
	// anything (a message, a confirmation, a pong) what it protects may
	// still be trusted. A broadcast this sidecar cannot receive (the
	// channel's node frozen or cut off) leaves it trusting stale state for
	// at most this long; silence for that long also ends the subscription.
	watchLease = 3 * watchPing
	// watchBackoff spaces attempts to subscribe again.
	watchBackoff = 200 * time.Millisecond
)

// Watch keeps one subscription alive for an in-process tier that a
// broadcast must be able to invalidate (sessions revoked on another
// replica, say). The tier may be used only while Usable: between a
// confirmed (re)subscription and the first sign of trouble, and only while
// the subscription keeps delivering within watchLease. On a lost
// subscription Watch calls lost, so the tier can drop what it holds, and
// subscribes again.
type Watch struct {
	c       *Client
	channel string
	recv    func(payload string)
	lost    func(err error)
	heard   atomic.Int64 // unix ns of the last delivery of a confirmed subscription; 0: none
	quit    chan struct{}
	done    sync.WaitGroup
	once    sync.Once
}

// Watch subscribes to channel (sharded Pub/Sub on a cluster) on a goroutine
// of its own until Close; recv gets every message, lost every loss of the
// subscription once it had been confirmed.
func (c *Client) Watch(channel string, recv func(payload string), lost func(err error)) *Watch {
	w := &Watch{c: c, channel: channel, recv: recv, lost: lost, quit: make(chan struct{})}
	w.done.Add(1)
	go w.run()
	return w
}

// Usable reports whether the subscription is confirmed and delivered
// something within watchLease of now.
func (w *Watch) Usable(now time.Time) bool {
	h := w.heard.Load()
	return h != 0 && now.UnixNano()-h <= int64(watchLease)
}

// Close ends the subscription and waits for its goroutine.
func (w *Watch) Close() {
	w.once.Do(func() { close(w.quit) })
	w.done.Wait()
}

func (w *Watch) run() {
	defer w.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		live, err := w.listen(ctx)
		w.heard.Store(0)
		if live && ctx.Err() == nil {
			w.lost(err)
		}
		select {
		case <-w.quit:
			return
		case <-time.After(watchBackoff):
		}
	}
}

// listen runs one subscription until it fails or ctx ends; live reports
// whether it had been confirmed.
func (w *Watch) listen(ctx context.Context) (live bool, err error) {
	sub := w.c.Subscribe(ctx, w.channel)
	defer sub.Close()
	heard := time.Now()
	for {
		msg, err := sub.Receive(ctx, watchPing)
		if err != nil {
			if ctx.Err() != nil {
				return live, ctx.Err()
			}
			if !IsTimeout(err) {
				return live, fmt.Errorf("receive: %w", err)
			}
			if time.Since(heard) > watchLease {
				return live, errors.New("subscription silent, not even answering pings")
			}
			if err := sub.Ping(ctx); err != nil {
				return live, fmt.Errorf("ping subscription: %w", err)
			}
			continue
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				live = true
			case "unsubscribe", "sunsubscribe":
				// On a cluster: the channel's slot moved (a failover).
				return live, errors.New("unsubscribed by the server: the channel's slot moved")
			}
		case *redis.Message:
			// Applied before the lease moves on, so a reader that sees the
			// tier usable has seen every message delivered before.
			w.recv(m.Payload)
		}
		if live {
			w.heard.Store(heard.UnixNano())
		}
	}
}
