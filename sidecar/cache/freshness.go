package cache

import (
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// heuristicStatus are the final statuses RFC 9110 15.1 defines as
// heuristically cacheable, less 206: the cache asks the origin for whole
// representations and serves ranges from them, it never stores partial ones.
var heuristicStatus = []int{200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}

// knownStatus are the statuses whose caching requirements this cache
// implements, for must-understand (RFC 9111 5.2.2.3): those RFC 9110 defines.
func knownStatus(code int) bool {
	switch {
	case code >= 200 && code <= 206, code >= 300 && code <= 305, code == 307, code == 308,
		code >= 400 && code <= 417, code == 421, code == 422, code == 426, code >= 500 && code <= 505:
		return true
	}
	return false
}

// heuristicFraction of the time since Last-Modified is the heuristic
// freshness lifetime (RFC 9111 4.2.2 suggests 10%), capped by the rule's ttl.
const heuristicFraction = 10

// verdict is what the rule makes of a response: whether it may be stored,
// and the freshness metadata of the entry if so.
type verdict struct {
	// reason is why the response is not stored; "" when it may be.
	reason detail
	// lifetime is the freshness lifetime, capped by the rule's ttl.
	lifetime time.Duration
	// swr and sie are the stale windows after lifetime: the origin's
	// stale-while-revalidate / stale-if-error capped by the rule (in
	// Override mode the rule's values when the origin names none).
	swr, sie time.Duration
	// noCache: every use needs a successful validation first.
	// noStale: never served stale. sharedAuth: reusable for requests
	// with Authorization (RFC 9111 3.5).
	noCache, noStale, sharedAuth bool
	// stripCookies: the rule stores the response without Set-Cookie.
	stripCookies bool
}

// judge decides whether the response (status, h) to q may be stored, and
// with what freshness. age is the response's corrected initial age; date
// its Date, or when it was received.
func (rl *rule) judge(q *request, status int, h http.Header, age time.Duration, date time.Time) verdict {
	var v verdict
	if rl.mode == config.CacheOverride && !rl.honor {
		return rl.judgeIgnoringOrigin(q, status, h)
	}
	d := responseDirectives(h)
	switch {
	case status < 200 || status == http.StatusPartialContent || status == http.StatusNotModified:
		return verdict{reason: detailStatus}
	case d.MustUnderstand && !knownStatus(status):
		return verdict{reason: detailStatus}
	case d.NoStore && (!d.MustUnderstand || !knownStatus(status)):
		return verdict{reason: detailNoStore}
	case d.Private:
		return verdict{reason: detailPrivate}
	case q.foreignAuth && !d.sharedAuth():
		return verdict{reason: detailAuthorization}
	}
	if r := rl.cookiesAndVary(h, &v); r != "" {
		return verdict{reason: r}
	}
	explicit, lifetime := explicitLifetime(d, h, date)
	heuristic := slices.Contains(heuristicStatus, status) || d.Public
	validator := h.Get("ETag") != "" || h.Get("Last-Modified") != ""
	switch {
	case explicit:
	case !heuristic:
		// RFC 9111 3: without explicit freshness only heuristically
		// cacheable responses may be stored.
		return verdict{reason: detailStatus}
	case rl.mode == config.CacheOverride:
		lifetime = rl.ttl
	default:
		lifetime = heuristicLifetime(h, date)
	}
	v.lifetime = min(lifetime, rl.ttl)
	v.noCache = d.NoCache
	v.noStale = d.noStale()
	v.sharedAuth = d.sharedAuth()
	if !v.noStale {
		v.swr = rl.staleWindow(d.SWR, rl.swr)
		v.sie = rl.staleWindow(d.SIE, rl.sie)
	}
	switch {
	case validator:
		// Worth keeping however stale: a conditional request revalidates it.
	case v.noCache:
		return verdict{reason: detailNoCache}
	case v.lifetime+max(v.swr, v.sie) <= age:
		// Stale on arrival and past every stale window.
		if !explicit {
			return verdict{reason: detailNoFreshness}
		}
		return verdict{reason: detailExpired}
	}
	return v
}

// judgeIgnoringOrigin is Override mode without honorCacheControl: the
// origin's caching headers are ignored, every heuristically cacheable
// response is fresh for the ttl and may be served stale within the rule's
// windows.
func (rl *rule) judgeIgnoringOrigin(q *request, status int, h http.Header) verdict {
	var v verdict
	switch {
	case !slices.Contains(heuristicStatus, status):
		return verdict{reason: detailStatus}
	case q.foreignAuth:
		return verdict{reason: detailAuthorization}
	}
	if r := rl.cookiesAndVary(h, &v); r != "" {
		return verdict{reason: r}
	}
	v.lifetime, v.swr, v.sie = rl.ttl, rl.swr, rl.sie
	return v
}

// cookiesAndVary applies the rule's Set-Cookie policy and refuses Vary: *.
func (rl *rule) cookiesAndVary(h http.Header, v *verdict) detail {
	if len(h.Values("Set-Cookie")) > 0 {
		if rl.setCookie != config.SetCookieStrip {
			return detailSetCookie
		}
		v.stripCookies = true
	}
	if _, star := parseVary(h); star {
		return detailVaryStar
	}
	return ""
}

// staleWindow is the origin's window capped by the rule's; in Override
// mode the rule's window is also the default.
func (rl *rule) staleWindow(origin, cap time.Duration) time.Duration {
	if origin < 0 {
		if rl.mode == config.CacheOverride {
			return cap
		}
		return 0
	}
	return min(origin, cap)
}

// explicitLifetime is RFC 9111 4.2.1: s-maxage (a shared cache), else
// max-age, else Expires − Date; a targeted field's directives replace
// Expires too (RFC 9213 2.1). Expires that does not parse, "0" included,
// is in the past (5.3).
func explicitLifetime(d directives, h http.Header, date time.Time) (bool, time.Duration) {
	switch {
	case d.SMaxAge >= 0:
		return true, d.SMaxAge
	case d.MaxAge >= 0:
		return true, d.MaxAge
	case d.Targeted != "":
		return false, 0
	}
	exp := h.Values("Expires")
	if len(exp) == 0 {
		return false, 0
	}
	t, err := http.ParseTime(exp[0])
	if err != nil || len(exp) > 1 {
		// Several Expires lines: RFC 9111 4.2.1 allows taking the first or
		// treating the response as stale; stale is the safe reading.
		return true, 0
	}
	return true, max(t.Sub(date), 0)
}

// heuristicLifetime is a tenth of the time between Last-Modified and Date
// (RFC 9111 4.2.2), or 0 without a usable Last-Modified.
func heuristicLifetime(h http.Header, date time.Time) time.Duration {
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil || !lm.Before(date) {
		return 0
	}
	return date.Sub(lm) / heuristicFraction
}

// responseDate is the response's Date, or received when it has none or an
// unreadable one (RFC 9110 6.6.1).
func responseDate(h http.Header, received time.Time) time.Time {
	if t, err := http.ParseTime(h.Get("Date")); err == nil {
		return t
	}
	return received
}

// initialAge is the corrected initial age of a response (RFC 9111 4.2.3):
// the larger of its apparent age (from Date) and its Age plus the time the
// request took.
func initialAge(h http.Header, requested, received time.Time) time.Duration {
	var ageValue time.Duration
	if vs := h.Values("Age"); len(vs) > 0 {
		if n := deltaOr(vs[0], true, 0); n > 0 {
			ageValue = n
		}
	}
	apparent := max(received.Sub(responseDate(h, received)), 0)
	corrected := ageValue + max(received.Sub(requested), 0)
	return max(apparent, corrected)
}
