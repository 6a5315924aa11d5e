package request

import (
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// normalised returns the request Normalize passes on for raw (a request
// target as sent), or nil when it is refused.
func normalised(t *testing.T, method, raw string, o Options, header http.Header) *http.Request {
	t.Helper()
	r := httptest.NewRequest(method, "http://app.test"+raw, nil)
	maps.Copy(r.Header, header)
	var got *http.Request
	Normalize(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r }), o, nil).ServeHTTP(httptest.NewRecorder(), r)
	return got
}

func TestMatcher(t *testing.T) {
	tests := []struct {
		name   string
		match  config.Match
		method string
		path   string
		opts   Options
		header http.Header
		want   bool
	}{
		{name: "empty prefix is the root", match: config.Match{}, path: "/x", want: true},
		{name: "plain string prefix", match: config.Match{PathPrefix: "/api"}, path: "/apiv2", want: true},
		{name: "directory prefix", match: config.Match{PathPrefix: "/api/"}, path: "/apiv2", want: false},
		{name: "dot segments resolved before matching", match: config.Match{PathPrefix: "/api/login"}, path: "/x/../api/login", want: true},
		{name: "slashes merged before matching", match: config.Match{PathPrefix: "/api/login"}, path: "//api//login", want: true},
		{name: "encoded letters decoded before matching", match: config.Match{PathPrefix: "/api/login"}, path: "/api/%6cogin", want: true},
		{name: "escaped out of a public prefix", match: config.Match{PathPrefix: "/public/"}, path: "/public/%2e%2e/admin", want: false},
		{name: "case sensitive by default", match: config.Match{PathPrefix: "/api/login"}, path: "/API/login", want: false},
		{name: "case-insensitive opt-in", match: config.Match{PathPrefix: "/api/login", CaseInsensitive: true}, path: "/API/Login", want: true},
		{name: "case-insensitive prefix written in capitals", match: config.Match{PathPrefix: "/Admin/", CaseInsensitive: true}, path: "/aDMIN/users", want: true},
		{name: "case-insensitive still a prefix", match: config.Match{PathPrefix: "/api/login", CaseInsensitive: true}, path: "/API/log", want: false},
		{name: "case-insensitive over escapes", match: config.Match{PathPrefix: "/caf%C3%A9/", CaseInsensitive: true}, path: "/CAF%c3%a9/x", want: true},
		{name: "prefix canonicalised like requests", match: config.Match{PathPrefix: "/api//v1/./x"}, path: "/api/v1/x/y", want: true},
		{name: "prefix with a raw space", match: config.Match{PathPrefix: "/files/a b/"}, path: "/files/a%20b/c", want: true},
		{name: "prefix with an encoded slash needs the exception", match: config.Match{PathPrefix: "/api/queues/%2F/"}, path: "/api/queues/%2f/orders", opts: encodedSlash, want: true},
		{name: "encoded slash never matches a real separator", match: config.Match{PathPrefix: "/a/b"}, path: "/a%2Fb", opts: encodedSlash, want: false},
		{name: "parameters removed for matching", match: config.Match{PathPrefix: "/admin/"}, path: "/admin;x=1/secret", opts: pathParameters, want: true},
		{name: "method in list", match: config.Match{Methods: []string{"POST"}}, method: "POST", path: "/", want: true},
		{name: "method not in list", match: config.Match{Methods: []string{"POST"}}, method: "GET", path: "/", want: false},
		{name: "header present", match: config.Match{Header: &config.HeaderMatch{Name: "x-tier"}}, path: "/", header: http.Header{"X-Tier": {"a"}}, want: true},
		{name: "header named in Connection is gone", match: config.Match{Header: &config.HeaderMatch{Name: "X-Tier"}}, path: "/",
			header: http.Header{"X-Tier": {"a"}, "Connection": {"X-Tier"}}, want: false},
		{name: "header value", match: config.Match{Header: &config.HeaderMatch{Name: "X-Tier", Value: "free"}}, path: "/", header: http.Header{"X-Tier": {"paid", "free"}}, want: true},
		{name: "header wrong value", match: config.Match{Header: &config.HeaderMatch{Name: "X-Tier", Value: "free"}}, path: "/", header: http.Header{"X-Tier": {"paid"}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compile(tt.match, nil)
			if err != nil {
				t.Fatal(err)
			}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := normalised(t, method, tt.path, tt.opts, tt.header)
			if r == nil {
				t.Fatalf("Normalize refused %q", tt.path)
			}
			if got := m.Match(r); got != tt.want {
				t.Errorf("Match(%s %s) = %v, want %v (path %q)", method, tt.path, got, tt.want, Path(r))
			}
		})
	}
}

func TestCompileDefaults(t *testing.T) {
	m, err := Compile(config.Match{PathPrefix: "/c"}, []string{"GET", "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	for method, want := range map[string]bool{"GET": true, "HEAD": true, "POST": false} {
		if got := m.Match(httptest.NewRequest(method, "/c", nil)); got != want {
			t.Errorf("default methods: %s matched = %v, want %v", method, got, want)
		}
	}
	if _, err := Compile(config.Match{PathPrefix: "/a%zz"}, nil); err == nil {
		t.Error("Compile accepted a malformed escape")
	}
	if _, err := Compile(config.Match{PathPrefix: "/a;v=1/"}, nil); err == nil {
		t.Error("Compile accepted a prefix with a path parameter")
	}
	if _, err := Compile(config.Match{Header: &config.HeaderMatch{}}, nil); err == nil {
		t.Error("Compile accepted a header condition without a name")
	}
}

// A rule names what requests it counts; every problem is reported, with its
// path in the match, so the operator can point at the CRD field.
func TestCompileReportsEveryProblem(t *testing.T) {
	_, err := Compile(config.Match{PathPrefix: "api", Methods: []string{"GET", "get", "PO ST"}, Header: &config.HeaderMatch{Name: "X Tier"}}, nil)
	var fe config.FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Compile = %v, want FieldErrors", err)
	}
	want := config.FieldErrors{
		{Path: "pathPrefix", Message: `"api" must start with /`},
		{Path: "methods[1]", Message: `"get" must be an upper-case HTTP method`},
		{Path: "methods[2]", Message: `"PO ST" must be an upper-case HTTP method`},
		{Path: "header.name", Message: `"X Tier" is not a valid header name`},
	}
	if diff := cmp.Diff(want, fe); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// Spellings the normaliser refuses in every request are refused in rules:
// a rule written with one could never match anything.
func TestCheckPath(t *testing.T) {
	for p, want := range map[string]string{
		"/api/":       "",
		"/caf%C3%A9/": "",
		"api":         `"api" must start with /`,
		"/a?b":        `"/a?b" contains a query or fragment; paths are matched without them`,
		"/a#b":        `"/a#b" contains a query or fragment; paths are matched without them`,
		`/a\b`:        `"/a\\b" contains a backslash, ';' or a control character, which no accepted request path has`,
		"/a;v=1/":     `"/a;v=1/" contains a backslash, ';' or a control character, which no accepted request path has`,
		"/nul\x00":    `"/nul\x00" contains a backslash, ';' or a control character, which no accepted request path has`,
		"/x%zz":       `"/x%zz" has a malformed percent-escape`,
	} {
		got := ""
		if err := CheckPath(p); err != nil {
			got = err.Error()
		}
		if got != want {
			t.Errorf("CheckPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// A prefix spelling what no accepted request contains compiles, and never
// matches: such requests are refused before any matcher runs.
func TestPrefixOfRefusedSpellingNeverMatches(t *testing.T) {
	for _, prefix := range []string{"/a%5Cb", "/a%00", "/a%252e", "/a%c0%ae"} {
		m, err := Compile(config.Match{PathPrefix: prefix}, nil)
		if err != nil {
			t.Fatalf("Compile(%q): %v", prefix, err)
		}
		for _, s := range spellings {
			if s.refused != "" {
				continue
			}
			c, _ := canonicalize(s.raw, s.opts)
			if m.MatchPath(c.match) {
				t.Errorf("prefix %q matched accepted path %q", prefix, c.match)
			}
		}
	}
}

func TestFoldCase(t *testing.T) {
	for in, want := range map[string]string{"/api/login": "/api/login", "/API/Login": "/api/login", "/CAF%C3%A9": "/caf%c3%a9", "/Ünï": "/Ünï"} {
		if got := FoldCase(in); got != want {
			t.Errorf("FoldCase(%q) = %q, want %q", in, got, want)
		}
	}
}
