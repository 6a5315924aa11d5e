package cache

import (
	"net/url"
	"slices"
	"strings"
	"testing"
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
