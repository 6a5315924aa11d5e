package cache

// Tests derived from RFC 9111 (HTTP Caching), requirement by requirement,
// each named after its section. Every one runs against both tiers through
// the real middleware, a real reverse proxy and a real redis-server (see
// bothTiers). docs/caching.md's conformance table names them.

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// §3: a response with neither explicit freshness nor a validator is not
// worth storing (RFC 9111 3, "some caches will not store").
func TestRFC9111_3_NoFreshnessNoValidatorNotStored(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x"), func(t *testing.T, s tierSidecar) {
		s.wantNotStored(t, "/plain", detailNoFreshness)
	})
}

// §3: any final status with explicit freshness may be stored.
func TestRFC9111_3_ExplicitFreshnessAnyStatus(t *testing.T) {
	for _, status := range []int{302, 307, 400, 403, 500, 503} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			h := answer(status, "x", "Cache-Control", "max-age=60", "Location", "/elsewhere")
			bothTiers(t, []config.CacheRule{rfcRule()}, h, func(t *testing.T, s tierSidecar) {
				if r := s.wantStored(t, "/s"); r.status != status {
					t.Errorf("hit status %d, want %d", r.status, status)
				}
			})
		})
	}
}

// §3, §4.2.2: a status that is not heuristically cacheable needs explicit
// freshness; Last-Modified alone does not do.
func TestRFC9111_3_NonHeuristicStatusNotStoredWithoutFreshness(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(302, "x", "Location", "/a", "Last-Modified", ago(240*time.Hour)), func(t *testing.T, s tierSidecar) {
		s.wantNotStored(t, "/redirect", detailStatus)
	})
}

// §3, §5.2.2.5: no-store in the response.
func TestRFC9111_5_2_2_5_NoStore(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "no-store, max-age=60"), func(t *testing.T, s tierSidecar) {
		s.wantNotStored(t, "/ns", detailNoStore)
	})
}

// §5.2.2.3: must-understand lets a cache that knows the status ignore
// no-store; an unknown status is never stored.
func TestRFC9111_5_2_2_3_MustUnderstand(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		status := 200
		if r.URL.Path == "/unknown" {
			status = 299
		}
		answer(status, "x", "Cache-Control", "no-store, must-understand, max-age=60")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/known")
		s.wantNotStored(t, "/unknown", detailStatus)
	})
}

// §3, §5.2.2.7: private is never stored by a shared cache (nor by its
// in-process tier, which all users of the pod share).
func TestRFC9111_5_2_2_7_PrivateNotStored(t *testing.T) {
	for _, cc := range []string{"private, max-age=60", `private="Set-Cookie", max-age=60`} {
		bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", cc), func(t *testing.T, s tierSidecar) {
			s.wantNotStored(t, "/p", detailPrivate)
		})
	}
}

// §3.5: a response to a request with Authorization is stored only when
// must-revalidate, public or s-maxage allows shared reuse; then it is
// reused for other requests too.
func TestRFC9111_3_5_AuthorizationNeedsExplicitPermission(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		cc := map[string]string{"/plain": "max-age=60", "/public": "public, max-age=60", "/smaxage": "s-maxage=60", "/mustreval": "max-age=60, must-revalidate", "/proxyreval": "max-age=60, proxy-revalidate"}[r.URL.Path]
		answer(200, "for "+r.Header.Get("Authorization"), "Cache-Control", cc)(w, r)
	}, func(t *testing.T, s tierSidecar) {
		auth := []string{"Authorization", "Basic YWxpY2U6cHc="}
		s.wantNotStored(t, "/plain", detailAuthorization, auth...)
		s.wantNotStored(t, "/proxyreval", detailAuthorization, auth...)
		for _, p := range []string{"/public", "/smaxage", "/mustreval"} {
			s.wantStored(t, p, auth...)
			if r := s.get(t, p); r.xcache != "HIT" {
				t.Errorf("%s stored for an authorized request: anonymous GET %s, want HIT (the origin allowed shared reuse)", p, r.xcache)
			}
		}
	})
}

// §3.5: an entry stored from an anonymous request, without a directive
// allowing shared reuse, is not served to a request with Authorization.
func TestRFC9111_3_5_AuthorizedRequestNotServedAnonymousEntry(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		answer(200, "for "+r.Header.Get("Authorization"), "Cache-Control", "max-age=60")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/page")
		if r := s.get(t, "/page", "Authorization", "Bearer x"); r.xcache == "HIT" || r.body != "for Bearer x" {
			t.Errorf("authorized GET: %s %q, want the app's own answer", r.xcache, r.body)
		}
	})
}

// The review's leak: with varyBySubject, a request with Authorization: Basic
// (no session) was keyed like an anonymous one and its answer served to
// anonymous users.
func TestRFC9111_3_5_VaryBySubjectBasicAuthDoesNotLeak(t *testing.T) {
	rl := rfcRule()
	rl.VaryBySubject = true
	bothTiers(t, []config.CacheRule{rl}, func(w http.ResponseWriter, r *http.Request) {
		body := "anonymous"
		if r.Header.Get("Authorization") != "" {
			body = "secret of " + r.Header.Get("Authorization")
		}
		answer(200, body, "Cache-Control", "max-age=60")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		if r := s.get(t, "/me", "Authorization", "Basic YWxpY2U6cHc="); !strings.Contains(r.cacheStatus, "detail=authorization") {
			t.Errorf("Basic-authorized GET: %q, want not stored (authorization)", r.cacheStatus)
		}
		if r := s.get(t, "/me"); r.body != "anonymous" {
			t.Fatalf("anonymous GET after a Basic-authorized one: %q — the authorized answer leaked", r.body)
		}
	})
}

// §3.1: Connection, the fields it names and the other hop-by-hop fields are
// not stored; everything else is, unknown fields included.
func TestRFC9111_3_1_StoredHeaderFields(t *testing.T) {
	h := http.Header{
		"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Keep-Alive": {"timeout=5"}, "Proxy-Authenticate": {"Basic"},
		"Transfer-Encoding": {"chunked"}, "X-Unknown-Field": {"kept"}, "Etag": {`"a"`}, "Age": {"3"},
	}
	got := storedHeader(h)
	for _, gone := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authenticate", "Transfer-Encoding", "Age"} {
		if got.Get(gone) != "" {
			t.Errorf("%s stored", gone)
		}
	}
	if got.Get("X-Unknown-Field") != "kept" || got.Get("Etag") == "" {
		t.Errorf("end-to-end fields lost: %v", got)
	}
}

// §4: a stored response is reused only for requests whose Vary-nominated
// fields match; §4.1: Vary: * never matches.
func TestRFC9111_4_1_VaryNominatedFieldsMustMatch(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/star" {
			answer(200, "x", "Cache-Control", "max-age=60", "Vary", "*")(w, r)
			return
		}
		answer(200, "in "+r.Header.Get("Accept-Language"), "Cache-Control", "max-age=60", "Vary", "Accept-Language")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/greet", "Accept-Language", "en")
		if r := s.get(t, "/greet", "Accept-Language", "de"); r.xcache == "HIT" || r.body != "in de" {
			t.Errorf("other language: %s %q", r.xcache, r.body)
		}
		// Whitespace and line folding are normalised (§4.1).
		if r := s.get(t, "/greet", "Accept-Language", " en "); r.xcache != "HIT" || r.body != "in en" {
			t.Errorf("same language, other spelling: %s %q", r.xcache, r.body)
		}
		s.wantNotStored(t, "/star", detailVaryStar)
	})
}

// §4: an answer from the cache carries Age, the entry's current age.
func TestRFC9111_4_AgeOnEveryReuse(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=600", "Age", "100"), func(t *testing.T, s tierSidecar) {
		r := s.wantStored(t, "/aged")
		if age, _ := strconv.Atoi(r.header.Get("Age")); age < 100 || age > 110 {
			t.Errorf("Age = %q, want ~100 (the origin's plus the time stored)", r.header.Get("Age"))
		}
	})
}

// §4: unsafe methods are written through to the origin.
func TestRFC9111_4_UnsafeMethodsWriteThrough(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "PROPPATCH"} {
			before := s.up.calls.Load()
			s.do(t, m, "/w")
			s.do(t, m, "/w")
			if got := s.up.calls.Load() - before; got != 2 {
				t.Errorf("%s reached the app %d times of 2", m, got)
			}
		}
	})
}

// §4.2.1: s-maxage wins over max-age in a shared cache, max-age over
// Expires.
func TestRFC9111_4_2_1_FreshnessPrecedence(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/smaxage":
			answer(200, "x", "Cache-Control", "max-age=0, s-maxage=60")(w, r)
		case "/smaxage-zero":
			answer(200, "x", "Cache-Control", "max-age=60, s-maxage=0")(w, r)
		case "/maxage":
			answer(200, "x", "Cache-Control", "max-age=60", "Expires", ago(time.Hour))(w, r)
		}
	}, func(t *testing.T, s tierSidecar) {
		if r := s.wantStored(t, "/smaxage"); !strings.Contains(r.cacheStatus, "ttl=5") {
			t.Errorf("s-maxage=60: %q, want ttl≈59", r.cacheStatus)
		}
		s.wantNotStored(t, "/smaxage-zero", detailExpired)
		s.wantStored(t, "/maxage")
	})
}

// §4.2.1: without max-age, Expires − Date is the lifetime (origin clock).
func TestRFC9111_4_2_1_ExpiresMinusDate(t *testing.T) {
	date := time.Now().Add(-30 * time.Second).UTC()
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x",
		"Date", date.Format(http.TimeFormat), "Expires", date.Add(90*time.Second).Format(http.TimeFormat)), func(t *testing.T, s tierSidecar) {
		r := s.wantStored(t, "/exp")
		ttl := cacheStatusTTL(t, r.cacheStatus)
		if ttl < 50 || ttl > 61 {
			t.Errorf("ttl = %d, want ≈60 (90s lifetime, 30s old by Date)", ttl)
		}
	})
}

// §5.3: Expires in the past, "0" and an unparsable date all mean "already
// expired" (the review saw all three served as hits).
func TestRFC9111_5_3_ExpiresPastZeroAndMalformed(t *testing.T) {
	for name, exp := range map[string]string{"past": ago(time.Hour), "zero": "0", "malformed": "next tuesday"} {
		t.Run(name, func(t *testing.T) {
			bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Expires", exp), func(t *testing.T, s tierSidecar) {
				s.wantNotStored(t, "/e", detailExpired)
			})
		})
	}
}

// §4.2.1 with the rule's ttl as the operator's cap.
func TestRFC9111_4_2_1_RuleTTLCapsLifetime(t *testing.T) {
	rl := rfcRule()
	rl.TTL = config.Duration(10 * time.Second)
	bothTiers(t, []config.CacheRule{rl}, answer(200, "x", "Cache-Control", "max-age=86400"), func(t *testing.T, s tierSidecar) {
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/capped").cacheStatus); ttl > 10 {
			t.Errorf("ttl = %d, want ≤ the rule's 10s", ttl)
		}
	})
}

// §4.2.2: heuristic freshness only from Last-Modified (10% of its age,
// capped by the rule), for heuristically cacheable statuses or public.
func TestRFC9111_4_2_2_HeuristicFreshness(t *testing.T) {
	rl := rfcRule()
	bothTiers(t, []config.CacheRule{rl}, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/lm":
			answer(200, "x", "Last-Modified", ago(10*time.Hour))(w, r) // 10% = 1h, the cap
		case "/lm-short":
			answer(200, "x", "Last-Modified", ago(100*time.Second))(w, r) // 10 s
		case "/public-302":
			answer(302, "x", "Cache-Control", "public", "Location", "/a", "Last-Modified", ago(1000*time.Second))(w, r)
		}
	}, func(t *testing.T, s tierSidecar) {
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/lm").cacheStatus); ttl < 3500 || ttl > 3600 {
			t.Errorf("/lm ttl = %d, want ≈3600 (10%% of 10h, capped at the rule's 1h)", ttl)
		}
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/lm-short").cacheStatus); ttl < 7 || ttl > 10 {
			t.Errorf("/lm-short ttl = %d, want ≈10 (10%% of 100s)", ttl)
		}
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/public-302").cacheStatus); ttl < 97 || ttl > 100 {
			t.Errorf("/public-302 ttl = %d, want ≈100: public makes a 302 heuristically cacheable (§5.2.2.9)", ttl)
		}
	})
}

// §4.2.3: the origin's Age and the Date-based apparent age count against
// the lifetime.
func TestRFC9111_4_2_3_AgeCountsAgainstLifetime(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/age" {
			answer(200, "x", "Cache-Control", "max-age=60", "Age", "50")(w, r)
			return
		}
		answer(200, "x", "Cache-Control", "max-age=60", "Date", ago(40*time.Second))(w, r)
	}, func(t *testing.T, s tierSidecar) {
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/age").cacheStatus); ttl > 10 {
			t.Errorf("Age 50 of 60: ttl = %d, want ≤ 10", ttl)
		}
		if ttl := cacheStatusTTL(t, s.wantStored(t, "/date").cacheStatus); ttl > 20 {
			t.Errorf("Date 40s ago of 60: ttl = %d, want ≤ 20", ttl)
		}
	})
}

// staleApp answers with a response already 120 s old by its Date, fresh for
// 60 s, with an ETag, and the given extra Cache-Control; once failing is
// set it answers status instead.
type staleApp struct {
	seen
	cc      string
	failing func() int
}

func (a *staleApp) handler() http.HandlerFunc {
	return a.wrap(func(w http.ResponseWriter, r *http.Request) {
		if a.failing != nil {
			if st := a.failing(); st != 0 {
				w.WriteHeader(st)
				return
			}
		}
		answer(200, "stored", "Date", ago(120*time.Second), "ETag", `"v1"`, "Cache-Control", "max-age=60"+a.cc)(w, r)
	})
}

// §4.2.4: a stale response is not served unless the origin or the client
// allowed it, not even when the origin fails.
func TestRFC9111_4_2_4_NoStaleWithoutPermission(t *testing.T) {
	failing := false
	app := &staleApp{failing: func() int {
		if failing {
			return http.StatusInternalServerError
		}
		return 0
	}}
	bothTiers(t, []config.CacheRule{rfcRule()}, app.handler(), func(t *testing.T, s tierSidecar) {
		failing = false
		s.get(t, "/s")
		failing = true
		if r := s.get(t, "/s"); r.status != http.StatusInternalServerError {
			t.Errorf("origin failing, no stale-if-error: %d %s %q, want the 500", r.status, r.xcache, r.cacheStatus)
		}
	})
}

// §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: must-revalidate, proxy-revalidate
// and s-maxage forbid stale serving, whatever stale-if-error or
// stale-while-revalidate say.
func TestRFC9111_5_2_2_2_MustRevalidateNeverServedStale(t *testing.T) {
	for _, cc := range []string{", must-revalidate", ", proxy-revalidate", ", s-maxage=60"} {
		t.Run(strings.TrimPrefix(cc, ", "), func(t *testing.T) {
			failing := false
			app := &staleApp{cc: cc + ", stale-if-error=3600, stale-while-revalidate=3600", failing: func() int {
				if failing {
					return http.StatusServiceUnavailable
				}
				return 0
			}}
			bothTiers(t, []config.CacheRule{rfcRule()}, app.handler(), func(t *testing.T, s tierSidecar) {
				failing = false
				s.get(t, "/mr")
				failing = true
				if r := s.get(t, "/mr"); r.status != http.StatusServiceUnavailable || r.xcache == "STALE" {
					t.Errorf("stale %s entry, origin failing: %d %s, want the origin's 503", cc, r.status, r.xcache)
				}
			})
		})
	}
}

// §4.3.1: revalidation sends the stored entity tag and Last-Modified.
func TestRFC9111_4_3_1_ConditionalRequestCarriesValidators(t *testing.T) {
	lm := ago(24 * time.Hour)
	app := &seen{}
	bothTiers(t, []config.CacheRule{rfcRule()}, app.wrap(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		answer(200, "body", "Date", ago(120*time.Second), "Cache-Control", "max-age=60", "ETag", `"v1"`, "Last-Modified", lm)(w, r)
	}), func(t *testing.T, s tierSidecar) {
		s.get(t, "/v")
		r := s.get(t, "/v")
		h := app.last()
		if h.Get("If-None-Match") != `"v1"` || h.Get("If-Modified-Since") != lm {
			t.Errorf("validation request: If-None-Match %q If-Modified-Since %q", h.Get("If-None-Match"), h.Get("If-Modified-Since"))
		}
		if r.status != 200 || r.body != "body" || !strings.Contains(r.cacheStatus, "fwd-status=304") {
			t.Errorf("answer after a 304: %d %q %q, want the stored body", r.status, r.body, r.cacheStatus)
		}
	})
}

// §4.3.3: a full response to a validation request replaces the entry.
func TestRFC9111_4_3_3_FullResponseReplacesEntry(t *testing.T) {
	version := "v1"
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		answer(200, version, "Date", ago(120*time.Second), "Cache-Control", "max-age=60", "ETag", `"`+version+`"`)(w, r)
	}, func(t *testing.T, s tierSidecar) {
		version = "v1"
		s.get(t, "/r")
		version = "v2"
		if r := s.get(t, "/r"); r.body != "v2" || !strings.Contains(r.cacheStatus, "stored") {
			t.Errorf("after a 200 to the validation: %q %q", r.body, r.cacheStatus)
		}
	})
}

// §4.3.4, §3.2: a 304 freshens the stored response, updating its header
// fields (not Content-Length, not the body); the next request is a hit.
func TestRFC9111_4_3_4_NotModifiedFreshensEntry(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Cache-Control", "max-age=300")
			w.Header().Set("X-Revision", "2")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		answer(200, "original", "Date", ago(120*time.Second), "Cache-Control", "max-age=60", "ETag", `"v1"`, "X-Revision", "1")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.get(t, "/f")
		r := s.get(t, "/f")
		if r.body != "original" || r.header.Get("X-Revision") != "2" || r.header.Get("Content-Length") != "8" {
			t.Errorf("freshened answer: %q X-Revision %q Content-Length %q", r.body, r.header.Get("X-Revision"), r.header.Get("Content-Length"))
		}
		before := s.up.calls.Load()
		if r := s.get(t, "/f"); r.xcache != "HIT" || r.header.Get("X-Revision") != "2" || s.up.calls.Load() != before {
			t.Errorf("after freshening: %s %q, want a hit with the updated fields", r.xcache, r.cacheStatus)
		}
	})
}

// §4.3.4: a 304 whose strong validator does not match the stored one must
// not update it; the cache asks again without conditions.
func TestRFC9111_4_3_4_MismatchedValidatorDoesNotUpdate(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			w.Header().Set("ETag", `"other"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		answer(200, "full", "Date", ago(120*time.Second), "Cache-Control", "max-age=60", "ETag", `"v1"`)(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.get(t, "/m")
		before := s.up.calls.Load()
		if r := s.get(t, "/m"); r.status != 200 || r.body != "full" || s.up.calls.Load()-before != 2 {
			t.Errorf("mismatched 304: %d %q after %d app calls, want a full refetch (2 calls)", r.status, r.body, s.up.calls.Load()-before)
		}
	})
}

// §4.3.2: the cache answers a client's conditionals from a fresh entry;
// If-Modified-Since falls back to the stored Date without Last-Modified.
func TestRFC9111_4_3_2_ClientConditionalsAnsweredFromEntry(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=1200", "ETag", `"v1"`, "Date", ago(10*time.Minute)), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/c")
		before := s.up.calls.Load()
		if r := s.get(t, "/c", "If-None-Match", `W/"v1"`); r.status != http.StatusNotModified {
			t.Errorf("If-None-Match (weak): %d", r.status)
		}
		if r := s.get(t, "/c", "If-Modified-Since", ago(time.Minute)); r.status != http.StatusNotModified {
			t.Errorf("If-Modified-Since after Date: %d", r.status)
		}
		if r := s.get(t, "/c", "If-Modified-Since", ago(20*time.Minute)); r.status != 200 {
			t.Errorf("If-Modified-Since before Date: %d", r.status)
		}
		if s.up.calls.Load() != before {
			t.Error("conditionals went to the app")
		}
	})
}

// §4.3.2: If-Match and If-Unmodified-Since apply to the origin only.
func TestRFC9111_4_3_2_OriginOnlyPreconditionsForwarded(t *testing.T) {
	app := &seen{}
	bothTiers(t, []config.CacheRule{rfcRule()}, app.wrap(answer(200, "x", "Cache-Control", "max-age=60")), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/pc")
		if r := s.get(t, "/pc", "If-Match", `"a"`); r.xcache != "BYPASS" || app.last().Get("If-Match") != `"a"` {
			t.Errorf("If-Match: %s, app saw %q", r.xcache, app.last().Get("If-Match"))
		}
	})
}

// §5.2.2.4: no-cache is stored but validated on every use.
func TestRFC9111_5_2_2_4_NoCacheValidatesEveryUse(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nv" {
			answer(200, "x", "Cache-Control", "no-cache, max-age=60")(w, r)
			return
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		answer(200, "validated", "Cache-Control", "no-cache, max-age=60", "ETag", `"v1"`)(w, r)
	}, func(t *testing.T, s tierSidecar) {
		s.get(t, "/nc")
		for range 2 {
			before := s.up.calls.Load()
			r := s.get(t, "/nc")
			if s.up.calls.Load()-before != 1 || r.body != "validated" || !strings.Contains(r.cacheStatus, "fwd-status=304") {
				t.Errorf("no-cache entry reused: %s %q %q, want validated (a 304 from the app)", r.xcache, r.body, r.cacheStatus)
			}
		}
		s.wantNotStored(t, "/nv", detailNoCache)
	})
}

// §4.4: a non-error response to an unsafe request invalidates the target
// URI, with or without an invalidate rule; an error response does not.
func TestRFC9111_4_4_UnsafeRequestInvalidatesTarget(t *testing.T) {
	status := 200
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(status)
			return
		}
		answer(200, "x", "Cache-Control", "max-age=60")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		for _, st := range []int{500, 404} {
			status = st
			s.get(t, "/t")
			s.do(t, http.MethodPost, "/t")
			if r := s.get(t, "/t"); r.xcache != "HIT" {
				t.Errorf("after a POST answered %d: %s, want HIT (errors invalidate nothing)", st, r.xcache)
			}
		}
		for _, st := range []int{200, 204, 303} {
			status = st
			s.get(t, "/t")
			s.do(t, http.MethodPost, "/t")
			if r := s.get(t, "/t"); r.xcache != "MISS" {
				t.Errorf("after a POST answered %d: %s, want MISS", st, r.xcache)
			}
		}
	})
}

// §4.4: Location and Content-Location of the same origin are invalidated
// too; another origin's never are.
func TestRFC9111_4_4_LocationAndContentLocation(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			switch r.URL.Path {
			case "/orders":
				w.Header().Set("Location", "/orders/7")
				w.Header().Set("Content-Location", "http://shop.test/orders/7/summary")
			case "/elsewhere":
				w.Header().Set("Location", "http://other.example/orders/7")
				w.Header().Set("Content-Location", "https://shop.test/orders/7/summary")
			}
			w.WriteHeader(http.StatusCreated)
			return
		}
		answer(200, "x", "Cache-Control", "max-age=60")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		fill := func() {
			for _, p := range []string{"/orders/7", "/orders/7/summary"} {
				s.get(t, p)
			}
		}
		fill()
		s.do(t, http.MethodPost, "/elsewhere")
		for _, p := range []string{"/orders/7", "/orders/7/summary"} {
			if r := s.get(t, p); r.xcache != "HIT" {
				t.Errorf("%s after a write naming it on another origin: %s, want HIT", p, r.xcache)
			}
		}
		s.do(t, http.MethodPost, "/orders")
		for _, p := range []string{"/orders/7", "/orders/7/summary"} {
			if r := s.get(t, p); r.xcache != "MISS" {
				t.Errorf("%s after a write naming it: %s, want MISS", p, r.xcache)
			}
		}
	})
}

// §5.2.1.1: a request's max-age refuses an older entry.
func TestRFC9111_5_2_1_1_RequestMaxAge(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=600", "Age", "100"), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/ma")
		if r := s.get(t, "/ma", "Cache-Control", "max-age=50"); r.xcache == "HIT" {
			t.Errorf("max-age=50 on a 100 s old entry: %s", r.xcache)
		}
	})
}

// §5.2.1.2: max-stale lets the client take a stale entry, within its bound.
func TestRFC9111_5_2_1_2_RequestMaxStale(t *testing.T) {
	app := &staleApp{}
	bothTiers(t, []config.CacheRule{rfcRule()}, app.handler(), func(t *testing.T, s tierSidecar) {
		s.get(t, "/st")
		before := s.up.calls.Load()
		for _, cc := range []string{"max-stale", "max-stale=600"} {
			if r := s.get(t, "/st", "Cache-Control", cc); r.xcache != "STALE" || !strings.Contains(r.cacheStatus, "detail=max-stale") {
				t.Errorf("%s: %s %q, want the stale entry", cc, r.xcache, r.cacheStatus)
			}
		}
		if s.up.calls.Load() != before {
			t.Error("max-stale answers went to the app")
		}
		if r := s.get(t, "/st", "Cache-Control", "max-stale=5"); r.xcache == "STALE" {
			t.Errorf("max-stale=5 on an entry 60 s stale: %s", r.xcache)
		}
	})
}

// §5.2.1.3: min-fresh refuses an entry that will not stay fresh that long.
func TestRFC9111_5_2_1_3_RequestMinFresh(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/mf")
		if r := s.get(t, "/mf", "Cache-Control", "min-fresh=30"); r.xcache != "HIT" {
			t.Errorf("min-fresh=30 with ~60 s left: %s", r.xcache)
		}
		if r := s.get(t, "/mf", "Cache-Control", "min-fresh=120"); r.xcache == "HIT" {
			t.Errorf("min-fresh=120 with ~60 s left: %s", r.xcache)
		}
	})
}

// §5.2.1.4 and §5.4: a request's no-cache (or Pragma: no-cache without
// Cache-Control) goes to the origin.
func TestRFC9111_5_2_1_4_RequestNoCache(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/rn")
		for _, h := range [][2]string{{"Cache-Control", "no-cache"}, {"Pragma", "no-cache"}} {
			before := s.up.calls.Load()
			if r := s.get(t, "/rn", h[0], h[1]); r.xcache == "HIT" || s.up.calls.Load() == before || !strings.Contains(r.cacheStatus, "fwd=request") {
				t.Errorf("%s: no-cache: %s %q, want fwd=request", h[0], r.xcache, r.cacheStatus)
			}
		}
	})
}

// §5.2.1.5: a request's no-store: nothing of its response is stored, but a
// stored response may answer it.
func TestRFC9111_5_2_1_5_RequestNoStore(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		s.wantNotStored(t, "/a", detailRequestNoStore, "Cache-Control", "no-store")
		s.wantStored(t, "/b")
		if r := s.get(t, "/b", "Cache-Control", "no-store"); r.xcache != "HIT" {
			t.Errorf("no-store request with a stored response: %s, want HIT", r.xcache)
		}
	})
}

// §5.2.1.7: only-if-cached is answered from the cache or with 504, never
// by the origin.
func TestRFC9111_5_2_1_7_OnlyIfCached(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		before := s.up.calls.Load()
		if r := s.get(t, "/o", "Cache-Control", "only-if-cached"); r.status != http.StatusGatewayTimeout || !strings.Contains(r.cacheStatus, "detail=only-if-cached") {
			t.Errorf("only-if-cached miss: %d %q, want 504", r.status, r.cacheStatus)
		}
		if s.up.calls.Load() != before {
			t.Error("only-if-cached reached the app")
		}
		s.wantStored(t, "/o")
		if r := s.get(t, "/o", "Cache-Control", "only-if-cached"); r.status != 200 || r.xcache != "HIT" {
			t.Errorf("only-if-cached hit: %d %s", r.status, r.xcache)
		}
	})
}

// §5.2.3: unknown directives are ignored.
func TestRFC9111_5_2_3_UnknownDirectivesIgnored(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", `max-age=60, x-made-up="a, b", immutable`), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/u")
	})
}

// cacheStatusTTL reads the ttl parameter of a Cache-Status.
func cacheStatusTTL(t *testing.T, cs string) int {
	t.Helper()
	for p := range strings.SplitSeq(cs, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(p), "ttl="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("ttl %q", v)
			}
			return n
		}
	}
	t.Fatalf("no ttl in %q", cs)
	return 0
}
