package cache

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// FuzzCacheKey checks the properties the key layout relies on for any input:
// every key of a path carries exactly that path's hash tag and nothing that
// could open a second one, query order never matters, and hashing is stable.
func FuzzCacheKey(f *testing.F) {
	f.Add("example.com", "/products/42", "b=2&a=1", "en")
	f.Add("", "/", "", "")
	f.Add("h", "/{x}/}{", "a=%zz&a=1&&", "de, en")
	f.Fuzz(func(t *testing.T, host, path, query, lang string) {
		ks := newKeyspace("cache:", "ns", "pol")
		in := keyInput{Method: "GET", Host: host, Path: path, Query: query, Headers: [][2]string{{"accept-language", normalizeHeaderValue([]string{lang})}}}
		h := in.hash()
		if h != in.hash() {
			t.Fatal("hash not deterministic")
		}
		key := ks.variant(path, h)
		for _, k := range []string{key, ks.meta(path), ks.variants(path), ks.gens(mustBucket(path))} {
			if strings.Count(k, "{") != 1 || strings.Count(k, "}") != 1 {
				t.Fatalf("key %q must hold exactly one hash tag", k)
			}
			open, end := strings.Index(k, "{"), strings.Index(k, "}")
			if k[open:end+1] != ks.pathTag(path) {
				t.Fatalf("key %q is not in the slot of path %q", k, path)
			}
		}
		parts := strings.Split(query, "&")
		slices.Reverse(parts)
		rev := in
		rev.Query = strings.Join(parts, "&")
		// Reversal changes the order of repeated names, which is meaningful.
		if names := queryNames(query); len(names) == len(slices.Compact(slices.Sorted(slices.Values(names)))) && rev.hash() != h {
			t.Fatalf("query %q and %q must share a key", query, rev.Query)
		}
		if n := normalizeQuery(query); normalizeQuery(n) != n {
			t.Fatalf("normalizeQuery not idempotent: %q -> %q -> %q", query, n, normalizeQuery(n))
		}
	})
}

func queryNames(q string) []string {
	var out []string
	for p := range strings.SplitSeq(q, "&") {
		if p == "" {
			continue
		}
		name, _, _ := strings.Cut(p, "=")
		if u, err := url.QueryUnescape(name); err == nil {
			name = url.QueryEscape(u)
		}
		out = append(out, name)
	}
	return out
}

func mustBucket(path string) int {
	b, _ := pathHash(path)
	return b
}

// FuzzResponseVerdict judges arbitrary caching headers: a rule's ttl is an
// upper bound no origin can lengthen, ages and windows stay non-negative,
// and a response that may be stored is never one with no-store or private.
//
//	go test ./sidecar/cache -run '^$' -fuzz FuzzResponseVerdict -fuzztime 30s
func FuzzResponseVerdict(f *testing.F) {
	f.Add("max-age=60, s-maxage=30", "", "", 200)
	f.Add(`no-cache="Set-Cookie", private`, "no-store", "0", 200)
	f.Add("max-age=99999999999999999999", "MAX-AGE = 5", "Thu, 01 Jan 2099 00:00:00 GMT", 302)
	f.Add(`s-maxage="10", max-age=-1, stale-while-revalidate=9999999`, "max-age=(", "", 404)
	f.Add("public, must-understand, no-store", "max-age=1", "", 299)
	f.Fuzz(func(t *testing.T, cc, cdn, expires string, status int) {
		h := http.Header{"Cache-Control": {cc}, "Etag": {`"x"`}}
		if cdn != "" {
			h.Set("CDN-Cache-Control", cdn)
		}
		if expires != "" {
			h.Set("Expires", expires)
		}
		rl := &rule{mode: config.CacheStandard, ttl: 5 * time.Minute, swr: time.Minute, sie: time.Minute, setCookie: config.SetCookieNotStored}
		v := rl.judge(&request{}, status, h, 0, time.Now())
		if v.lifetime < 0 || v.lifetime > rl.ttl || v.swr < 0 || v.swr > rl.swr || v.sie < 0 || v.sie > rl.sie {
			t.Fatalf("verdict %+v outside the rule's caps for %v", v, h)
		}
		d := responseDirectives(h)
		if v.reason == "" && (d.Private || (d.NoStore && !d.MustUnderstand)) {
			t.Fatalf("stored despite %+v: %v", d, h)
		}
	})
}
