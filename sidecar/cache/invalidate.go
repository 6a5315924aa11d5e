package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

const (
	// invalidateTimeout bounds one invalidation (Redis deletes and broadcast).
	invalidateTimeout = 5 * time.Second
	// pingEvery is how often an idle subscription is checked; a subscription
	// silent for 3*pingEvery is considered lost.
	pingEvery = time.Second
	// resubscribeBackoff spaces attempts to subscribe again.
	resubscribeBackoff = 200 * time.Millisecond
)

// serveWrite forwards an unsafe request and, once the upstream answered 2xx,
// evicts t — before the status reaches the client, so a client that saw its
// write succeed never reads the old entry afterwards.
func (c *Cache) serveWrite(w http.ResponseWriter, r *http.Request, next http.Handler, t targets) {
	hw := &hookWriter{ResponseWriter: w, onHeader: func(_ http.Header, status int) {
		if status < 200 || status > 299 {
			return
		}
		if _, err := c.invalidate(r.Context(), t); err != nil {
			c.log.Error("cache invalidation after write failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
	}}
	next.ServeHTTP(hw, r)
	if !hw.wrote {
		// A handler that writes nothing answers an implicit 200.
		hw.WriteHeader(http.StatusOK)
	}
}

// message is an invalidation broadcast.
type message struct {
	Origin string `json:"origin"`
	targets
}

// invalidate evicts t from every tier: this sidecar's in-process tier, Redis
// (all variants of each path, paths found by prefix and tag through the
// indexes), and the other sidecars' in-process tiers by broadcast. It returns
// the number of Redis paths evicted.
func (c *Cache) invalidate(ctx context.Context, t targets) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invalidateTimeout)
	defer cancel()
	if c.local != nil {
		c.local.evict(t)
	}
	now := time.Now()
	var errs []error
	paths := slices.Clone(t.Paths)
	if len(t.PathPrefixes) > 0 {
		ps, err := c.pathsWithPrefixes(ctx, t.PathPrefixes, now)
		errs = append(errs, err)
		paths = append(paths, ps...)
	}
	for _, tag := range t.Tags {
		ps, err := c.pathsWithTag(ctx, tag, now)
		errs = append(errs, err)
		paths = append(paths, ps...)
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	evicted := 0
	for _, p := range paths {
		if err := c.evictPathRedis(ctx, p); err != nil {
			errs = append(errs, err)
			continue
		}
		evicted++
	}
	if evicted > 0 {
		c.m.evictions.WithLabelValues("redis", "invalidation").Add(float64(evicted))
	}
	// Index members of evicted paths would only be pruned at their expiry.
	if len(paths) > 0 {
		members := make([]any, len(paths))
		for i, p := range paths {
			members[i] = p
		}
		errs = append(errs, c.rdb.ZRem(ctx, c.ks.paths(), members...).Err())
		for _, tag := range t.Tags {
			errs = append(errs, c.rdb.ZRem(ctx, c.ks.tag(tag), members...).Err())
		}
	}
	errs = append(errs, c.publish(ctx, t))
	if err := errors.Join(errs...); err != nil {
		c.m.redisErrors.WithLabelValues("invalidate").Inc()
		return evicted, fmt.Errorf("invalidate: %w", err)
	}
	return evicted, nil
}

func (c *Cache) publish(ctx context.Context, t targets) error {
	b, err := json.Marshal(message{Origin: c.origin, targets: t})
	if err != nil {
		return fmt.Errorf("encode invalidation: %w", err)
	}
	c.lastSent.Store(time.Now().UnixNano())
	if c.sharded {
		err = c.rdb.SPublish(ctx, c.ks.channel(), b).Err()
	} else {
		err = c.rdb.Publish(ctx, c.ks.channel(), b).Err()
	}
	if err != nil {
		return fmt.Errorf("broadcast invalidation: %w", err)
	}
	c.m.invSent.Inc()
	return nil
}

// subscribe keeps the invalidation subscription alive for the in-process
// tier. The tier is usable only between a confirmed (re)subscription and the
// next sign of trouble; losing the subscription empties it.
func (c *Cache) subscribe() {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		live, err := c.listen(ctx)
		c.local.disable()
		select {
		case <-c.quit:
			return
		default:
		}
		// Log the loss once, not every retry of an outage.
		if live {
			c.log.Warn("cache invalidation subscription lost; in-process tier off until resubscribed", "err", err)
		} else {
			c.log.Debug("cache invalidation subscription failed", "err", err)
		}
		select {
		case <-c.quit:
			return
		case <-time.After(resubscribeBackoff):
		}
	}
}

// listen runs one subscription until it fails or ctx ends. live reports
// whether the subscription had been confirmed.
func (c *Cache) listen(ctx context.Context) (live bool, err error) {
	var ps *redis.PubSub
	if c.sharded {
		ps = c.rdb.SSubscribe(ctx, c.ks.channel())
	} else {
		ps = c.rdb.Subscribe(ctx, c.ks.channel())
	}
	defer ps.Close()
	heard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return live, ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return live, fmt.Errorf("receive invalidation: %w", err)
			}
			if time.Since(heard) > 3*pingEvery {
				return live, errors.New("subscription silent, not even answering pings")
			}
			if err := ps.Ping(ctx); err != nil {
				return live, fmt.Errorf("ping subscription: %w", err)
			}
			continue
		}
		heard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" || m.Kind == "ssubscribe" {
				live = true
				c.local.enable()
			}
		case *redis.Message:
			var in message
			if err := json.Unmarshal([]byte(m.Payload), &in); err != nil {
				c.log.Warn("cache invalidation message unreadable", "err", err)
				continue
			}
			if in.Origin == c.origin {
				continue // evicted locally before publishing
			}
			c.m.invReceived.Inc()
			c.local.evict(in.targets)
			c.lastReceived.Store(time.Now().UnixNano())
		}
	}
}

// RegisterAdmin adds POST /v1/cache/purge, which evicts on demand what an
// invalidate rule would: {"paths":[...],"pathPrefixes":[...],"tags":[...]}.
func (c *Cache) RegisterAdmin(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/cache/purge", c.purge)
}

type purgeResult struct {
	EvictedPaths int `json:"evictedPaths"`
}

func (c *Cache) purge(w http.ResponseWriter, r *http.Request) {
	var t targets
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		problem.Write(w, r, &problem.Error{Status: http.StatusBadRequest, Kind: "invalid-purge", Title: "Invalid purge request", Detail: err.Error()})
		return
	}
	if t.empty() {
		problem.Write(w, r, &problem.Error{Status: http.StatusBadRequest, Kind: "invalid-purge", Title: "Invalid purge request", Detail: "name at least one of paths, pathPrefixes, tags"})
		return
	}
	n, err := c.invalidate(r.Context(), t)
	if err != nil {
		problem.Write(w, r, &problem.Error{Status: http.StatusServiceUnavailable, Kind: "cache-unavailable", Title: "Cache purge incomplete", Detail: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(purgeResult{EvictedPaths: n})
}
