package cache

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeQuery(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"sorted by name", "b=1&a=2", "a=2&b=1"},
		{"repeated names keep their order", "a=2&b=0&a=1", "a=2&a=1&b=0"},
		{"escaping canonicalized", "q=%61b&r=a+b", "q=ab&r=a+b"},
		{"space forms agree", "r=a%20b", "r=a+b"},
		{"empty parts dropped", "&&a=1&", "a=1"},
		{"bare name gets empty value", "flag", "flag="},
		{"malformed escape kept verbatim", "a=%zz", "a=%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, normalizeQuery(tt.in)); diff != "" {
				t.Errorf("normalizeQuery(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestNormalizeHeaderValue(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want string
	}{
		{"none", nil, ""},
		{"list spacing", []string{"en,  de"}, "en,de"},
		{"several lines", []string{"en", "de"}, "en,de"},
		{"inner whitespace collapsed", []string{"text/html;  q=0.9"}, "text/html; q=0.9"},
		{"case kept", []string{"EN"}, "EN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, normalizeHeaderValue(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyInputHash(t *testing.T) {
	base := keyInput{Method: "GET", Host: "shop", Path: "/p", Query: "a=1&b=2"}
	with := func(f func(*keyInput)) keyInput { k := base; f(&k); return k }
	same := []struct {
		name string
		in   keyInput
	}{
		{"query order", with(func(k *keyInput) { k.Query = "b=2&a=1" })},
		{"host case", with(func(k *keyInput) { k.Host = "SHOP" })},
	}
	for _, tt := range same {
		t.Run("same/"+tt.name, func(t *testing.T) {
			if base.hash() != tt.in.hash() {
				t.Errorf("%+v and %+v must share a key", base, tt.in)
			}
		})
	}
	differ := []struct {
		name string
		in   keyInput
	}{
		{"path", with(func(k *keyInput) { k.Path = "/q" })},
		{"escaped path", with(func(k *keyInput) { k.Path = "/p%2F" })},
		{"host", with(func(k *keyInput) { k.Host = "other" })},
		{"query value", with(func(k *keyInput) { k.Query = "a=1&b=3" })},
		{"vary header", with(func(k *keyInput) { k.Headers = [][2]string{{"accept-language", "de"}} })},
		{"subject", with(func(k *keyInput) { k.HasSubject, k.Subject = true, "alice" })},
		{"empty subject differs from none", with(func(k *keyInput) { k.HasSubject = true })},
		{"no ambiguity across fields", with(func(k *keyInput) { k.Host, k.Path = "shop/p", "" })},
	}
	for _, tt := range differ {
		t.Run("differ/"+tt.name, func(t *testing.T) {
			if base.hash() == tt.in.hash() {
				t.Errorf("%+v and %+v must not share a key", base, tt.in)
			}
		})
	}
	de := with(func(k *keyInput) { k.Headers = [][2]string{{"accept-language", "de"}} })
	en := with(func(k *keyInput) { k.Headers = [][2]string{{"accept-language", "en"}} })
	if de.hash() == en.hash() {
		t.Error("Accept-Language de and en must not share a key")
	}
}

func TestKeyspace(t *testing.T) {
	ks := newKeyspace("cache:", "shop", "products")
	tag := ks.pathTag("/products/42")
	b, ph := pathHash("/products/42")
	got := []string{ks.variant("/products/42", "abc"), ks.meta("/products/42"), ks.variants("/products/42"), ks.gens(b), ks.channel()}
	want := []string{
		"cache:" + tag + ":v:abc", "cache:" + tag + ":p:" + ph, "cache:" + tag + ":n:" + ph, "cache:" + tag + ":g",
		"cache:{shop/products}:inv",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("key layout (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(tag, "{shop/products/") || tag != ks.bucketTag(b) {
		t.Errorf("path tag %q must embed namespace, policy and the path's bucket", tag)
	}
	seen := map[string]bool{}
	for i := range 4096 {
		seen[ks.pathTag(fmt.Sprintf("/p/%d", i))] = true
	}
	if len(seen) != buckets {
		t.Errorf("4096 paths use %d hash tags, want all %d buckets", len(seen), buckets)
	}
	if newKeyspace("cache:", "other", "products").pathTag("/a") == ks.pathTag("/a") {
		t.Error("namespaces must never share keys")
	}
}

func TestParseVary(t *testing.T) {
	tests := []struct {
		name     string
		vary     []string
		want     []string
		wantStar bool
	}{
		{"none", nil, nil, false},
		{"normalized", []string{"Accept-Language, accept-encoding", "Accept-Language"}, []string{"accept-encoding", "accept-language"}, false},
		{"star", []string{"Accept, *"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Vary": tt.vary}
			got, star := parseVary(h)
			if diff := cmp.Diff(tt.want, got); diff != "" || star != tt.wantStar {
				t.Errorf("parseVary (-want +got):\n%s star=%v", diff, star)
			}
		})
	}
}

func TestParseCacheControl(t *testing.T) {
	d := func(f func(*directives)) directives {
		v := newDirectives()
		f(&v)
		return v
	}
	tests := []struct {
		name string
		in   []string
		want directives
	}{
		{"absent", nil, newDirectives()},
		{"no-store", []string{"no-store"}, d(func(v *directives) { v.NoStore = true })},
		{"private and max-age", []string{"private, max-age=60"}, d(func(v *directives) { v.Private, v.MaxAge = true, time.Minute })},
		{"s-maxage", []string{"public, max-age=60, s-maxage=10"}, d(func(v *directives) { v.Public, v.MaxAge, v.SMaxAge = true, time.Minute, 10*time.Second })},
		{"case and quotes", []string{`MAX-AGE="30"`}, d(func(v *directives) { v.MaxAge = 30 * time.Second })},
		{"several lines", []string{"no-cache", "must-revalidate"}, d(func(v *directives) { v.NoCache, v.MustRevalidate = true, true })},
		{"malformed max-age is stale", []string{"max-age=soon"}, d(func(v *directives) { v.MaxAge = 0 })},
		{"negative max-age is stale", []string{"max-age=-5"}, d(func(v *directives) { v.MaxAge = 0 })},
		{"first duplicate wins", []string{"max-age=5, max-age=50"}, d(func(v *directives) { v.MaxAge = 5 * time.Second })},
		{"huge is 2^31", []string{"max-age=99999999999999999999"}, d(func(v *directives) { v.MaxAge = maxDelta })},
		{"quoted comma does not split", []string{`no-cache="Set-Cookie, X-A", max-age=5`}, d(func(v *directives) { v.NoCache, v.MaxAge = true, 5*time.Second })},
		{"extensions", []string{"stale-while-revalidate=30, stale-if-error=60, max-stale, min-fresh=5"}, d(func(v *directives) {
			v.SWR, v.SIE, v.MaxStaleAny, v.MinFresh = 30*time.Second, time.Minute, true, 5*time.Second
		})},
		{"unknown ignored", []string{"immutable, foo=bar"}, newDirectives()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parseCacheControl(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResponseDirectivesTargetedFields(t *testing.T) {
	tests := []struct {
		name         string
		h            http.Header
		wantTargeted string
		wantMaxAge   time.Duration
	}{
		{"cache-control only", http.Header{"Cache-Control": {"max-age=10"}}, "", 10 * time.Second},
		{"CDN-Cache-Control wins", http.Header{"Cache-Control": {"max-age=10"}, "Cdn-Cache-Control": {"max-age=60"}}, "CDN-Cache-Control", time.Minute},
		{"own field wins over CDN", http.Header{"Gatehouse-Cache-Control": {"max-age=5"}, "Cdn-Cache-Control": {"max-age=60"}}, "Gatehouse-Cache-Control", 5 * time.Second},
		{"invalid dictionary falls back", http.Header{"Cache-Control": {"max-age=10"}, "Cdn-Cache-Control": {"max-age=(("}}, "", 10 * time.Second},
		{"empty falls back", http.Header{"Cache-Control": {"max-age=10"}, "Cdn-Cache-Control": {""}}, "", 10 * time.Second},
		{"string max-age is stale", http.Header{"Cdn-Cache-Control": {`max-age="60"`}}, "CDN-Cache-Control", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := responseDirectives(tt.h)
			if got.Targeted != tt.wantTargeted || got.MaxAge != tt.wantMaxAge {
				t.Errorf("targeted %q max-age %v, want %q %v", got.Targeted, got.MaxAge, tt.wantTargeted, tt.wantMaxAge)
			}
		})
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := &entry{
		Status: 203, Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		Body: []byte("hello"), RequestTime: time.UnixMilli(1_700_000_000_123), ResponseTime: time.UnixMilli(1_700_000_000_456),
		InitialAge: 3 * time.Second, Lifetime: time.Minute, SWR: 5 * time.Second, SIE: time.Hour, Keep: 2 * time.Hour,
		NoStale: true, SharedAuth: true, Gen: 1_700_000_000_000_001, Seq: 42, Tags: []string{"a", "b"},
	}
	got, err := unmarshalEntry(e.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	raw := e.marshal()
	for name, bad := range map[string][]byte{"empty": nil, "version 1": append([]byte{1}, raw[1:]...), "truncated": raw[:20], "bad tag count": append(raw[:76:76], 0xff)} {
		if _, err := unmarshalEntry(bad); err == nil {
			t.Errorf("unmarshalEntry accepted a %s entry", name)
		}
	}
}

func TestNotModified(t *testing.T) {
	stored := http.Header{"Etag": {`"v1"`}, "Last-Modified": {"Mon, 02 Jan 2006 15:04:05 GMT"}}
	tests := []struct {
		name string
		req  http.Header
		want bool
	}{
		{"no conditionals", http.Header{}, false},
		{"etag match", http.Header{"If-None-Match": {`"v0", "v1"`}}, true},
		{"weak match", http.Header{"If-None-Match": {`W/"v1"`}}, true},
		{"etag mismatch", http.Header{"If-None-Match": {`"v2"`}}, false},
		{"star", http.Header{"If-None-Match": {"*"}}, true},
		{"if-modified-since later", http.Header{"If-Modified-Since": {"Tue, 03 Jan 2006 15:04:05 GMT"}}, true},
		{"if-modified-since earlier", http.Header{"If-Modified-Since": {"Sun, 01 Jan 2006 15:04:05 GMT"}}, false},
		{"inm wins over ims", http.Header{"If-None-Match": {`"v2"`}, "If-Modified-Since": {"Tue, 03 Jan 2006 15:04:05 GMT"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{Method: http.MethodGet, Header: tt.req}
			if got := notModified(r, stored); got != tt.want {
				t.Errorf("notModified = %v, want %v", got, tt.want)
			}
		})
	}
}
