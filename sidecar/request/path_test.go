package request

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// spelling is one request path as sent and what the normaliser makes of it:
// the path the app receives (escaped), url.URL.Path (decoded), what matchers
// compare (match, when it differs from escaped), or the reason it is refused.
type spelling struct {
	name    string
	raw     string
	opts    Options
	escaped string
	decoded string
	match   string
	refused string
}

var (
	encodedSlash   = Options{AllowEncodedSlash: true}
	pathParameters = Options{AllowPathParameters: true}
)

// spellings is the normaliser's specification by example. Paths come from
// RFC 3986 §5.2.4 and §6.2.2, the attacks of issue 13, and the framework
// behaviours docs/security.md names.
var spellings = []spelling{
	// Already canonical: passed on as sent.
	{name: "root", raw: "/", escaped: "/"},
	{name: "plain", raw: "/a/b", escaped: "/a/b"},
	{name: "trailing slash kept", raw: "/a/b/", escaped: "/a/b/"},
	{name: "case kept", raw: "/API/Login", escaped: "/API/Login"},
	{name: "sub-delims, colon and at stay raw", raw: "/a@b:c/(d)!*$&'+,=", escaped: "/a@b:c/(d)!*$&'+,="},
	{name: "dots inside a segment are not dot segments", raw: "/a/.b/c../...", escaped: "/a/.b/c../..."},

	// Duplicate slashes are merged (Envoy merge_slashes).
	{name: "leading double slash", raw: "//api/login", escaped: "/api/login"},
	{name: "inner double slash", raw: "/a//b", escaped: "/a/b"},
	{name: "many slashes", raw: "///a///b//", escaped: "/a/b/"},
	{name: "only slashes", raw: "////", escaped: "/"},

	// Dot segments are removed (RFC 3986 §5.2.4), never above the root.
	{name: "dot", raw: "/./a", escaped: "/a"},
	{name: "inner dot", raw: "/api/./login", escaped: "/api/login"},
	{name: "trailing dot keeps the directory", raw: "/a/.", escaped: "/a/"},
	{name: "dot-dot", raw: "/x/../api/login", escaped: "/api/login"},
	{name: "dot-dot past a public prefix", raw: "/public/../admin", escaped: "/admin"},
	{name: "trailing dot-dot", raw: "/a/b/..", escaped: "/a/"},
	{name: "dot-dot to the root", raw: "/a/..", escaped: "/"},
	{name: "dot-dot above the root stays at the root", raw: "/../../etc/passwd", escaped: "/etc/passwd"},
	{name: "dot-dot after a merged slash", raw: "/a//../b", escaped: "/b"},

	// Escapes of unreserved characters are decoded (§6.2.2.2), so encoded
	// dots are dot segments too; other escapes are upper-cased (§6.2.2.1).
	{name: "encoded dot-dot", raw: "/public/%2e%2e/admin", escaped: "/admin"},
	{name: "upper-case encoded dot-dot", raw: "/public/%2E%2E/admin", escaped: "/admin"},
	{name: "half-encoded dot-dot", raw: "/public/.%2e/admin", escaped: "/admin"},
	{name: "encoded dot", raw: "/a/%2e/b", escaped: "/a/b"},
	{name: "encoded letters", raw: "/%61dmin", escaped: "/admin"},
	{name: "encoded tilde and hyphen", raw: "/%7Euser/a%2db", escaped: "/~user/a-b"},
	{name: "encoded letters in a rate-limited path", raw: "/api/%6Cogin", escaped: "/api/login"},
	{name: "UTF-8 escapes upper-cased", raw: "/caf%c3%a9", escaped: "/caf%C3%A9", decoded: "/café"},
	{name: "raw UTF-8 escaped", raw: "/caf\xc3\xa9", escaped: "/caf%C3%A9", decoded: "/café"},
	{name: "encoded space kept", raw: "/a%20b", escaped: "/a%20b", decoded: "/a b"},
	{name: "encoded question mark kept", raw: "/a%3fb", escaped: "/a%3Fb", decoded: "/a?b"},
	{name: "encoded at sign kept", raw: "/a%40b", escaped: "/a%40b", decoded: "/a@b"},
	{name: "raw quote escaped", raw: `/a"b`, escaped: "/a%22b", decoded: `/a"b`},
	{name: "lone encoded percent kept", raw: "/100%25", escaped: "/100%25", decoded: "/100%"},

	// Ambiguous spellings: refused.
	{name: "encoded slash", raw: "/a%2Fb", refused: ReasonEncodedSlash},
	{name: "lower-case encoded slash", raw: "/public%2f..%2fadmin", refused: ReasonEncodedSlash},
	{name: "backslash", raw: `/a\b`, refused: ReasonBackslash},
	{name: "backslash dot-dot", raw: `/public/..\admin`, refused: ReasonBackslash},
	{name: "encoded backslash", raw: "/public/..%5Cadmin", refused: ReasonBackslash},
	{name: "lower-case encoded backslash", raw: "/a%5cb", refused: ReasonBackslash},
	{name: "encoded NUL", raw: "/admin%00.png", refused: ReasonControl},
	{name: "encoded CRLF", raw: "/a%0d%0aSet-Cookie:x", refused: ReasonControl},
	{name: "encoded DEL", raw: "/a%7f", refused: ReasonControl},
	{name: "raw tab", raw: "/a\tb", refused: ReasonControl},
	{name: "dot-dot with a parameter", raw: "/public/..;/admin", refused: ReasonDotParameter},
	{name: "encoded dot-dot with a parameter", raw: "/public/%2e%2e;/admin", refused: ReasonDotParameter},
	{name: "dot with a parameter", raw: "/.;x/admin", refused: ReasonDotParameter},
	{name: "path parameter", raw: "/admin;x=1/secret", refused: ReasonPathParameter},
	{name: "jsessionid", raw: "/cart;jsessionid=0123", refused: ReasonPathParameter},
	{name: "encoded semicolon", raw: "/a%3Bb", refused: ReasonPathParameter},
	{name: "double-encoded dot-dot", raw: "/a/%252e%252e/b", refused: ReasonDoubleEncoding},
	{name: "double-encoded via escaped digits", raw: "/a/%25%32%65", refused: ReasonDoubleEncoding},
	{name: "double-encoded slash", raw: "/a%252Fb", refused: ReasonDoubleEncoding},
	{name: "overlong UTF-8 dot-dot", raw: "/a/%c0%ae%c0%ae/b", refused: ReasonInvalidUTF8},
	{name: "overlong UTF-8 slash", raw: "/a%c0%afb", refused: ReasonInvalidUTF8},
	{name: "Latin-1 byte", raw: "/caf%e9", refused: ReasonInvalidUTF8},
	{name: "bad escape", raw: "/a%zz", refused: ReasonMalformed},
	{name: "truncated escape", raw: "/a%4", refused: ReasonMalformed},
	{name: "trailing percent", raw: "/a%", refused: ReasonMalformed},
	{name: "empty", raw: "", refused: ReasonMalformed},
	{name: "relative", raw: "a/b", refused: ReasonMalformed},
	{name: "asterisk", raw: "*", refused: ReasonMalformed},

	// Per-pod exceptions.
	{name: "encoded slash allowed", raw: "/api/queues/%2f/orders", opts: encodedSlash, escaped: "/api/queues/%2F/orders", decoded: "/api/queues///orders"},
	{name: "encoded slash allowed is no separator for dot segments", raw: "/a%2F..%2Fadmin", opts: encodedSlash, escaped: "/a%2F..%2Fadmin", decoded: "/a/../admin"},
	{name: "encoded slash allowed, backslash still refused", raw: "/a%5Cb", opts: encodedSlash, refused: ReasonBackslash},
	{name: "parameters allowed", raw: "/cart;jsessionid=0123", opts: pathParameters, escaped: "/cart;jsessionid=0123", match: "/cart"},
	{name: "parameters allowed, matched without them", raw: "/admin;x=1/secret", opts: pathParameters, escaped: "/admin;x=1/secret", match: "/admin/secret"},
	{name: "parameters after a trailing slash", raw: "/app/;jsessionid=1", opts: pathParameters, escaped: "/app/;jsessionid=1", match: "/app/"},
	{name: "parameters allowed, dot-dot after them", raw: "/a;x/../b", opts: pathParameters, escaped: "/b"},
	{name: "parameters allowed, encoded semicolon is literal", raw: "/a%3bb", opts: pathParameters, escaped: "/a%3Bb", decoded: "/a;b"},
	{name: "parameters allowed, dot-dot with a parameter still refused", raw: "/public/..;/admin", opts: pathParameters, refused: ReasonDotParameter},
	{name: "parameters allowed, parameters-only segment inside refused", raw: "/a/;x/../b", opts: pathParameters, refused: ReasonEmptyParameter},
}

func TestCanonicalize(t *testing.T) {
	for _, s := range spellings {
		t.Run(s.name, func(t *testing.T) {
			c, ref := canonicalize(s.raw, s.opts)
			if s.refused != "" {
				if ref == nil {
					t.Fatalf("canonicalize(%q) = %+v, want refused (%s)", s.raw, c, s.refused)
				}
				if ref.Reason != s.refused {
					t.Errorf("canonicalize(%q) refused for %s, want %s", s.raw, ref.Reason, s.refused)
				}
				return
			}
			if ref != nil {
				t.Fatalf("canonicalize(%q) refused: %v; want %q", s.raw, ref, s.escaped)
			}
			want := canonical{escaped: s.escaped, decoded: s.decoded, match: s.match}
			if want.decoded == "" {
				want.decoded = s.escaped
			}
			if want.match == "" {
				want.match = s.escaped
			}
			if diff := cmp.Diff(want, c, cmp.AllowUnexported(canonical{})); diff != "" {
				t.Errorf("canonicalize(%q) (-want +got):\n%s", s.raw, diff)
			}
			// Normalising the normalised path changes nothing.
			again, ref := canonicalize(c.escaped, s.opts)
			if ref != nil || again != c {
				t.Errorf("not idempotent: canonicalize(%q) = %+v, %v", c.escaped, again, ref)
			}
		})
	}
}

func TestSpellingTableIsLarge(t *testing.T) {
	// The issue asks for 40+ spellings; keep the table from shrinking.
	if len(spellings) < 40 {
		t.Errorf("only %d spellings", len(spellings))
	}
}
