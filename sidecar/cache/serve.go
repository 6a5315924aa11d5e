package cache

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/identity"
)

// Middleware serves cacheable requests from the cache and invalidates after
// successful writes; everything else goes straight to next.
func (c *Cache) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			if rl := c.ruleFor(r); rl != nil {
				c.serveCacheable(w, r, next, rl)
				return
			}
			next.ServeHTTP(w, r)
		case http.MethodOptions, http.MethodTrace:
			// Safe methods (RFC 9110 9.2.1): nothing to invalidate.
			next.ServeHTTP(w, r)
		default:
			c.serveWrite(w, r, next)
		}
	})
}

// ruleFor is the first rule matching a GET or HEAD request, or nil.
func (c *Cache) ruleFor(r *http.Request) *rule {
	for i := range c.rules {
		if c.rules[i].match.Match(r) {
			return &c.rules[i]
		}
	}
	return nil
}

// request is one cacheable request as the cache sees it.
type request struct {
	r    *http.Request
	rule *rule
	path string
	in   keyInput
	cc   directives
	// hasSubject: the session feature resolved a subject for the request.
	hasSubject bool
	// foreignAuth: the request carries Authorization and its entries are
	// not keyed by its own subject, so RFC 9111 3.5 applies.
	foreignAuth bool
	// hint is the path's Vary spec as this sidecar last saw it, and key the
	// variant key under it: the key concurrent requests collapse on.
	hint []string
	key  string
	// keyBase is what every variant key of the path starts with.
	keyBase string
}

// variantKey is the Redis key of the request's variant under a Vary spec.
func (q *request) variantKey(vary []string) string {
	in := q.in
	in.Headers = varyPairs(q.r.Header, headerNames(q.rule.vary, vary))
	return q.keyBase + in.hash()
}

// newRequest is r as the cache sees it, with the subject ctx carries (r's
// own context, or the one a planner is building).
func (c *Cache) newRequest(ctx context.Context, r *http.Request, rl *rule) *request {
	subject, hasSubject := identity.Subject(ctx)
	host := c.canonicalHost
	if host == "" {
		host = normalizeHost(r.Host)
	}
	q := &request{
		r: r, rule: rl, path: r.URL.Path, cc: requestDirectives(r.Header), hasSubject: hasSubject,
		in: keyInput{
			Method: http.MethodGet, Host: host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Subject: subject, HasSubject: rl.bySubject,
		},
	}
	q.foreignAuth = r.Header.Get("Authorization") != "" && (!rl.bySubject || !hasSubject)
	q.hint = c.hints.get(q.path)
	q.keyBase = c.ks.variantBase(q.path)
	q.key = q.variantKey(q.hint)
	return q
}

// mayCollapse reports whether the request may join another's fetch, or
// lead one: not when it must not share what it gets (Authorization, its own
// no-store) or must not cause a fetch (only-if-cached), nor for HEAD, which
// fills nothing.
func (q *request) mayCollapse() bool {
	return q.r.Method == http.MethodGet && !q.foreignAuth && !q.cc.NoStore && !q.cc.OnlyIfCached
}

func (c *Cache) serveCacheable(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule) {
	now := time.Now()
	q := c.newRequest(r.Context(), r, rl)
	if d := c.bypassReason(q, now); d != "" {
		c.bypass(w, r, next, rl, d)
		return
	}
	if e := c.findLocal(q, now); e != nil {
		switch q.decide(e, false, now) {
		case actFresh:
			c.count(rl, resultHit, true)
			c.writeEntry(w, q, e, now, cacheStatus{hit: true, detail: detailInProcess}.withTTL(e, now), true)
			return
		case actStaleClient:
			c.count(rl, resultStale, true)
			c.writeEntry(w, q, e, now, cacheStatus{hit: true, detail: detailMaxStale}.withTTL(e, now), true)
			return
		}
		// Anything else needs Redis or the origin: the entry is there too.
	}
	// The lookup the request's batch carried, if it is the one this
	// request would make now (plan.go).
	pl := c.planned(r.Context(), q)
	var fl *flight
	if q.mayCollapse() && rl.lockTimeout > 0 {
		f, leader := c.flights.join(q.key)
		if !leader {
			if c.follow(w, q, f) {
				return
			}
			// The planned lookup predates the wait: look again.
			pl = nil
		} else {
			fl = f
		}
	}
	c.serve(w, r, next, q, fl, pl)
}

// bypassReason says why a request skips the cache altogether, or "".
func (c *Cache) bypassReason(q *request, now time.Time) detail {
	r := q.r
	switch {
	case r.Header.Get("Upgrade") != "":
		// WebSocket and other upgrades need the raw connection, which only
		// the pass-through writer exposes.
		return detailUpgrade
	case r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "":
		// Preconditions only the origin can evaluate (RFC 9111 4.3.2).
		return detailPrecondition
	case q.hasSubject && !q.rule.bySubject:
		// A shared cache must not mix responses that may depend on who asks.
		return detailSession
	case c.pending.covers(q.path, q.rule.tags, now):
		// An invalidation of this path is not confirmed yet: neither tier
		// may serve what it evicts, nor store a fill that may predate it.
		return detailInvalidationPending
	}
	return ""
}

// action is what a stored entry allows for a request.
type action int

const (
	actFetch          action = iota // ask the origin (conditionally when possible)
	actFresh                        // serve it: fresh, as the request accepts
	actStaleSWR                     // serve it stale and revalidate in the background (RFC 5861 3)
	actStaleClient                  // serve it stale: the request's max-stale allows (RFC 9111 5.2.1.2)
	actGatewayTimeout               // 504: only-if-cached and nothing usable (RFC 9111 5.2.1.7)
)

// decide applies RFC 9111 4 and 5.2.1 to a stored entry e (nil: none) for q.
// invalid marks an entry an invalidation made unusable until revalidated.
func (q *request) decide(e *entry, invalid bool, now time.Time) action {
	if e == nil || (q.foreignAuth && !e.SharedAuth) {
		if q.cc.OnlyIfCached {
			return actGatewayTimeout
		}
		return actFetch
	}
	age := e.age(now)
	usable := !invalid && !e.NoCache && !q.cc.NoCache
	ageOK := q.cc.MaxAge < 0 || age <= q.cc.MaxAge
	if usable && ageOK && e.fresh(now) && (q.cc.MinFresh < 0 || e.Lifetime-age >= q.cc.MinFresh) {
		return actFresh
	}
	if usable && ageOK && !e.NoStale && !e.fresh(now) {
		stale := e.staleness(now)
		switch {
		case q.cc.MaxStaleAny || (q.cc.MaxStale >= 0 && stale <= q.cc.MaxStale):
			return actStaleClient
		case stale < e.SWR && q.cc.MaxAge < 0 && q.cc.MinFresh < 0:
			return actStaleSWR
		}
	}
	if q.cc.OnlyIfCached {
		return actGatewayTimeout
	}
	return actFetch
}

// acceptsFetched reports whether a response fetched for another request
// just now satisfies q's own freshness demands.
func (q *request) acceptsFetched(e *entry, now time.Time) bool {
	age := e.age(now)
	return (q.cc.MaxAge < 0 || age <= q.cc.MaxAge) && (q.cc.MinFresh < 0 || e.Lifetime-age >= q.cc.MinFresh)
}

// follow waits for the leader of q's flight, at most the rule's lock
// timeout, and answers q from its outcome when that is usable. It reports
// false when q must be served on its own.
func (c *Cache) follow(w http.ResponseWriter, q *request, fl *flight) bool {
	select {
	case <-fl.done:
	default:
		if !waitFor(q, fl) {
			return q.r.Context().Err() != nil // the client left; nothing to answer
		}
	}
	e := fl.e
	if e == nil {
		return false
	}
	// The shared response is usable only if its own Vary selects this
	// request's variant too: certainly when its Vary is the spec q's key
	// was built with.
	key := q.key
	if names, _ := parseVary(e.Header); !slices.Equal(names, q.hint) {
		key = q.variantKey(names)
	}
	if key != fl.key {
		return false
	}
	now := time.Now()
	rl := q.rule
	act := q.decide(e, false, now)
	switch {
	case fl.fetched && (act == actFresh || q.acceptsFetched(e, now)):
		c.count(rl, resultMiss, true)
		c.writeEntry(w, q, e, now, cacheStatus{fwd: fwdURIMiss, collapsed: true}, true)
	case act == actFresh:
		c.count(rl, resultHit, true)
		c.writeEntry(w, q, e, now, cacheStatus{hit: true, detail: fl.tier}.withTTL(e, now), true)
	case act == actStaleSWR:
		c.count(rl, resultStale, true)
		c.writeEntry(w, q, e, now, cacheStatus{hit: true, detail: detailStaleWhileRevalidate}.withTTL(e, now), true)
	case act == actStaleClient:
		c.count(rl, resultStale, true)
		c.writeEntry(w, q, e, now, cacheStatus{hit: true, detail: detailMaxStale}.withTTL(e, now), true)
	default:
		return false
	}
	return true
}

// waitFor waits for fl's leader at most q's lock timeout, and reports
// whether it published in time (false too when q's client left).
func waitFor(q *request, fl *flight) bool {
	timer := time.NewTimer(q.rule.lockTimeout)
	defer timer.Stop()
	select {
	case <-fl.done:
		return true
	case <-timer.C:
		return false
	case <-q.r.Context().Done():
		return false
	}
}

// publisher hands a flight's outcome to its followers (a no-op alone).
type publisher func(e *entry, key string, fetched bool, tier detail)

// serve answers q from Redis or the origin; fl is the flight q leads, or
// nil; pl is q's lookup planned into the request's batch, or nil.
func (c *Cache) serve(w http.ResponseWriter, r *http.Request, next http.Handler, q *request, fl *flight, pl *plan) {
	pub := func(e *entry, key string, fetched bool, tier detail) {
		if fl != nil {
			c.flights.publish(q.key, fl, e, key, fetched, tier)
		}
	}
	defer pub(nil, "", false, "")
	rl := q.rule
	now := time.Now()
	// The lookup is one request phase: it waits for Redis at most one deadline.
	ctx, cancel := c.st.rdb.Phase(r.Context())
	f, err := c.find(ctx, q, pl, now)
	cancel()
	if err != nil {
		pub(nil, "", false, "")
		c.redisFailed("lookup", err)
		c.bypass(w, r, next, rl, detailRedisUnavailable)
		return
	}
	switch q.decide(f.e, f.invalid, now) {
	case actFresh:
		pub(f.e, f.key, false, detailRedis)
		c.count(rl, resultHit, true)
		c.writeEntry(w, q, f.e, now, cacheStatus{hit: true, detail: detailRedis}.withTTL(f.e, now), true)
		return
	case actStaleSWR:
		pub(f.e, f.key, false, detailRedis)
		c.count(rl, resultStale, true)
		c.refresh(r, next, q, f)
		c.writeEntry(w, q, f.e, now, cacheStatus{hit: true, detail: detailStaleWhileRevalidate}.withTTL(f.e, now), true)
		return
	case actStaleClient:
		c.count(rl, resultStale, true)
		c.writeEntry(w, q, f.e, now, cacheStatus{hit: true, detail: detailMaxStale}.withTTL(f.e, now), true)
		return
	case actGatewayTimeout:
		c.count(rl, resultMiss, false)
		cacheStatus{detail: detailOnlyIfCached}.mark(w.Header())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusGatewayTimeout)
		_, _ = w.Write([]byte("not in the cache (only-if-cached)\n"))
		return
	}
	if r.Method == http.MethodHead {
		// HEAD is answered from GET entries but never fills them.
		c.passthrough(w, r, next, rl, resultMiss, cacheStatus{fwd: fwdURIMiss, detail: detailHead})
		return
	}
	c.fetch(w, r, next, q, f, pub)
}

func (c *Cache) count(rl *rule, res result, saved bool) {
	m := c.ruleCounters(rl)
	m.requests[res].Inc()
	if saved {
		m.saved.Inc()
	}
}

// found is what a lookup found.
type found struct {
	e *entry
	// invalid: an invalidation since e's fill; e may only be revalidated.
	invalid bool
	key     string // variant key under the known Vary spec
	gen     int64
	seq     int64
	// localOn and epoch are the in-process tier's state before the
	// lookup: a fill may enter the tier only if no eviction came between.
	localOn bool
	epoch   uint64
}

// findLocal looks q up in the in-process tier.
func (c *Cache) findLocal(q *request, now time.Time) *entry {
	if c.local == nil || !c.localUsable(now) {
		return nil
	}
	spec := c.local.get(c.ks.localVary(q.path), now)
	if spec == nil {
		return nil
	}
	if it := c.local.get(q.variantKey(spec.vary), now); it != nil {
		return it.e
	}
	return nil
}

// find looks q up in Redis — or reads the lookup pl planned into the
// request's batch — and checks the entry against the invalidations since
// its fill; a valid entry also fills the in-process tier.
func (c *Cache) find(ctx context.Context, q *request, pl *plan, now time.Time) (found, error) {
	var f found
	var l lookup
	var key string
	var err error
	if pl != nil {
		f.localOn, f.epoch = pl.localOn, pl.epoch
		l, key, err = pl.look.result(ctx, q.variantKey)
	} else {
		if c.local != nil {
			f.localOn, f.epoch = c.local.snapshot()
		}
		l, key, err = c.st.lookup(ctx, q.path, q.key, q.variantKey)
	}
	if err != nil {
		return found{}, err
	}
	c.hints.set(q.path, l.vary)
	f.key, f.gen, f.seq = key, l.gen, l.seq
	if l.raw == nil {
		return f, nil
	}
	e, err := unmarshalEntry(l.raw)
	if err != nil {
		// A corrupt or older-format entry is a miss; the fill overwrites it.
		c.log.Debug("cache entry unreadable", "key", key, "err", err)
		return f, nil
	}
	f.e = e
	f.invalid = e.Gen != l.gen
	if !f.invalid && e.Seq != l.seq {
		rs, err := c.bucketRecords(ctx, q.path, l.seq)
		if err != nil {
			return found{}, err
		}
		f.invalid = rs.invalidates(e, q.path)
	}
	if !f.invalid && f.localOn && c.localUsable(now) && !c.pending.covers(q.path, q.rule.tags, now) {
		c.putLocal(q, key, l.vary, e, f.epoch, now)
	}
	return f, nil
}

// bucketRecords returns the invalidations of path's bucket as of seq, from
// this sidecar's copy when it is that recent, else from Redis.
func (c *Cache) bucketRecords(ctx context.Context, path string, seq int64) (*records, error) {
	b := bucketOf(path)
	if rs := c.recs[b].Load(); rs != nil && rs.seq >= seq {
		return rs, nil
	}
	rs, err := c.st.records(ctx, b)
	if err != nil {
		return nil, err
	}
	c.recs[b].Store(rs)
	return rs, nil
}

// putLocal adds an entry and its path's Vary spec to the in-process tier.
func (c *Cache) putLocal(q *request, key string, vary []string, e *entry, epoch uint64, now time.Time) {
	exp := now.Add(e.expiresIn(now))
	if !exp.After(now) {
		return
	}
	if c.local.put(&item{key: c.ks.localVary(q.path), path: q.path, tags: q.rule.tags, vary: vary, size: 64, expires: exp}, epoch) &&
		c.local.put(&item{key: key, path: q.path, tags: q.rule.tags, e: e, size: e.size(), expires: exp}, epoch) {
		c.m.storedBytes.WithLabelValues("inprocess").Add(float64(e.size()))
	}
}

// fetch asks the origin for q — conditionally when the stored entry has
// validators — answers the client and stores the response if it may be.
func (c *Cache) fetch(w http.ResponseWriter, r *http.Request, next http.Handler, q *request, f found, pub publisher) {
	rl := q.rule
	base := f.e
	if base != nil && q.foreignAuth && !base.SharedAuth {
		// Not this request's to see, so not its to revalidate either.
		base = nil
	}
	via := fwdURIMiss
	switch {
	case q.cc.NoCache || (base != nil && !f.invalid && base.fresh(time.Now())):
		via = fwdRequest
	case base != nil:
		via = fwdStale
	}
	out := upstreamRequest(r.Context(), r)
	cond := base != nil && base.hasValidators()
	if cond {
		// RFC 9111 4.3.1: the entity tag, and Last-Modified as well.
		if et := base.Header.Get("ETag"); et != "" {
			out.Header.Set("If-None-Match", et)
		}
		if lm := base.Header.Get("Last-Modified"); lm != "" {
			out.Header.Set("If-Modified-Since", lm)
		}
	}
	requested := time.Now()
	var v verdict
	staleOnError := false
	var cw *capture
	judge := func(status int, h http.Header) detail {
		received := time.Now()
		switch {
		case cond && status == http.StatusNotModified:
			return ""
		case base != nil && isError(status) && q.staleIfError(base, f.invalid, received):
			staleOnError = true
			return ""
		}
		v = rl.judge(q, status, h, initialAge(h, requested, received), responseDate(h, received))
		if v.reason == "" && q.cc.NoStore {
			v.reason = detailRequestNoStore
		}
		return v.reason
	}
	cw = newCapture(w, rl.maxBody, judge, func(h http.Header, reason detail) {
		// Nobody may have this response: release the waiting requests now.
		pub(nil, "", false, "")
		cacheStatus{fwd: via, fwdStatus: cw.status, detail: reason}.mark(h)
	})
	next.ServeHTTP(cw, out)
	if cw.status == 0 {
		cw.WriteHeader(http.StatusOK) // a handler that wrote nothing answered 200
	}
	if cw.passed {
		c.count(rl, resultMiss, false)
		return
	}
	received := time.Now()
	switch {
	case cond && cw.status == http.StatusNotModified:
		c.revalidated(w, r, next, q, f, base, cw, requested, received, via, pub)
		return
	case staleOnError:
		c.count(rl, resultStale, true)
		c.writeEntry(w, q, base, received, cacheStatus{fwd: via, fwdStatus: cw.status, detail: detailStaleIfError}.withTTL(base, received), true)
		return
	}
	c.count(rl, resultMiss, false)
	e := c.newEntry(q, cw.status, cw.header, cw.buf.Bytes(), requested, received, v)
	c.storeAndAnswer(w, q, f, e, cacheStatus{fwd: via, fwdStatus: e.Status}, cw.header.Get("Age"), pub)
}

// revalidated handles a 304 to the cache's conditional request: the stored
// response is freshened with the 304's headers (RFC 9111 4.3.4, 3.2) and
// answers the request — unless the 304's validators do not select it, when
// the origin is asked again without conditions.
func (c *Cache) revalidated(w http.ResponseWriter, r *http.Request, next http.Handler, q *request, f found, base *entry, cw *capture, requested, received time.Time, via fwd, pub publisher) {
	if !validatorsSelect(base.Header, cw.header) {
		f.e = nil
		c.fetch(w, r, next, q, f, pub)
		return
	}
	c.count(q.rule, resultMiss, false)
	h := freshenHeader(base.Header, cw.header)
	v := q.rule.judge(q, base.Status, h, initialAge(cw.header, requested, received), responseDate(h, received))
	e := c.newEntry(q, base.Status, h, base.Body, requested, received, v)
	st := cacheStatus{fwd: via, fwdStatus: http.StatusNotModified}
	if v.reason != "" {
		// The origin no longer lets it be stored (no-store, say): answer
		// with it this once.
		st.detail = v.reason
		c.writeEntry(w, q, e, received, st, true)
		return
	}
	c.storeAndAnswer(w, q, f, e, st, "", pub)
}

// storeAndAnswer stores e, shares it with q's flight and answers q with it.
// age is the origin's Age of a response just received ("" after a
// validation, which the cache answers with the entry's own age).
func (c *Cache) storeAndAnswer(w http.ResponseWriter, q *request, f found, e *entry, st cacheStatus, age string, pub publisher) {
	now := time.Now()
	key, d := c.store(q, f, e, now)
	st.stored, st.detail = d == "", d
	switch d {
	case "", detailRedisUnavailable, detailVariants:
		// Fresh from the origin and storable: the requests that came in
		// while it was fetched may have it.
		pub(e, key, true, "")
	}
	if age != "" {
		w.Header().Set("Age", age)
	}
	c.writeEntry(w, q, e, now, st, age == "" && st.fwdStatus == http.StatusNotModified)
}

// store writes e to Redis and, when that succeeded, to the in-process
// tier. It returns e's key and why it was not stored ("" when it was).
func (c *Cache) store(q *request, f found, e *entry, now time.Time) (string, detail) {
	names, _ := parseVary(e.Header)
	key := q.variantKey(names)
	if e.expiresIn(now) <= 0 {
		return key, detailExpired
	}
	if c.pending.covers(q.path, q.rule.tags, now) {
		// Fetched while an unconfirmed invalidation of the path is
		// pending: it may predate the write.
		return key, detailInvalidationPending
	}
	e.Gen, e.Seq = f.gen, f.seq
	stored, evicted, raw, err := c.st.put(q.r.Context(), q.path, key, names, e, now, q.rule.maxVariants)
	switch {
	case err != nil:
		c.redisFailed("store", err)
		return key, detailRedisUnavailable
	case evicted:
		return key, detailVariants
	case !stored:
		// The path was invalidated while we fetched: what we hold may be
		// older than the write, so it is neither stored nor shared.
		return key, detailInvalidated
	}
	c.hints.set(q.path, names)
	c.m.storedBytes.WithLabelValues("redis").Add(float64(len(raw)))
	if f.localOn && c.localUsable(time.Now()) && !c.pending.covers(q.path, q.rule.tags, time.Now()) {
		c.putLocal(q, key, names, e, f.epoch, now)
	}
	return key, ""
}

// isError reports whether an origin status is an error a stale response may
// stand in for (RFC 5861 4).
func isError(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// staleIfError reports whether e may answer q in place of an origin error
// at now: the origin's stale-if-error window (capped by the rule) or the
// request's own, and never against must-revalidate and its kin.
func (q *request) staleIfError(e *entry, invalid bool, now time.Time) bool {
	if invalid || e.NoStale || e.fresh(now) {
		return false
	}
	stale := e.staleness(now)
	return stale < e.SIE || (q.cc.SIE >= 0 && stale <= q.cc.SIE)
}

// upstreamRequest is r for the upstream: the client's conditionals and
// range are removed so the cache receives a full response it can store,
// and evaluates them itself.
func upstreamRequest(ctx context.Context, r *http.Request) *http.Request {
	out := r.Clone(ctx)
	for _, h := range []string{"If-None-Match", "If-Modified-Since", "Range", "If-Range"} {
		out.Header.Del(h)
	}
	return out
}

// hopByHop are connection-level headers a cache must not store (RFC 9110
// 7.6.1, RFC 9111 3.1), plus the ones the cache computes itself on every
// answer.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authentication-Info", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Age", "X-Cache", "Content-Length",
}

// storedHeader is h as the cache keeps it.
func storedHeader(h http.Header) http.Header {
	h = h.Clone()
	for _, f := range h.Values("Connection") {
		for name := range strings.SplitSeq(f, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	return h
}

// freshenHeader is stored updated with a 304's header fields (RFC 9111
// 3.2): each replaces the stored field of its name, except those the cache
// does not store and Content-Length.
func freshenHeader(stored, notModified http.Header) http.Header {
	h := stored.Clone()
	for k, vs := range storedHeader(notModified) {
		if k == "Content-Range" {
			continue
		}
		h[k] = slices.Clone(vs)
	}
	return h
}

// validatorsSelect reports whether a 304's validators identify the stored
// response for update (RFC 9111 4.3.4): its strong entity tag must match
// strongly, a weak one weakly, or without an entity tag its Last-Modified
// must match. A 304 with no validator selects nothing here: the cache
// always has one when it asks conditionally.
func validatorsSelect(stored, notModified http.Header) bool {
	if et := notModified.Get("ETag"); et != "" {
		if strings.HasPrefix(et, "W/") {
			return weakMatch(et, stored.Get("ETag"))
		}
		return et == stored.Get("ETag")
	}
	lm := notModified.Get("Last-Modified")
	return lm != "" && lm == stored.Get("Last-Modified")
}

func weakMatch(a, b string) bool {
	return a != "" && b != "" && strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// newEntry builds the entry for a response received at received, with the
// rule's verdict.
func (c *Cache) newEntry(q *request, status int, h http.Header, body []byte, requested, received time.Time, v verdict) *entry {
	hdr := storedHeader(h)
	if v.stripCookies {
		hdr.Del("Set-Cookie")
	}
	if hdr.Get("Date") == "" {
		// RFC 9110 6.6.1: a cached response without Date gets the time it
		// was received.
		hdr.Set("Date", received.UTC().Format(http.TimeFormat))
	}
	e := &entry{
		Status: status, Header: hdr, Body: body,
		RequestTime: requested, ResponseTime: received,
		InitialAge: initialAge(h, requested, received),
		Lifetime:   v.lifetime, SWR: v.swr, SIE: v.sie,
		NoCache: v.noCache, NoStale: v.noStale, SharedAuth: v.sharedAuth,
		Tags: q.rule.tags,
	}
	e.Keep = e.Lifetime + max(e.SWR, e.SIE)
	if e.hasValidators() {
		// Worth keeping past its freshness as a base for revalidation.
		e.Keep = max(e.Keep, q.rule.ttl)
	}
	return e
}

// writeEntry answers q from e, evaluating q's conditionals and range
// against it. fromCache sets Age to the entry's current age (RFC 9111 4).
func (c *Cache) writeEntry(w http.ResponseWriter, q *request, e *entry, now time.Time, st cacheStatus, fromCache bool) {
	h := w.Header()
	copyHeader(h, e.Header)
	h.Del(ownField)
	if fromCache {
		h.Set("Age", strconv.FormatInt(int64(e.age(now)/time.Second), 10))
	}
	st.mark(h)
	r := q.r
	if e.Status/100 == 2 && notModified(r, e.Header) {
		h.Del("Content-Length")
		h.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodGet && e.Status == http.StatusOK && r.Header.Get("Range") != "" && writeRange(w, r, e) {
		return
	}
	if e.Status != http.StatusNoContent && e.Status != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(len(e.Body)))
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}

// copyHeader copies the fields of src into dst, the values of all in one
// allocation (as http.Header.Clone does): src is a stored entry's, which
// concurrent answers share, so dst must not alias its slices.
func copyHeader(dst, src http.Header) {
	n := 0
	for _, vs := range src {
		n += len(vs)
	}
	sv := make([]string, n)
	for k, vs := range src {
		m := copy(sv, vs)
		dst[k] = sv[:m:m]
		sv = sv[m:]
	}
}

// notModified evaluates If-None-Match (weak comparison), or If-Modified-Since
// when there is no If-None-Match, as RFC 9110 13.2.2 orders them; without a
// Last-Modified the stored Date stands in (RFC 9111 4.3.2).
func notModified(r *http.Request, h http.Header) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		etag := h.Get("ETag")
		if etag == "" {
			return false
		}
		for _, line := range inm {
			for t := range strings.SplitSeq(line, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || weakMatch(t, etag) {
					return true
				}
			}
		}
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	v := r.Header.Get("If-Modified-Since")
	if v == "" {
		return false
	}
	ims, err := http.ParseTime(v)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		if lm, err = http.ParseTime(h.Get("Date")); err != nil {
			return false
		}
	}
	return !lm.After(ims)
}

// bypass forwards r untouched by the cache, marking the answer.
func (c *Cache) bypass(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule, reason detail) {
	c.passthrough(w, r, next, rl, resultBypass, cacheStatus{fwd: fwdBypass, detail: reason})
}

func (c *Cache) passthrough(w http.ResponseWriter, r *http.Request, next http.Handler, rl *rule, res result, st cacheStatus) {
	c.count(rl, res, false)
	next.ServeHTTP(&hookWriter{ResponseWriter: w, onHeader: func(h http.Header, status int) {
		st.fwdStatus = status
		h.Del(ownField)
		st.mark(h)
	}}, r)
}

// refresh revalidates a stale entry in the background, once per key at a
// time, detached from the request (which is answered from the stale entry)
// but bounded by refreshTimeout and stopped by Close.
func (c *Cache) refresh(r *http.Request, next http.Handler, q *request, f found) {
	key := "refresh\x00" + f.key
	fl, leader := c.flights.join(key)
	if !leader {
		return
	}
	done := func() { c.flights.publish(key, fl, nil, "", false, "") }
	// Cloned now: the original request is not ours once the handler returns.
	out := r.Clone(context.WithoutCancel(r.Context()))
	// A stale HEAD refreshes the GET entry it was answered from.
	out.Method, out.Body = http.MethodGet, http.NoBody
	for _, h := range []string{"Cache-Control", "Pragma"} {
		out.Header.Del(h) // the refresh is the cache's request, not the client's
	}
	bq := *q
	bq.r, bq.cc = out, newDirectives()
	ok := c.goBackground(func() {
		defer done()
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
		bq.r = out.WithContext(ctx)
		c.fetch(newDiscard(), bq.r, next, &bq, f, func(*entry, string, bool, detail) {})
	})
	if !ok {
		done()
	}
}

// discard is the writer of a background refresh: nobody reads the answer.
type discard struct{ h http.Header }

func newDiscard() *discard                     { return &discard{h: http.Header{}} }
func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
