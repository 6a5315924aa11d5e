package cache

// Tests derived from RFC 5861 (stale-while-revalidate, stale-if-error),
// RFC 9213 (targeted cache-control fields) and RFC 9110 §13.1.5 and §14
// (If-Range, range requests), named after their sections, on both tiers.

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// RFC 5861 §3: within the origin's stale-while-revalidate window a stale
// entry is served at once while it is revalidated in the background.
func TestRFC5861_3_StaleWhileRevalidate(t *testing.T) {
	version := "old"
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		answer(200, version, "Date", ago(120*time.Second), "Cache-Control", "max-age=60, stale-while-revalidate=600")(w, r)
	}, func(t *testing.T, s tierSidecar) {
		version = "old"
		s.get(t, "/swr")
		version = "new"
		if r := s.get(t, "/swr"); r.xcache != "STALE" || r.body != "old" || !strings.Contains(r.cacheStatus, "detail=stale-while-revalidate") {
			t.Errorf("stale within the window: %s %q %q", r.xcache, r.body, r.cacheStatus)
		}
		eventually(t, "the background revalidation to store the new body", func() bool {
			r := s.get(t, "/swr")
			return r.body == "new"
		})
	})
}

// RFC 5861 §3 with the rule's window as the cap: an origin cannot make
// the sidecar serve stale longer than the operator allows.
func TestRFC5861_3_RuleCapsStaleWhileRevalidate(t *testing.T) {
	rl := rfcRule()
	rl.StaleWhileRevalidate = new(config.Duration(30 * time.Second))
	bothTiers(t, []config.CacheRule{rl}, answer(200, "x", "Date", ago(120*time.Second), "Cache-Control", "max-age=60, stale-while-revalidate=600"), func(t *testing.T, s tierSidecar) {
		s.get(t, "/cap")
		if r := s.get(t, "/cap"); r.xcache == "STALE" {
			t.Errorf("60 s stale, origin allows 600, rule caps at 30: %s", r.xcache)
		}
	})
}

// RFC 5861 §4: within stale-if-error a stale entry answers when the origin
// errs (500, 502, 503, 504), never for other statuses; a request's own
// stale-if-error counts too.
func TestRFC5861_4_StaleIfError(t *testing.T) {
	failWith := 0
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		if failWith != 0 {
			w.WriteHeader(failWith)
			return
		}
		cc := "max-age=60, stale-if-error=600"
		if r.URL.Path == "/plain" {
			cc = "max-age=60"
		}
		answer(200, "good", "Date", ago(120*time.Second), "Cache-Control", cc, "ETag", `"g"`)(w, r)
	}, func(t *testing.T, s tierSidecar) {
		failWith = 0
		s.get(t, "/sie")
		s.get(t, "/plain")
		for _, st := range []int{500, 502, 503, 504} {
			failWith = st
			if r := s.get(t, "/sie"); r.status != 200 || r.body != "good" || r.xcache != "STALE" || !strings.Contains(r.cacheStatus, "detail=stale-if-error") {
				t.Errorf("origin %d: %d %q %s %q, want the stale 200", st, r.status, r.body, r.xcache, r.cacheStatus)
			}
		}
		for _, st := range []int{404, 501} {
			failWith = st
			if r := s.get(t, "/sie"); r.status != st {
				t.Errorf("origin %d (not an error RFC 5861 covers): %d %s", st, r.status, r.xcache)
			}
		}
		failWith = 503
		if r := s.get(t, "/plain"); r.status != 503 {
			t.Errorf("no stale-if-error anywhere: %d, want the 503", r.status)
		}
		if r := s.get(t, "/plain", "Cache-Control", "stale-if-error=600"); r.status != 200 || r.xcache != "STALE" {
			t.Errorf("request stale-if-error: %d %s, want the stale 200", r.status, r.xcache)
		}
	})
}

// The override mode: for origins that send no caching headers, the rule's
// ttl and stale windows are the defaults (the behaviour before Standard
// mode); Standard mode stores nothing of such an origin.
func TestOverrideModeKeepsTheOldBehaviour(t *testing.T) {
	failing := false
	h := func(w http.ResponseWriter, r *http.Request) {
		if failing {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		answer(200, "silent origin")(w, r)
	}
	rl := rfcRule()
	rl.Mode = config.CacheOverride
	rl.HonorCacheControl = true
	rl.TTL = config.Duration(time.Second)
	rl.StaleIfError = new(config.Duration(time.Hour))
	bothTiers(t, []config.CacheRule{rl}, h, func(t *testing.T, s tierSidecar) {
		failing = false
		s.wantStored(t, "/o")
		failing = true
		eventually(t, "the stale-if-error default to apply", func() bool {
			r := s.get(t, "/o")
			return r.status == 200 && r.xcache == "STALE"
		})
	})
	std := rfcRule()
	bothTiers(t, []config.CacheRule{std}, h, func(t *testing.T, s tierSidecar) {
		failing = false
		s.wantNotStored(t, "/o", detailNoFreshness)
	})
	// Without honorCacheControl, even no-store is ignored (as before).
	ignore := rl
	ignore.HonorCacheControl = false
	bothTiers(t, []config.CacheRule{ignore}, answer(200, "x", "Cache-Control", "no-store"), func(t *testing.T, s tierSidecar) {
		s.wantStored(t, "/i")
	})
}

// RFC 9213 §2.1: CDN-Cache-Control, when valid and non-empty, replaces
// Cache-Control and Expires for this cache; it is passed on to clients.
func TestRFC9213_2_1_CDNCacheControlTakesPrecedence(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cdn":
			answer(200, "x", "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60")(w, r)
		case "/cdn-expires":
			answer(200, "x", "Expires", ago(time.Hour), "CDN-Cache-Control", "max-age=60")(w, r)
		case "/cdn-no-store":
			answer(200, "x", "Cache-Control", "max-age=60", "CDN-Cache-Control", "no-store")(w, r)
		}
	}, func(t *testing.T, s tierSidecar) {
		if r := s.wantStored(t, "/cdn"); r.header.Get("CDN-Cache-Control") != "max-age=60" || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("targeted fields must be passed on: CDN-Cache-Control %q Cache-Control %q", r.header.Get("CDN-Cache-Control"), r.header.Get("Cache-Control"))
		}
		s.wantStored(t, "/cdn-expires")
		s.wantNotStored(t, "/cdn-no-store", detailNoStore)
	})
}

// RFC 9213 §2.1: Gatehouse-Cache-Control targets this sidecar alone: it
// comes first in the target list and is not forwarded to clients.
func TestRFC9213_2_1_GatehouseCacheControlTargetsOnlyTheSidecar(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "no-store", "CDN-Cache-Control", "no-store", "Gatehouse-Cache-Control", "max-age=60"), func(t *testing.T, s tierSidecar) {
		first := s.get(t, "/g")
		r := s.wantStoredAfter(t, "/g", first)
		for _, res := range []resp{first, r} {
			if res.header.Get("Gatehouse-Cache-Control") != "" {
				t.Errorf("Gatehouse-Cache-Control reached the client: %q", res.header.Get("Gatehouse-Cache-Control"))
			}
		}
	})
}

// RFC 9213 §2.2: a targeted field that is not a valid Structured Field
// Dictionary is ignored, and Cache-Control applies.
func TestRFC9213_2_2_InvalidTargetedFieldIgnored(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, "x", "Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60,,=="), func(t *testing.T, s tierSidecar) {
		s.wantNotStored(t, "/bad", detailNoStore)
	})
}

func (s tierSidecar) wantStoredAfter(t *testing.T, path string, first resp) resp {
	t.Helper()
	if !strings.Contains(first.cacheStatus, "stored") {
		t.Fatalf("first GET %s: %q, want stored", path, first.cacheStatus)
	}
	r := s.get(t, path)
	if r.xcache != "HIT" {
		t.Fatalf("second GET %s: %s, want HIT", path, r.xcache)
	}
	return r
}

const rangeBody = "0123456789abcdefghij"

func rangeApp() http.HandlerFunc {
	return answer(200, rangeBody, "Cache-Control", "max-age=600", "ETag", `"r1"`, "Content-Type", "text/plain",
		"Last-Modified", ago(time.Hour), "Date", ago(time.Second))
}

// RFC 9110 §14.2, §15.3.7: a single range is answered 206 with
// Content-Range from the stored full response — on the miss that fills it
// as on a hit.
func TestRFC9110_14_2_SingleRange(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, rangeApp(), func(t *testing.T, s tierSidecar) {
		for i, spec := range []string{"bytes=0-4", "bytes=0-4"} {
			r := s.get(t, "/r", "Range", spec)
			if r.status != http.StatusPartialContent || r.body != "01234" || r.header.Get("Content-Range") != "bytes 0-4/20" {
				t.Errorf("GET %d %s: %d %q Content-Range %q", i, spec, r.status, r.body, r.header.Get("Content-Range"))
			}
			if r.header.Get("ETag") != `"r1"` || r.header.Get("Cache-Control") == "" || r.header.Get("Date") == "" {
				t.Errorf("206 lacks the 200's ETag, Cache-Control or Date: %v", r.header)
			}
		}
		if got := s.up.calls.Load(); got != 1 {
			t.Errorf("app calls = %d, want 1: the miss fetched the whole representation", got)
		}
	})
}

// RFC 9110 §14.1.1: suffix and open-ended ranges; last-pos past the end is
// clipped.
func TestRFC9110_14_1_1_RangeForms(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, rangeApp(), func(t *testing.T, s tierSidecar) {
		for spec, want := range map[string]string{"bytes=-3": "hij", "bytes=15-": "fghij", "bytes=18-100": "ij", "BYTES=1-1": "1"} {
			if r := s.get(t, "/r", "Range", spec); r.status != 206 || r.body != want {
				t.Errorf("%s: %d %q, want %q", spec, r.status, r.body, want)
			}
		}
	})
}

// RFC 9110 §14.6, §15.3.7.2: several ranges are sent as
// multipart/byteranges, each part with its Content-Type and Content-Range,
// and no Content-Range in the header section.
func TestRFC9110_14_6_MultipleRanges(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, rangeApp(), func(t *testing.T, s tierSidecar) {
		s.get(t, "/r")
		r := s.get(t, "/r", "Range", "bytes=0-1, 10-12")
		mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if r.status != 206 || err != nil || mt != "multipart/byteranges" || r.header.Get("Content-Range") != "" {
			t.Fatalf("%d %q %v Content-Range %q", r.status, r.header.Get("Content-Type"), err, r.header.Get("Content-Range"))
		}
		mr := multipart.NewReader(strings.NewReader(r.body), params["boundary"])
		want := [][2]string{{"bytes 0-1/20", "01"}, {"bytes 10-12/20", "abc"}}
		for i, w := range want {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part %d: %v", i, err)
			}
			b, _ := io.ReadAll(part)
			if part.Header.Get("Content-Range") != w[0] || string(b) != w[1] || part.Header.Get("Content-Type") != "text/plain" {
				t.Errorf("part %d: %q %q %q, want %q %q", i, part.Header.Get("Content-Range"), b, part.Header.Get("Content-Type"), w[0], w[1])
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("more parts than ranges: %v", err)
		}
	})
}

// RFC 9110 §14.2, §15.5.17: no satisfiable range is 416 with
// "Content-Range: bytes */length"; another unit, a malformed or an abusive
// set is ignored (the whole representation).
func TestRFC9110_14_2_UnsatisfiableAndIgnoredRanges(t *testing.T) {
	bothTiers(t, []config.CacheRule{rfcRule()}, rangeApp(), func(t *testing.T, s tierSidecar) {
		s.get(t, "/r")
		if r := s.get(t, "/r", "Range", "bytes=50-60"); r.status != http.StatusRequestedRangeNotSatisfiable || r.header.Get("Content-Range") != "bytes */20" {
			t.Errorf("unsatisfiable: %d %q", r.status, r.header.Get("Content-Range"))
		}
		for _, spec := range []string{"items=0-1", "bytes=5-2", "bytes=a-b", "bytes=0-5,1-6,2-7"} {
			if r := s.get(t, "/r", "Range", spec); r.status != 200 || r.body != rangeBody {
				t.Errorf("%s: %d %q, want the full 200", spec, r.status, r.body)
			}
		}
		if r := s.do(t, http.MethodHead, "/r", "Range", "bytes=0-1"); r.status != 200 {
			t.Errorf("HEAD with Range: %d, want 200 (range handling is defined for GET only)", r.status)
		}
	})
}

// RFC 9110 §13.1.5: If-Range with the current strong entity tag (or the
// exact, strong Last-Modified) gets the range; anything else the whole
// representation.
func TestRFC9110_13_1_5_IfRange(t *testing.T) {
	lm := ago(time.Hour)
	bothTiers(t, []config.CacheRule{rfcRule()}, answer(200, rangeBody, "Cache-Control", "max-age=600", "ETag", `"r1"`, "Last-Modified", lm), func(t *testing.T, s tierSidecar) {
		s.get(t, "/r")
		for ir, want := range map[string]int{`"r1"`: 206, `"r0"`: 200, `W/"r1"`: 200, lm: 206, ago(2 * time.Hour): 200} {
			if r := s.get(t, "/r", "Range", "bytes=0-1", "If-Range", ir); r.status != want {
				t.Errorf("If-Range %s: %d, want %d", ir, r.status, want)
			}
		}
	})
}
