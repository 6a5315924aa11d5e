package cache

import (
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
	got := []string{ks.variant("/products/42", "abc"), ks.vars("/products/42"), ks.vary("/products/42"), ks.gen("/products/42"), ks.paths(), ks.tag("catalog"), ks.channel()}
	want := []string{
		"cache:" + tag + ":v:abc", "cache:" + tag + ":vars", "cache:" + tag + ":vary", "cache:" + tag + ":gen",
		"cache:{shop/products}:paths", "cache:{shop/products}:tag:catalog", "cache:{shop/products}:inv",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("key layout (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(tag, "{shop/products/") || len(tag) != len("{shop/products/}")+16 {
		t.Errorf("path tag %q must embed namespace, policy and a 64-bit path hash", tag)
	}
	if ks.pathTag("/a") == ks.pathTag("/b") {
		t.Error("different paths must get different hash tags")
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
	none := time.Duration(-1)
	tests := []struct {
		name string
		in   []string
		want cacheControl
	}{
		{"absent", nil, cacheControl{MaxAge: none, SMaxAge: none}},
		{"no-store", []string{"no-store"}, cacheControl{NoStore: true, MaxAge: none, SMaxAge: none}},
		{"private and max-age", []string{"private, max-age=60"}, cacheControl{Private: true, MaxAge: time.Minute, SMaxAge: none}},
		{"s-maxage", []string{"public, max-age=60, s-maxage=10"}, cacheControl{Public: true, MaxAge: time.Minute, SMaxAge: 10 * time.Second}},
		{"case and quotes", []string{`MAX-AGE="30"`}, cacheControl{MaxAge: 30 * time.Second, SMaxAge: none}},
		{"several lines", []string{"no-cache", "must-revalidate"}, cacheControl{NoCache: true, MustRevalidate: true, MaxAge: none, SMaxAge: none}},
		{"malformed max-age is stale", []string{"max-age=soon"}, cacheControl{MaxAge: 0, SMaxAge: none}},
		{"negative max-age is stale", []string{"max-age=-5"}, cacheControl{MaxAge: 0, SMaxAge: none}},
		{"first duplicate wins", []string{"max-age=5, max-age=50"}, cacheControl{MaxAge: 5 * time.Second, SMaxAge: none}},
		{"unknown ignored", []string{"immutable, foo=bar"}, cacheControl{MaxAge: none, SMaxAge: none}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCacheControl(http.Header{"Cache-Control": tt.in})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	ttl := time.Minute
	tests := []struct {
		name string
		cc   string
		want time.Duration
	}{
		{"rule ttl without directives", "", ttl},
		{"max-age shortens", "max-age=10", 10 * time.Second},
		{"max-age never lengthens", "max-age=3600", ttl},
		{"s-maxage wins over max-age", "max-age=5, s-maxage=20", 20 * time.Second},
		{"s-maxage capped by rule", "s-maxage=3600", ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseCacheControl(http.Header{"Cache-Control": {tt.cc}}).lifetime(ttl)
			if got != tt.want {
				t.Errorf("lifetime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEntryRoundTrip(t *testing.T) {
	e := &entry{
		Status: 203, Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		Body: []byte("hello"), StoredAt: time.UnixMilli(1_700_000_000_123), InitialAge: 3 * time.Second,
		Lifetime: time.Minute, SWR: 5 * time.Second, SIE: time.Hour,
	}
	got, err := unmarshalEntry(e.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	raw := e.marshal()
	for name, bad := range map[string][]byte{"empty": nil, "unknown version": append([]byte{9}, raw[1:]...), "truncated": raw[:20], "bad header count": append(raw[:43:43], 0xff)} {
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
			r := &http.Request{Header: tt.req}
			if got := notModified(r, stored); got != tt.want {
				t.Errorf("notModified = %v, want %v", got, tt.want)
			}
		})
	}
}
