package cache

import (
	"net/http"
	"strconv"
	"time"
)

// detail is the value of the Cache-Status detail parameter (RFC 9211 2.8):
// why the cache did what it did. Every value the sidecar emits is one of
// these constants, and docs/caching.md lists each (TestCacheStatusDocListsEveryValue).
type detail string

// Where a hit came from, or why a stale entry was served.
const (
	detailInProcess            detail = "inprocess"
	detailRedis                detail = "redis"
	detailStaleWhileRevalidate detail = "stale-while-revalidate"
	detailStaleIfError         detail = "stale-if-error"
	detailMaxStale             detail = "max-stale"
)

// Why a response was not stored.
const (
	detailNoStore        detail = "no-store"
	detailPrivate        detail = "private"
	detailAuthorization  detail = "authorization"
	detailSetCookie      detail = "set-cookie"
	detailStatus         detail = "status"
	detailVaryStar       detail = "vary-star"
	detailNoFreshness    detail = "no-freshness"
	detailNoCache        detail = "no-cache"
	detailExpired        detail = "expired"
	detailTooLarge       detail = "too-large"
	detailStream         detail = "stream"
	detailHead           detail = "head"
	detailRequestNoStore detail = "request-no-store"
	detailInvalidated    detail = "invalidated"
	detailVariants       detail = "variants"
)

// Why a request bypassed the cache, or was answered without the origin.
const (
	detailSession             detail = "session"
	detailUpgrade             detail = "upgrade"
	detailPrecondition        detail = "precondition"
	detailRedisUnavailable    detail = "redis-unavailable"
	detailInvalidationPending detail = "invalidation-pending"
	detailOnlyIfCached        detail = "only-if-cached"
)

// fwd is the value of the fwd parameter (RFC 9211 2.2): why the request
// went to the origin.
type fwd string

// The fwd values the sidecar emits.
const (
	fwdBypass  fwd = "bypass"
	fwdURIMiss fwd = "uri-miss"
	fwdRequest fwd = "request"
	fwdStale   fwd = "stale"
)

// cacheStatus builds one Cache-Status member for this cache.
type cacheStatus struct {
	hit       bool
	fwd       fwd
	fwdStatus int
	// ttl is written when hasTTL: the remaining freshness in seconds.
	ttl       int64
	hasTTL    bool
	stored    bool
	collapsed bool
	detail    detail
}

// withTTL sets the remaining freshness lifetime of e at now.
func (s cacheStatus) withTTL(e *entry, now time.Time) cacheStatus {
	s.ttl, s.hasTTL = int64((e.Lifetime-e.age(now))/time.Second), true
	return s
}

// String is the member: "gatehouse; hit; ttl=42; detail=redis".
func (s cacheStatus) String() string {
	// Built in a buffer on the stack: it is written on every answer.
	var buf [128]byte
	b := append(buf[:0], "gatehouse"...)
	if s.hit {
		b = append(b, "; hit"...)
	}
	if s.fwd != "" {
		b = append(append(b, "; fwd="...), s.fwd...)
	}
	if s.fwdStatus != 0 {
		b = strconv.AppendInt(append(b, "; fwd-status="...), int64(s.fwdStatus), 10)
	}
	if s.hasTTL {
		b = strconv.AppendInt(append(b, "; ttl="...), s.ttl, 10)
	}
	if s.stored {
		b = append(b, "; stored"...)
	}
	if s.collapsed {
		b = append(b, "; collapsed"...)
	}
	if s.detail != "" {
		b = append(append(b, "; detail="...), s.detail...)
	}
	return string(b)
}

// xcache is the X-Cache value of an answer with this status.
func (s cacheStatus) xcache() string {
	switch {
	case s.fwd == fwdBypass:
		return "BYPASS"
	case s.detail == detailStaleWhileRevalidate || s.detail == detailStaleIfError || s.detail == detailMaxStale:
		return "STALE"
	case s.hit:
		return "HIT"
	}
	return "MISS"
}

// mark sets the cache's response headers for s.
func (s cacheStatus) mark(h http.Header) {
	h.Set("X-Cache", s.xcache())
	h.Add("Cache-Status", s.String())
}
