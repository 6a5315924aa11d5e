package cache

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// Middleware serves cacheable requests from the cache and evicts after
// successful writes; everything else goes straight to next.
func (c *Cache) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			for i := range c.rules {
				if c.rules[i].match.Match(r) {
					c.serveCacheable(w, r, next, &c.rules[i])
					return
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		// A gRPC call is a POST to /package.Service/Method answered 200
		// whatever its outcome: only rules that opted in may fire on it,
		// and only once it ended OK (serveGRPCWrite). GETs never are gRPC,
		// so the check costs nothing on the cacheable path.
		isGRPC := grpcwire.IsGRPC(r)
		var t targets
		for _, ir := range c.inv {
			if (!isGRPC || ir.grpc) && ir.match.Match(r) {
				t = t.union(ir.t)
				if ir.requestPath {
					t.Paths = append(t.Paths, r.URL.Path)
				}
			}
		}
		switch {
		case t.empty():
			next.ServeHTTP(w, r)
		case isGRPC:
			c.serveGRPCWrite(w, r, next, t)
		default:
			c.serveWrite(w, r, next, t)
		}
	})
}

// request is one cacheable request as the cache sees it.
type request struct {
	r       *http.Request
	rule    *rule
	path    string
	in      keyInput
	reqCC   cacheControl
	started time.Time
}

// variantKey is the Redis key of the request's variant under a Vary spec.
func (q *request) variantKey(vary []string) string {
	in := q.in
	in.Headers = varyPairs(q.r.Header, headerNames(q.rule.vary, vary))
	return in.hash()
}

func (c *Cache) serveCacheable(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule) {
	now := time.Now()
	subject, hasSubject := identity.Subject(r.Context())
	q := &request{
		r: r, rule: rl, path: r.URL.Path, reqCC: parseCacheControl(r.Header), started: now,
		in: keyInput{
			Method: http.MethodGet, Host: r.Host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Subject: subject, HasSubject: rl.bySubject,
		},
	}
	switch {
	case q.reqCC.NoStore:
		c.bypass(w, r, next, rl, "request-no-store")
		return
	case r.Header.Get("Range") != "":
		c.bypass(w, r, next, rl, "range")
		return
	case r.Header.Get("Upgrade") != "":
		// WebSocket and other upgrades need the raw connection, which only
		// the pass-through writer exposes.
		c.bypass(w, r, next, rl, "upgrade")
		return
	case !rl.bySubject && (hasSubject || r.Header.Get("Authorization") != ""):
		// A shared cache must not mix responses that may depend on who asks.
		c.bypass(w, r, next, rl, "session")
		return
	case c.pending.covers(q.path, rl.tags, now):
		// An invalidation of this path is not confirmed yet: neither tier
		// may serve what it evicts, nor store a fill that may predate it.
		c.bypass(w, r, next, rl, "invalidation-pending")
		return
	}
	// The lookup and the leader's second look before it fetches are one
	// request phase: together they wait for Redis at most one deadline.
	ctx, cancel := c.st.rdb.Phase(r.Context())
	defer cancel()
	f, err := c.find(ctx, q, true, now)
	if err != nil {
		c.redisFailed("lookup", err)
		c.bypass(w, r, next, rl, "redis-unavailable")
		return
	}
	if f.e != nil && !q.reqCC.NoCache {
		age := f.e.age(now)
		switch {
		case age < f.e.Lifetime:
			c.count(rl, "hit", true)
			c.writeEntry(w, r, f.e, now, "HIT", fmt.Sprintf("gatehouse; hit; ttl=%d; detail=%s", ttlSeconds(f.e, now), f.tier), true)
			return
		case age < f.e.Lifetime+f.e.SWR:
			c.count(rl, "stale", true)
			c.refresh(r, next, q, f.key)
			c.writeEntry(w, r, f.e, now, "STALE", fmt.Sprintf("gatehouse; hit; ttl=%d; detail=stale-while-revalidate", ttlSeconds(f.e, now)), true)
			return
		}
	}
	if r.Method == http.MethodHead {
		// HEAD is answered from GET entries but never fills them.
		c.passthrough(w, r, next, rl, "miss", "MISS", "gatehouse; fwd=uri-miss; detail=head")
		return
	}
	c.fill(ctx, w, r, next, q, f)
}

func ttlSeconds(e *entry, now time.Time) int64 {
	return int64((e.Lifetime - e.age(now)) / time.Second)
}

func (c *Cache) count(rl *rule, result string, saved bool) {
	c.m.requests.WithLabelValues(rl.name, result).Inc()
	if saved {
		c.m.upstreamSaved.WithLabelValues(rl.name).Inc()
	}
}

// found is what a lookup found.
type found struct {
	e    *entry
	key  string // variant key under the known Vary spec
	vary []string
	gen  string // only from Redis
	tier string
}

// find looks the request up in the in-process tier (when useLocal) and then
// in Redis, filling the in-process tier from Redis hits.
func (c *Cache) find(ctx context.Context, q *request, useLocal bool, now time.Time) (found, error) {
	var on bool
	var epoch uint64
	if c.local != nil {
		on, epoch = c.local.snapshot()
	}
	on = on && c.localUsable(now)
	if on && useLocal {
		if spec := c.local.get(c.ks.vary(q.path), now); spec != nil {
			key := c.ks.variant(q.path, q.variantKey(spec.vary))
			if it := c.local.get(key, now); it != nil {
				return found{e: it.e, key: key, vary: spec.vary, tier: "inprocess"}, nil
			}
		}
	}
	l, key, err := c.st.lookup(ctx, q.path, func(vary []string) string {
		return c.ks.variant(q.path, q.variantKey(vary))
	})
	if err != nil {
		return found{}, err
	}
	f := found{key: key, vary: l.vary, gen: l.gen}
	if l.raw == nil {
		return f, nil
	}
	e, err := unmarshalEntry(l.raw)
	if err != nil {
		// A corrupt entry is a miss; the fill overwrites it.
		c.log.Warn("cache entry unreadable", "key", key, "err", err)
		return f, nil
	}
	f.e, f.tier = e, "redis"
	if on && !c.pending.covers(q.path, q.rule.tags, now) {
		c.putLocal(q, key, l.vary, e, epoch, now)
	}
	return f, nil
}

// putLocal adds an entry and its path's Vary spec to the in-process tier.
func (c *Cache) putLocal(q *request, key string, vary []string, e *entry, epoch uint64, now time.Time) {
	exp := now.Add(e.expiresIn(now))
	if !exp.After(now) {
		return
	}
	if c.local.put(&item{key: c.ks.vary(q.path), path: q.path, tags: q.rule.tags, vary: vary, size: 64, expires: exp}, epoch) &&
		c.local.put(&item{key: key, path: q.path, tags: q.rule.tags, e: e, size: e.size(), expires: exp}, epoch) {
		c.m.storedBytes.WithLabelValues("inprocess").Add(float64(e.size()))
	}
}

// fill fetches a missing or expired entry, collapsing concurrent misses.
// ctx is the lookup's phase.
func (c *Cache) fill(ctx context.Context, w http.ResponseWriter, r *http.Request, next http.Handler, q *request, f found) {
	rl := q.rule
	fl, leader := c.flights.join(f.key)
	if !leader {
		select {
		case <-fl.done:
		case <-r.Context().Done():
			return
		}
		// The shared response is usable only if its own Vary selects this
		// request's variant too.
		if fl.e != nil {
			names, _ := parseVary(fl.e.Header)
			if c.ks.variant(q.path, q.variantKey(names)) == fl.key {
				c.count(rl, "miss", true)
				c.writeEntry(w, r, fl.e, time.Now(), "MISS", "gatehouse; fwd=uri-miss; collapsed", true)
				return
			}
		}
		c.passthrough(w, r, next, rl, "miss", "MISS", "gatehouse; fwd=uri-miss")
		return
	}
	var shared *entry
	var sharedKey string
	defer func() { c.flights.finish(f.key, fl, shared, sharedKey) }()
	// Another flight may have stored the entry between our lookup and our
	// join; checking again is what makes "one upstream call" exact. The
	// Redis read also yields the generation the store is conditioned on.
	now := time.Now()
	f2, err := c.find(ctx, q, false, now)
	if err != nil {
		c.redisFailed("lookup", err)
		c.bypass(w, r, next, rl, "redis-unavailable")
		return
	}
	if f2.e != nil && f2.e.age(now) < f2.e.Lifetime && !q.reqCC.NoCache {
		shared, sharedKey = f2.e, f2.key
		c.count(rl, "hit", true)
		c.writeEntry(w, r, f2.e, now, "HIT", fmt.Sprintf("gatehouse; hit; ttl=%d; detail=%s", ttlSeconds(f2.e, now), f2.tier), true)
		return
	}
	stale := f.e
	if f2.e != nil {
		stale = f2.e
	}
	fwd := "uri-miss"
	switch {
	case q.reqCC.NoCache:
		fwd = "request"
	case stale != nil:
		fwd = "stale"
	}
	shared, sharedKey = c.fetch(w, r, next, q, f2.gen, stale, fwd)
}

// fetch asks the upstream, answers the client and stores the response if it
// may be. It returns the stored entry and its key, for collapsed followers.
func (c *Cache) fetch(w http.ResponseWriter, r *http.Request, next http.Handler, q *request, gen string, stale *entry, fwd string) (*entry, string) {
	rl := q.rule
	start := time.Now()
	out := upstreamRequest(r.Context(), r)
	cw := newCapture(w, rl.maxBody, func(h http.Header, reason string) {
		h.Set("X-Cache", "MISS")
		h.Add("Cache-Status", "gatehouse; fwd="+fwd+"; detail="+reason)
	})
	next.ServeHTTP(cw, out)
	if cw.passed {
		c.count(rl, "miss", false)
		return nil, ""
	}
	now := time.Now()
	e := c.responseEntry(cw, start)
	if e.Status >= 500 && stale != nil && stale.age(now) < stale.Lifetime+stale.SIE {
		c.count(rl, "stale", true)
		c.writeEntry(w, r, stale, now, "STALE", fmt.Sprintf("gatehouse; fwd=%s; fwd-status=%d; ttl=%d; detail=stale-if-error", fwd, e.Status, ttlSeconds(stale, now)), true)
		return nil, ""
	}
	c.count(rl, "miss", false)
	names, reason := c.storable(q, e)
	if reason != "" {
		c.writeEntry(w, r, e, now, "MISS", "gatehouse; fwd="+fwd+"; fwd-status="+strconv.Itoa(e.Status)+"; detail="+reason, false)
		return nil, ""
	}
	key, stored := c.store(r.Context(), q, names, gen, e, now)
	status := "gatehouse; fwd=" + fwd + "; fwd-status=" + strconv.Itoa(e.Status)
	if !stored {
		c.writeEntry(w, r, e, now, "MISS", status, false)
		return nil, ""
	}
	c.writeEntry(w, r, e, now, "MISS", status+"; stored", false)
	return e, key
}

// store writes e to Redis and, when that succeeded, to the in-process tier.
func (c *Cache) store(ctx context.Context, q *request, vary []string, gen string, e *entry, now time.Time) (string, bool) {
	var on bool
	var epoch uint64
	if c.local != nil {
		on, epoch = c.local.snapshot()
	}
	key := c.ks.variant(q.path, q.variantKey(vary))
	if c.pending.covers(q.path, q.rule.tags, now) {
		// Fetched while an unconfirmed invalidation of the path is
		// pending: it may predate the write.
		return key, false
	}
	ok, raw, err := c.st.put(ctx, q.path, key, vary, q.rule.tags, gen, e, now)
	if err != nil {
		c.redisFailed("store", err)
		return key, false
	}
	if !ok {
		// The path was invalidated while we fetched: what we hold may be
		// older than the write, so it is neither stored nor shared.
		return key, false
	}
	c.m.storedBytes.WithLabelValues("redis").Add(float64(len(raw)))
	if on && c.localUsable(time.Now()) && !c.pending.covers(q.path, q.rule.tags, time.Now()) {
		c.putLocal(q, key, vary, e, epoch, now)
	}
	return key, true
}

// upstreamRequest is r for the upstream: conditionals are removed so the
// cache receives a full response it can store, and evaluates them itself.
func upstreamRequest(ctx context.Context, r *http.Request) *http.Request {
	out := r.Clone(ctx)
	out.Header.Del("If-None-Match")
	out.Header.Del("If-Modified-Since")
	return out
}

// hopByHop are connection-level headers a cache must not store (RFC 9110
// 7.6.1), plus the ones the cache computes itself on every answer.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Age", "X-Cache", "Content-Length",
}

func (c *Cache) responseEntry(cw *capture, start time.Time) *entry {
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	h := cw.header.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	var initialAge time.Duration
	if n, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && n > 0 {
		initialAge = time.Duration(n) * time.Second
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	return &entry{Status: status, Header: h, Body: cw.buf.Bytes(), StoredAt: start, InitialAge: initialAge}
}

// cacheableStatus lists the final statuses a shared cache may store
// (RFC 9110 15.1 heuristically cacheable ones, minus 206 and 501).
var cacheableStatus = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414}

// storable decides whether e may be stored for q. It sets e's lifetime and
// stale windows and returns the upstream Vary names, or the reason it may not.
func (c *Cache) storable(q *request, e *entry) ([]string, string) {
	rl := q.rule
	if !slices.Contains(cacheableStatus, e.Status) {
		return nil, "status"
	}
	if len(e.Header.Values("Set-Cookie")) > 0 {
		return nil, "set-cookie"
	}
	names, star := parseVary(e.Header)
	if star {
		return nil, "vary-star"
	}
	e.Lifetime, e.SWR, e.SIE = rl.ttl, rl.swr, rl.sie
	if rl.honor {
		cc := parseCacheControl(e.Header)
		switch {
		case cc.NoStore:
			return nil, "no-store"
		case cc.Private:
			return nil, "private"
		case cc.NoCache:
			return nil, "no-cache"
		}
		e.Lifetime = cc.lifetime(rl.ttl)
		if cc.MustRevalidate {
			e.SWR, e.SIE = 0, 0
		}
	}
	if e.Lifetime <= e.InitialAge {
		return nil, "expired"
	}
	return names, ""
}

// writeEntry answers r from e, evaluating r's conditionals against it.
func (c *Cache) writeEntry(w http.ResponseWriter, r *http.Request, e *entry, now time.Time, xcache, cacheStatus string, fromCache bool) {
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = slices.Clone(vs)
	}
	if age := e.age(now); fromCache || e.InitialAge > 0 {
		h.Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	}
	h.Set("X-Cache", xcache)
	h.Add("Cache-Status", cacheStatus)
	if e.Status/100 == 2 && notModified(r, e.Header) {
		h.Del("Content-Length")
		h.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if e.Status != http.StatusNoContent {
		h.Set("Content-Length", strconv.Itoa(len(e.Body)))
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}

// notModified evaluates If-None-Match (weak comparison), or If-Modified-Since
// when there is no If-None-Match, as RFC 9110 13.2.2 orders them.
func notModified(r *http.Request, h http.Header) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		etag := h.Get("ETag")
		if etag == "" {
			return false
		}
		for _, line := range inm {
			for t := range strings.SplitSeq(line, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
					return true
				}
			}
		}
		return false
	}
	ims, err := http.ParseTime(r.Header.Get("If-Modified-Since"))
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	return err == nil && !lm.After(ims)
}

// bypass forwards r untouched by the cache, marking the answer.
func (c *Cache) bypass(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule, reason string) {
	c.passthrough(w, r, next, rl, "bypass", "BYPASS", "gatehouse; fwd=bypass; detail="+reason)
}

func (c *Cache) passthrough(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule, result, xcache, cacheStatus string) {
	c.count(rl, result, false)
	next.ServeHTTP(&hookWriter{ResponseWriter: w, onHeader: func(h http.Header, _ int) {
		h.Set("X-Cache", xcache)
		h.Add("Cache-Status", cacheStatus)
	}}, r)
}

// refresh re-fetches a stale entry in the background, once per key at a
// time, detached from the request (which is answered from the stale entry)
// but bounded by refreshTimeout and stopped by Close.
func (c *Cache) refresh(r *http.Request, next http.Handler, q *request, variantKey string) {
	key := "refresh\x00" + variantKey
	fl, leader := c.flights.join(key)
	if !leader {
		return
	}
	// Cloned now: the original request is not ours once the handler returns.
	out := upstreamRequest(context.WithoutCancel(r.Context()), r)
	// A stale HEAD refreshes the GET entry it was answered from.
	out.Method, out.Body = http.MethodGet, http.NoBody
	bq := *q
	bq.r = out
	ok := c.goBackground(func() {
		defer c.flights.finish(key, fl, nil, "")
		ctx, cancel := context.WithTimeout(out.Context(), refreshTimeout)
		defer cancel()
		go func() {
			select {
			case <-c.quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		defer func() {
			// httputil.ReverseProxy aborts with a panic when the upstream
			// breaks off mid-body; off the request goroutine that would end
			// the process.
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				c.log.Error("cache refresh panicked", "panic", p)
			}
		}()
		c.refreshOnce(ctx, next, &bq)
	})
	if !ok {
		c.flights.finish(key, fl, nil, "")
	}
}

func (c *Cache) refreshOnce(ctx context.Context, next http.Handler, q *request) {
	now := time.Now()
	f, err := c.find(ctx, q, false, now)
	if err != nil {
		c.redisFailed("lookup", err)
		return
	}
	if f.e != nil && f.e.age(now) < f.e.Lifetime {
		return // someone refreshed it already
	}
	start := time.Now()
	cw := newCapture(nil, q.rule.maxBody, nil)
	next.ServeHTTP(cw, q.r.WithContext(ctx))
	if cw.passed {
		return
	}
	e := c.responseEntry(cw, start)
	names, reason := c.storable(q, e)
	if reason != "" {
		c.log.Debug("cache refresh not storable", "path", q.path, "reason", reason)
		return
	}
	c.store(ctx, q, names, f.gen, e, time.Now())
}
