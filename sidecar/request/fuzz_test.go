package request

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// FuzzNormalize checks the normaliser against properties and against two
// parsers it shares no code with. A path is refused only for a documented
// reason the input really has. An accepted path is canonical: normalising
// it again changes nothing. It never escapes the root: no dot segment
// survives, and joined under a directory it stays inside it. net/http's
// ServeMux routes it without a redirect, to the same handler a Matcher
// picks among the same prefixes. It equals what RFC 3986 §5.2.4
// remove_dot_segments (written here from the RFC's pseudo-code) and
// net/url's ResolveReference give after §6.2.2 normalisation and merging
// slashes. Normalize hands the next handler exactly that path.
//
// The second input selects the per-pod exceptions (bit 0: encoded slashes,
// bit 1: path parameters); with an exception on, the properties that do not
// depend on how the app reads %2F or ";" are checked.
//
// Run it with:
//
//	go test ./sidecar/request -run '^$' -fuzz FuzzNormalize -fuzztime 60s
func FuzzNormalize(f *testing.F) {
	for _, s := range spellings {
		var opts uint8
		if s.opts.AllowEncodedSlash {
			opts |= 1
		}
		if s.opts.AllowPathParameters {
			opts |= 2
		}
		f.Add(s.raw, opts)
	}
	f.Fuzz(func(t *testing.T, raw string, bits uint8) {
		o := Options{AllowEncodedSlash: bits&1 != 0, AllowPathParameters: bits&2 != 0}
		c, ref := canonicalize(raw, o)
		if ref != nil {
			if !justified(raw, ref.Reason) {
				t.Fatalf("%q refused for %s, which it does not have", raw, ref.Reason)
			}
			return
		}
		if !strings.HasPrefix(c.escaped, "/") || !strings.HasPrefix(c.match, "/") {
			t.Fatalf("%q: forms %+v", raw, c)
		}
		if again, ref := canonicalize(c.escaped, o); ref != nil || again != c {
			t.Fatalf("not idempotent: %q -> %q -> %+v, %v", raw, c.escaped, again, ref)
		}
		for seg := range strings.SplitSeq(c.match, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: dot segment left in the match form %q", raw, c.match)
			}
		}
		if o != (Options{}) {
			if strings.Contains(c.match, ";") {
				t.Fatalf("%q: parameters left in the match form %q", raw, c.match)
			}
			return
		}
		if c.match != c.escaped {
			t.Fatalf("%q: match form %q differs without exceptions", raw, c.match)
		}
		if dec, err := url.PathUnescape(c.escaped); err != nil || dec != c.decoded {
			t.Fatalf("%q: decoded form %q, but the escaped form %q decodes to %q (%v)", raw, c.decoded, c.escaped, dec, err)
		}
		for seg := range strings.SplitSeq(c.decoded, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q: dot segment left in %q", raw, c.decoded)
			}
		}
		if j := path.Join("/srv/www", c.decoded); j != "/srv/www" && !strings.HasPrefix(j, "/srv/www/") {
			t.Fatalf("%q escapes the root: %q", raw, j)
		}
		if want := reference(raw); want != c.escaped {
			t.Fatalf("%q: normalised to %q, RFC 3986 reference gives %q", raw, c.escaped, want)
		}
		if want := resolved(raw); want != "" && want != c.escaped {
			t.Fatalf("%q: normalised to %q, net/url ResolveReference gives %q", raw, c.escaped, want)
		}
		checkServeMux(t, raw, c)
		checkMiddleware(t, raw, c)
	})
}

// justified reports whether raw has what a refusal for reason says.
func justified(raw, reason string) bool {
	low := strings.ToLower(raw)
	dec := lenientUnescape(raw)
	switch reason {
	case ReasonMalformed:
		_, err := url.PathUnescape(raw)
		return err != nil || !strings.HasPrefix(raw, "/")
	case ReasonEncodedSlash:
		return strings.Contains(low, "%2f")
	case ReasonBackslash:
		return strings.Contains(raw, `\`) || strings.Contains(low, "%5c")
	case ReasonControl:
		return strings.ContainsFunc(dec, func(r rune) bool { return r < 0x20 || r == 0x7f })
	case ReasonDotParameter, ReasonPathParameter, ReasonEmptyParameter:
		return strings.Contains(raw, ";") || strings.Contains(low, "%3b")
	case ReasonDoubleEncoding:
		return strings.Contains(low, "%25")
	case ReasonInvalidUTF8:
		return !utf8.ValidString(dec)
	}
	return false
}

// lenientUnescape decodes every well-formed escape of s and keeps the rest.
func lenientUnescape(s string) string {
	return escapeRE.ReplaceAllStringFunc(s, func(e string) string {
		d, _ := url.PathUnescape(e)
		return d
	})
}

var escapeRE = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// rfcNormalise applies RFC 3986 §6.2.2.1-2 to raw: escapes of unreserved
// characters decoded, other escapes in upper case, characters that are not
// allowed raw escaped; then merges slashes.
func rfcNormalise(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' && i+2 < len(raw) && escapeRE.MatchString(raw[i:i+3]) {
			d, _ := url.PathUnescape(raw[i : i+3])
			if strings.ContainsAny(d, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") {
				b.WriteString(d)
			} else {
				b.WriteString(strings.ToUpper(raw[i : i+3]))
			}
			i += 2
			continue
		}
		if c == '/' || strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
	}
	return regexp.MustCompile(`/+`).ReplaceAllString(b.String(), "/")
}

// reference is RFC 3986 §5.2.4 remove_dot_segments, step by step as the RFC
// writes it, over rfcNormalise(raw).
func reference(raw string) string {
	in := rfcNormalise(raw)
	out := ""
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = "/" + in[3:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = "/" + in[4:]
			out = out[:max(strings.LastIndexByte(out, '/'), 0)]
		case in == "/..":
			in = "/"
			out = out[:max(strings.LastIndexByte(out, '/'), 0)]
		case in == "." || in == "..":
			in = ""
		default:
			j := strings.IndexByte(in[1:], '/')
			if j < 0 {
				out, in = out+in, ""
			} else {
				out, in = out+in[:j+1], in[j+1:]
			}
		}
	}
	if out == "" {
		return "/"
	}
	return out
}

// resolved is net/url's ResolveReference of rfcNormalise(raw), or "" when
// net/url cannot parse it.
func resolved(raw string) string {
	u, err := url.Parse("http://h" + rfcNormalise(raw))
	if err != nil {
		return ""
	}
	base, _ := url.Parse("http://h/")
	p := base.ResolveReference(u).EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

// prefixes are the routes both routers are given, as ServeMux patterns.
var prefixes = []string{"/", "/public/", "/admin/", "/api/login/", "/caf%C3%A9/"}

func checkServeMux(t *testing.T, raw string, c canonical) {
	mux := http.NewServeMux()
	for _, p := range prefixes {
		mux.Handle(p, http.NotFoundHandler())
	}
	want := ""
	for _, p := range prefixes {
		m, err := Compile(config.Match{PathPrefix: p}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.MatchPath(c.match) && len(p) > len(want) {
			want = p
		}
	}
	if slices.Contains(prefixes, c.escaped+"/") {
		// ServeMux redirects "/admin" to "/admin/", a route of its own.
		return
	}
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: c.decoded, RawPath: c.escaped}, Host: "h"}
	if _, got := mux.Handler(r); got != want {
		t.Fatalf("%q (canonical %q): ServeMux routes to %q, the matchers to %q", raw, c.escaped, got, want)
	}
}

func checkMiddleware(t *testing.T, raw string, c canonical) {
	u, err := url.Parse("http://h" + raw)
	if err != nil || wirePath(u) != raw {
		return // not a request target net/url would hand us as such
	}
	var got string
	h := Normalize(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.URL.EscapedPath() }), Options{}, nil)
	h.ServeHTTP(httptest.NewRecorder(), &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
	if got != c.escaped {
		t.Fatalf("%q: Normalize passed on %q, want %q", raw, got, c.escaped)
	}
}
