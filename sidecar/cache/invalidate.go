package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
	reqmatch "github.com/gatehouse-dev/gatehouse/sidecar/request"
)

const (
	// pingEvery is how often an idle subscription is pinged.
	pingEvery = 250 * time.Millisecond
	// subscriptionLease is how long after the subscription last delivered
	// anything the in-process tier may still be used. A broadcast this
	// sidecar cannot receive (its channel's node frozen or cut off) leaves
	// it serving possibly evicted entries for at most this long. Silence
	// for that long also ends the subscription, which empties the tier.
	subscriptionLease = 3 * pingEvery
	// resubscribeBackoff spaces attempts to subscribe again.
	resubscribeBackoff = 200 * time.Millisecond
)

// serveWrite forwards an unsafe request and, once the upstream answered
// with a non-error status (2xx or 3xx, RFC 9111 4.4), invalidates what it
// changed — before the status reaches the client, so a client that saw its
// write succeed never reads the old entry afterwards: the target URI and
// the same-origin URIs of Location and Content-Location when a cache rule
// covers them, and whatever matching invalidate rules name. The
// invalidation waits for Redis at most one request deadline; if Redis did
// not accept it by then, it is retried in the background and the paths
// bypass the cache meanwhile.
func (c *Cache) serveWrite(w http.ResponseWriter, r *http.Request, next http.Handler) {
	// A gRPC call is a POST to /package.Service/Method answered 200
	// whatever its outcome: only rules that opted in may fire on it, only
	// once it ended OK (serveGRPCWrite), and it never invalidates its own
	// method path implicitly — no cached GET lives there.
	isGRPC := grpcwire.IsGRPC(r)
	var ruled targets
	for _, ir := range c.inv {
		if (!isGRPC || ir.grpc) && ir.match.Match(r) {
			ruled = ruled.union(ir.t)
			if ir.requestPath {
				ruled.Paths = append(ruled.Paths, r.URL.Path)
			}
		}
	}
	switch {
	case isGRPC && ruled.empty(), !isGRPC && ruled.empty() && len(c.rules) == 0:
		next.ServeHTTP(w, r)
		return
	case isGRPC:
		c.serveGRPCWrite(w, r, next, ruled)
		return
	}
	hw := &hookWriter{ResponseWriter: w, onHeader: func(h http.Header, status int) {
		if status < 200 || status > 399 {
			return
		}
		t := ruled
		t.Paths = append(slices.Clone(t.Paths), c.writtenPaths(r, h)...)
		if t.empty() {
			return
		}
		if _, err := c.invalidate(r.Context(), t); err != nil {
			c.log.Warn("cache invalidation after write not confirmed by Redis; retrying in the background",
				"method", r.Method, "path", r.URL.Path, "err", err)
		}
	}}
	next.ServeHTTP(hw, r)
	if !hw.wrote {
		// A handler that writes nothing answers an implicit 200.
		hw.WriteHeader(http.StatusOK)
	}
}

// serveGRPCWrite forwards a gRPC call that an opted-in invalidate rule
// matched and evicts t once the call ended OK. A call's outcome is its
// grpc-status, a trailer (a header in a trailers-only answer) that is known
// only when the app has finished; the server sends the trailers when this
// handler returns, so evicting before that keeps serveWrite's promise: a
// client that saw its call succeed never reads the old entry afterwards.
func (c *Cache) serveGRPCWrite(w http.ResponseWriter, r *http.Request, next http.Handler, t targets) {
	hw := &hookWriter{ResponseWriter: w, onHeader: func(http.Header, int) {}}
	next.ServeHTTP(hw, r)
	if hw.status != http.StatusOK || grpcStatus(w.Header()) != "0" {
		return
	}
	// The call's own deadline (grpc-timeout) bounds the call, not the
	// eviction its success owes the other clients: detached, the eviction
	// gets the connection's whole deadline (redisconn.Conn.Phase keeps an
	// earlier caller deadline).
	if _, err := c.invalidate(context.WithoutCancel(r.Context()), t); err != nil {
		c.log.Warn("cache invalidation after gRPC call not confirmed by Redis; retrying in the background",
			"path", r.URL.Path, "err", err)
	}
}

// grpcStatus is the grpc-status a handler set on h: as a trailer the
// reverse proxy did not announce (http.TrailerPrefix), as an announced one,
// or as a header of a trailers-only answer.
func grpcStatus(h http.Header) string {
	if v := h.Get(http.TrailerPrefix + grpcwire.StatusHeader); v != "" {
		return v
	}
	return h.Get(grpcwire.StatusHeader)
}

// writtenPaths are the paths an unsafe request's success invalidates by
// RFC 9111 4.4: its target and the URIs in Location and Content-Location
// that share its origin, each only when a cache rule covers it (no other
// path can hold an entry).
func (c *Cache) writtenPaths(r *http.Request, h http.Header) []string {
	var out []string
	add := func(path, escaped string) {
		if path != "" && c.covered(escaped) && !slices.Contains(out, path) {
			out = append(out, path)
		}
	}
	add(r.URL.Path, reqmatch.Path(r))
	for _, name := range []string{"Location", "Content-Location"} {
		if v := h.Get(name); v != "" {
			add(c.sameOriginPath(r, v))
		}
	}
	return out
}

// covered reports whether some cache rule could store an entry for the
// escaped path.
func (c *Cache) covered(path string) bool {
	for i := range c.rules {
		if c.rules[i].match.MatchPath(path) {
			return true
		}
	}
	return false
}

// sameOriginPath resolves ref against r's URI and returns its canonical
// path, decoded and escaped, when it has r's origin (scheme, host and port;
// RFC 9111 4.4 forbids invalidating another origin's URIs), or "" otherwise.
// With a canonical host, that host counts as r's too.
func (c *Cache) sameOriginPath(r *http.Request, ref string) (string, string) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", ""
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path}
	abs := base.ResolveReference(u)
	if !strings.EqualFold(abs.Scheme, scheme) {
		return "", ""
	}
	host := normalizeHost(abs.Host)
	if host != normalizeHost(r.Host) && (c.canonicalHost == "" || host != c.canonicalHost) {
		return "", ""
	}
	canon, err := reqmatch.Canonical(abs.EscapedPath(), reqmatch.Options{})
	if err != nil {
		return "", ""
	}
	path, err := url.PathUnescape(canon)
	if err != nil {
		return "", ""
	}
	return path, canon
}

// message is an invalidation broadcast. Pending says the sender's Redis
// eviction failed and is being retried: receivers bypass the paths until a
// message with the same origin and id and no Pending arrives (or the
// policy's longest lifetime has passed).
type message struct {
	Origin  string `json:"origin"`
	ID      string `json:"id,omitempty"`
	Pending bool   `json:"pending,omitempty"`
	targets
}

// testHookRedisEvict, when set, runs while an invalidation is in progress:
// after this sidecar marked its paths pending, before Redis is asked.
var testHookRedisEvict func()

// invalidate evicts t from every tier: Redis (all variants of each path,
// paths found by prefix and tag through the indexes), this sidecar's
// in-process tier, and the other sidecars' by broadcast. It returns the
// number of Redis paths evicted, and an error if Redis did not confirm the
// eviction or the broadcast; then the invalidation stays pending and is
// retried until Redis accepts it.
//
// Order matters. The paths are pending from the start, so no fill on this
// sidecar stores them while the invalidation runs; the in-process tier is
// evicted after Redis, so a reader that fetched the old entry from Redis
// before the eviction cannot leave it there (its fill is refused by the
// tier's epoch, which the eviction advances).
func (c *Cache) invalidate(ctx context.Context, t targets) (int, error) {
	now := time.Now()
	inv := &invalidation{origin: c.sh.origin, id: c.sh.nextID(), t: t, expires: now.Add(c.maxLifetime), busy: true}
	c.pending.add(inv)
	if testHookRedisEvict != nil {
		testHookRedisEvict()
	}
	n, err := c.attempt(ctx, inv)
	if err != nil {
		c.pending.retry(inv, time.Now())
		return n, err
	}
	c.pending.done(inv)
	return n, nil
}

// attempt runs one try of inv within one request deadline: announce it to
// the other replicas while Redis evicts, evict the in-process tier, and
// broadcast the completion.
//
// The announcement (a broadcast marked pending) goes out concurrently with
// the Redis eviction, not after it: an eviction that runs into the deadline
// (its node frozen) would leave no time for a broadcast, and the other
// replicas would keep serving their in-process copies. Receivers evict and
// bypass the paths until the completion arrives, so what they read from
// Redis meanwhile is never stored.
func (c *Cache) attempt(ctx context.Context, inv *invalidation) (int, error) {
	ctx, cancel := c.st.rdb.Phase(ctx)
	defer cancel()
	n, evictErr, announceErr := 0, error(nil), error(nil)
	if !inv.evicted {
		var wg sync.WaitGroup
		wg.Go(func() { announceErr = c.publish(ctx, inv, true) })
		n, evictErr = c.st.evict(ctx, inv.t, time.Now())
		wg.Wait()
		if n > 0 {
			c.m.evictions.WithLabelValues("redis", "invalidation").Add(float64(n))
		}
		inv.evicted = evictErr == nil
	}
	if c.local != nil {
		c.local.evict(inv.t)
	}
	if !inv.evicted {
		return n, fmt.Errorf("invalidate: %w", errors.Join(evictErr, announceErr))
	}
	if err := c.publish(ctx, inv, false); err != nil {
		return n, fmt.Errorf("invalidate: %w", err)
	}
	return n, nil
}

// publish broadcasts inv, as pending or as completed.
func (c *Cache) publish(ctx context.Context, inv *invalidation, pending bool) error {
	b, err := json.Marshal(message{Origin: inv.origin, ID: inv.id, Pending: pending, targets: inv.t})
	if err != nil {
		return fmt.Errorf("encode invalidation: %w", err)
	}
	if pending {
		// The announcement is what evicts the other replicas' copies.
		c.lastSent.Store(time.Now().UnixNano())
	}
	if err := c.st.broadcast(ctx, b); err != nil {
		return err
	}
	c.m.invSent.Inc()
	return nil
}

// retryInvalidations retries this sidecar's failed invalidations of the
// policy (those of a Cache this one replaced included) until Redis accepts
// them, or until they expire: by then everything they would evict has
// expired anyway. It ends with Close, leaving what is left to the next Cache
// of the policy.
func (c *Cache) retryInvalidations() {
	defer c.wg.Done()
	timer := time.NewTimer(retryEvery)
	defer timer.Stop()
	for {
		due, next := c.pending.takeDue(time.Now())
		for _, inv := range due {
			if _, err := c.attempt(context.Background(), inv); err != nil {
				c.m.invRetries.WithLabelValues("failed").Inc()
				c.pending.retry(inv, time.Now())
				continue
			}
			c.m.invRetries.WithLabelValues("ok").Inc()
			c.log.Info("cache invalidation completed on retry", "paths", inv.t.Paths, "pathPrefixes", inv.t.PathPrefixes, "tags", inv.t.Tags)
			c.pending.done(inv)
		}
		wait := retryEvery
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-c.quit:
			return
		case <-c.pending.wake:
		case <-timer.C:
		}
	}
}

// subscribe keeps the invalidation subscription alive for the in-process
// tier. The tier is usable only between a confirmed (re)subscription and the
// next sign of trouble, and only while the subscription keeps delivering;
// losing the subscription empties it.
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
	sub := c.st.subscribe(ctx)
	defer sub.Close()
	heard := time.Now()
	for {
		msg, err := sub.Receive(ctx, pingEvery)
		if err != nil {
			if ctx.Err() != nil {
				return live, ctx.Err()
			}
			if !redisconn.IsTimeout(err) {
				return live, fmt.Errorf("receive invalidation: %w", err)
			}
			if time.Since(heard) > subscriptionLease {
				return live, errors.New("subscription silent, not even answering pings")
			}
			if err := sub.Ping(ctx); err != nil {
				return live, fmt.Errorf("ping subscription: %w", err)
			}
			continue
		}
		heard = time.Now()
		if live {
			c.heard.Store(heard.UnixNano())
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				live = true
				c.heard.Store(heard.UnixNano())
				c.local.enable()
			case "unsubscribe", "sunsubscribe":
				// The server dropped the subscription: on a cluster, the
				// channel's slot moved to another node (a failover).
				return live, errors.New("unsubscribed by the server: the channel's slot moved")
			}
		case *redis.Message:
			c.receive(m.Payload)
		}
	}
}

// receive applies another sidecar's broadcast.
func (c *Cache) receive(payload string) {
	var in message
	if err := json.Unmarshal([]byte(payload), &in); err != nil {
		c.log.Warn("cache invalidation message unreadable", "err", err)
		return
	}
	if in.Origin == c.sh.origin {
		return // applied here before publishing
	}
	c.m.invReceived.Inc()
	c.local.evict(in.targets)
	switch {
	case in.Pending:
		c.pending.addRemote(&invalidation{origin: in.Origin, id: in.ID, t: in.targets, expires: time.Now().Add(c.maxLifetime)})
		c.lastReceived.Store(time.Now().UnixNano())
	case in.ID != "":
		c.pending.removeRemote(in.Origin, in.ID)
	}
}

// localUsable reports whether the in-process tier may serve or take an
// entry now: the subscription delivered something within the lease.
func (c *Cache) localUsable(now time.Time) bool {
	return now.UnixNano()-c.heard.Load() <= int64(subscriptionLease)
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
		problem.Write(w, r, &problem.Error{Status: http.StatusServiceUnavailable, Kind: "cache-unavailable", Title: "Cache purge not confirmed",
			Detail: "Redis did not confirm the eviction; it is retried in the background and the paths bypass the cache until it succeeds: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(purgeResult{EvictedPaths: n})
}
