package redisconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client is one feature's use of a connection. Its calls are counted under
// the feature's name, and its health is what /readyz shows for the feature.
// It is cheap: a feature built on every config reload makes a new one.
type Client struct {
	conn    *Conn
	feature string
	refuses bool
	m       *featureMetrics
	h       health
}

// Client returns feature's view of c. refusesTraffic says whether the
// feature's failure mode turns requests away while Redis is unavailable
// (required sessions, rate limits that fail closed): only those features'
// Redis trouble makes the sidecar unready.
func (c *Conn) Client(feature string, refusesTraffic bool) *Client {
	return &Client{conn: c, feature: feature, refuses: refusesTraffic, m: c.m.forFeature(feature)}
}

// Conn is the connection the client uses.
func (c *Client) Conn() *Conn { return c.conn }

// Phase is Conn.Phase: one deadline for several calls of one request phase.
func (c *Client) Phase(ctx context.Context) (context.Context, context.CancelFunc) {
	return c.conn.Phase(ctx)
}

// Do runs one call: the commands queue adds, bound to key's hash slot.
func (c *Client) Do(ctx context.Context, op, key string, queue func(p *Pipe)) error {
	var b Batch
	call := b.Add(c, op, key, queue)
	b.Exec(ctx)
	return call.Err()
}

// DoDurable runs one durable call (see Batch.AddDurable) and reports whether
// a replica acknowledged it.
func (c *Client) DoDurable(ctx context.Context, op, key string, queue func(p *Pipe)) (replicated bool, err error) {
	var b Batch
	call := b.AddDurable(c, op, key, queue)
	b.Exec(ctx)
	return call.Replicated(), call.Err()
}

// Publish broadcasts msg on channel: SPUBLISH on a cluster, where the
// message stays on the shard owning the channel's slot instead of flooding
// the cluster bus, PUBLISH otherwise. It is a call like any other: deadline,
// breaker, metrics. It returns how many subscribers received the message.
func (c *Client) Publish(ctx context.Context, op, channel string, msg []byte) (int64, error) {
	var n *redis.IntCmd
	err := c.Do(ctx, op, channel, func(p *Pipe) {
		if c.conn.Sharded() {
			n = p.SPublish(ctx, channel, msg)
		} else {
			n = p.Publish(ctx, channel, msg)
		}
	})
	if err != nil {
		return 0, err
	}
	return n.Val(), nil
}

// Subscription is a live subscription made by Subscribe.
type Subscription struct {
	c  *Client
	ps *redis.PubSub
}

// Subscribe subscribes to channels, which on a cluster must share one hash
// slot (sharded Pub/Sub: SSUBSCRIBE, on the node owning the slot). It does
// not wait for the confirmation: Receive returns it first.
func (c *Client) Subscribe(ctx context.Context, channels ...string) *Subscription {
	var ps *redis.PubSub
	if c.conn.Sharded() {
		ps = c.conn.cluster.SSubscribe(ctx, channels...)
	} else {
		ps = c.conn.client.Subscribe(ctx, channels...)
	}
	return &Subscription{c: c, ps: ps}
}

// Receive waits up to timeout for the next message, confirmation or pong.
// A timeout is reported as an error for which IsTimeout is true; any other
// error means the subscription is lost: the topology is reloaded (the
// channel's node may have failed over) and the feature's health notes it.
func (s *Subscription) Receive(ctx context.Context, timeout time.Duration) (any, error) {
	msg, err := s.ps.ReceiveTimeout(ctx, timeout)
	if err != nil && !IsTimeout(err) && ctx.Err() == nil {
		s.lost(err)
	}
	return msg, err
}

// Ping asks the subscription's node for a pong, which Receive returns.
func (s *Subscription) Ping(ctx context.Context) error {
	if err := s.ps.Ping(ctx); err != nil {
		s.lost(err)
		return err
	}
	return nil
}

func (s *Subscription) lost(err error) {
	s.c.conn.reload.request("subscription-lost")
	s.c.h.record(false, fmt.Errorf("subscription: %w", err), time.Now())
}

// Close ends the subscription.
func (s *Subscription) Close() error { return s.ps.Close() }

// IsTimeout reports whether err is a receive timeout, not a failure.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// record counts a finished call and updates the feature's health.
func (c *Client) record(call *Call, now time.Time, took time.Duration) {
	result := "ok"
	switch {
	case call.skipped:
		result = "skipped"
	case call.v == expired:
		result = "expired"
	case call.v != answered:
		result = "unavailable"
	case call.err != nil:
		result = "error"
	}
	c.m.observe(call.op, call.node, result, took)
	if call.durable && call.err == nil && !call.replicated && c.conn.mode != Standalone {
		c.m.unreplicated()
	}
	// An error reply (a script error, say) is the feature's problem, not
	// Redis being unavailable; an expired call says nothing either way.
	if call.v != expired {
		c.h.record(call.v == answered, call.err, now)
	}
	c.m.healthy(c.h.state(now) != StateUnavailable)
}

// Health states.
const (
	// StateIdle: no call yet.
	StateIdle = "idle"
	// StateOK: no call failed within the last healthWindow.
	StateOK = "ok"
	// StateDegraded: the last call succeeded, but one failed within the
	// last healthWindow (a flapping node, one shard of a cluster down).
	StateDegraded = "degraded"
	// StateUnavailable: the last call failed.
	StateUnavailable = "unavailable"
)

// healthWindow is how long a failure keeps a feature degraded.
const healthWindow = 10 * time.Second

// Health is a feature's view of its Redis connection, judged from the calls
// it made.
type Health struct {
	// Feature is the feature's name.
	Feature string `json:"feature"`
	// Redis is the connection's name.
	Redis string `json:"redis"`
	// State is idle, ok, degraded or unavailable.
	State string `json:"state"`
	// RefusesTraffic says whether the feature's failure mode turns requests
	// away while Redis is unavailable; only then does the connection's
	// readiness check make the sidecar unready.
	RefusesTraffic bool `json:"refusesTrafficOnFailure"`
	// LastError is the latest failure, if any, and LastFailure its time.
	LastError   string     `json:"lastError,omitempty"`
	LastFailure *time.Time `json:"lastFailure,omitempty"`
}

// Health reports the feature's current health.
func (c *Client) Health() Health {
	now := time.Now()
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	h := Health{Feature: c.feature, Redis: c.conn.name, State: c.h.stateLocked(now), RefusesTraffic: c.refuses}
	if !c.h.lastFail.IsZero() {
		t := c.h.lastFail.UTC()
		h.LastError, h.LastFailure = c.h.lastErr, &t
	}
	return h
}

type health struct {
	mu               sync.Mutex
	lastOK, lastFail time.Time
	lastErr          string
}

func (h *health) record(ok bool, err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		h.lastOK = now
		return
	}
	h.lastFail = now
	if err != nil {
		h.lastErr = err.Error()
	}
}

func (h *health) state(now time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stateLocked(now)
}

func (h *health) stateLocked(now time.Time) string {
	switch {
	case h.lastOK.IsZero() && h.lastFail.IsZero():
		return StateIdle
	case !h.lastFail.Before(h.lastOK):
		return StateUnavailable
	case now.Sub(h.lastFail) < healthWindow:
		return StateDegraded
	}
	return StateOK
}
