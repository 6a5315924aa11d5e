package session

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// newOffline builds a Manager whose client points nowhere; extraction and
// configuration need no Redis.
func newOffline(t *testing.T, p config.SessionPolicy) (*Manager, error) {
	t.Helper()
	p.Redis = "main"
	c, err := Compile(p)
	if err != nil {
		return nil, err
	}
	return New(c, map[string]*redisconn.Conn{"main": conn(t, redisconn.Standalone, "127.0.0.1:1")}, NewMetrics(prometheus.NewRegistry()), nil)
}

func TestExtract(t *testing.T) {
	tok := validToken.String()
	tests := []struct {
		name        string
		src         config.TokenSource
		header      map[string]string
		cookie      string
		want        string
		wantPresent bool
	}{
		{"default bearer", config.TokenSource{}, map[string]string{"Authorization": "Bearer " + tok}, "", tok, true},
		{"scheme is case-insensitive", config.TokenSource{}, map[string]string{"Authorization": "bearer " + tok}, "", tok, true},
		{"wrong scheme is present but empty", config.TokenSource{}, map[string]string{"Authorization": "Basic " + tok}, "", "", true},
		{"no header", config.TokenSource{}, nil, "", "", false},
		{"custom header bare token", config.TokenSource{Header: "X-Session"}, map[string]string{"X-Session": tok}, "", tok, true},
		{"cookie only", config.TokenSource{Cookie: "sid"}, map[string]string{"Authorization": "Bearer ignored"}, tok, tok, true},
		{"header wins over cookie", config.TokenSource{Header: "Authorization", Cookie: "sid"}, map[string]string{"Authorization": "Bearer " + tok}, "other", tok, true},
		{"cookie fallback", config.TokenSource{Header: "Authorization", Cookie: "sid"}, nil, tok, tok, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newOffline(t, config.SessionPolicy{Token: tc.src})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest("GET", "/", nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			if tc.cookie != "" {
				r.Header.Set("Cookie", "sid="+tc.cookie)
			}
			got, present := m.extract(r)
			if diff := cmp.Diff(tc.want, got); diff != "" || present != tc.wantPresent {
				t.Errorf("extract = %q, %v; want %q, %v (-want +got):\n%s", got, present, tc.want, tc.wantPresent, diff)
			}
		})
	}
}

func TestNewNeedsItsConnection(t *testing.T) {
	_, err := New(mustCompile(t, config.SessionPolicy{PolicyMeta: config.PolicyMeta{Namespace: "ns", Name: "p", Redis: "nope"}}), nil, NewMetrics(prometheus.NewRegistry()), nil)
	if err == nil || !strings.Contains(err.Error(), `unknown redis connection "nope"`) {
		t.Errorf("New = %v, want an unknown connection refused", err)
	}
}

// stripCookie removes every cookie of the token's name, read as net/http
// reads cookies (RFC 6265 §5.4 serialisation, names case-sensitive), and
// leaves the bytes of every other cookie alone.
func TestStripCookie(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string // nil: no Cookie header left
	}{
		{"only the token", []string{"sid=abc"}, nil},
		{"first", []string{"sid=abc; a=1; b=2"}, []string{"a=1; b=2"}},
		{"middle", []string{"a=1; sid=abc; b=2"}, []string{"a=1; b=2"}},
		{"last", []string{"a=1; sid=abc"}, []string{"a=1"}},
		{"twice", []string{"sid=x; a=1; sid=y"}, []string{"a=1"}},
		{"one line per cookie (HTTP/2)", []string{"a=1", "sid=abc", "b=2"}, []string{"a=1", "b=2"}},
		{"whitespace around the name", []string{"a=1;\t sid =abc"}, []string{"a=1"}},
		{"no value", []string{"sid; a=1"}, []string{"a=1"}},
		{"names are case-sensitive", []string{"SID=1; Sid=2"}, []string{"SID=1; Sid=2"}},
		{"prefix and suffix names stay", []string{"sidx=1; xsid=2; sid_=3"}, []string{"sidx=1; xsid=2; sid_=3"}},
		{"untouched lines keep their bytes", []string{"a=1;b=2", "sid=abc"}, []string{"a=1;b=2"}},
		{"quoted values of others stay", []string{`a="x y"; sid=abc`}, []string{`a="x y"`}},
		{"empty parts are dropped with the token", []string{"a=1;; sid=abc;"}, []string{"a=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": tt.in}
			stripCookie(h, "sid")
			if diff := cmp.Diff(tt.want, h["Cookie"]); diff != "" {
				t.Errorf("Cookie (-want +got):\n%s", diff)
			}
			// What the sidecar would read as the token is gone.
			r := &http.Request{Header: h}
			if c, err := r.Cookie("sid"); err == nil {
				t.Errorf("a sid cookie is left: %v", c)
			}
		})
	}
}
