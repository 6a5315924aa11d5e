package proxy

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// received sends one request through the sidecar and returns the status and
// the values of the named headers the app received (nil when the request
// did not reach the app).
func received(t *testing.T, s *sidecar, a *app, path string, h http.Header, names ...string) (int, map[string][]string) {
	t.Helper()
	a.mu.Lock()
	a.last = nil
	a.mu.Unlock()
	resp, _ := get(t, s.data+path, h)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		return resp.StatusCode, nil
	}
	got := map[string][]string{}
	for _, n := range names {
		if vs := a.last.Values(n); len(vs) > 0 {
			got[n] = vs
		}
	}
	return resp.StatusCode, got
}

// The session token is a bearer credential (RFC 6750 §5.3: do not let it
// leak). The sidecar reads it and, unless the policy sets forwardToken,
// removes it before the request reaches the app — on protected, optional
// and public paths alike — so an app that logs or relays its headers cannot
// leak it. A token in a cookie goes alone: the app's other cookies stay,
// whichever way the client split or spelled them. Before forwardToken
// existed every token reached the app.
func TestSessionTokenDoesNotReachTheApp(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newApp(t)
	policy := func(extra string) string {
		return cfgDoc("t", `"redis":[{"name":"main","mode":"Standalone","addrs":["`+srv.Addr()+`"]}],
		"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1m","sliding":true,
		  "token":{"header":"Authorization","scheme":"Bearer","cookie":"sid"},
		  "requireFor":["/api/"],"publicPaths":["/public/"]`+extra+`}]`)
	}
	s := newSidecar(t, a.URL, policy("")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	tok := mint(t, s, "alice", nil)
	other := mint(t, s, "bob", nil)

	tests := []struct {
		name   string
		path   string
		header http.Header
		// want is what the app receives of Authorization, Cookie and X-Gatehouse-Subject.
		want map[string][]string
	}{
		{"bearer header on a protected path", "/api/orders",
			http.Header{"Authorization": {"Bearer " + tok}},
			map[string][]string{"X-Gatehouse-Subject": {"alice"}}},
		// RFC 9110 §11.1: the scheme is case-insensitive, so is what is stripped.
		{"scheme in another case", "/api/orders",
			http.Header{"Authorization": {"bEARER " + tok}},
			map[string][]string{"X-Gatehouse-Subject": {"alice"}}},
		{"token cookie among the app's cookies", "/api/orders",
			http.Header{"Cookie": {"theme=dark; sid=" + tok + "; lang=en"}},
			map[string][]string{"Cookie": {"theme=dark; lang=en"}, "X-Gatehouse-Subject": {"alice"}}},
		// HTTP/2 clients send one Cookie field per cookie (RFC 9113 §8.2.3).
		{"cookies split over several lines", "/api/orders",
			http.Header{"Cookie": {"sid=" + tok, "theme=dark", "lang=en; sid=" + tok}},
			map[string][]string{"Cookie": {"theme=dark", "lang=en"}, "X-Gatehouse-Subject": {"alice"}}},
		// net/http reads " sid = v" as the cookie sid: so does the stripper.
		{"token cookie with spaces around the name", "/api/orders",
			http.Header{"Cookie": {"a=1;  sid =" + tok}},
			map[string][]string{"Cookie": {"a=1"}, "X-Gatehouse-Subject": {"alice"}}},
		// A client repeating the cookie must not smuggle the second copy through.
		{"the token cookie twice", "/api/orders",
			http.Header{"Cookie": {"sid=" + tok + "; sid=" + other}},
			map[string][]string{"X-Gatehouse-Subject": {"alice"}}},
		{"header and cookie both carry tokens", "/api/orders",
			http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"sid=" + other + "; theme=dark"}},
			map[string][]string{"Cookie": {"theme=dark"}, "X-Gatehouse-Subject": {"alice"}}},
		{"public path with a token", "/public/logo.png",
			http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"sid=" + tok}},
			map[string][]string{}},
		{"optional path with a revoked-looking token", "/home",
			http.Header{"Authorization": {"Bearer gh2.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}},
			map[string][]string{}},
		// Not a session token: the app's own credentials and cookies stay.
		{"basic credentials for the app", "/public/x",
			http.Header{"Authorization": {"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}},
			map[string][]string{"Authorization": {"Basic YWxhZGRpbjpvcGVuc2VzYW1l"}}},
		{"cookies whose names only resemble the token's", "/public/x",
			http.Header{"Cookie": {"SID=1; sidx=2; xsid=3"}},
			map[string][]string{"Cookie": {"SID=1; sidx=2; xsid=3"}}},
	}
	names := []string{"Authorization", "Cookie", "X-Gatehouse-Subject"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := received(t, s, a, tt.path, tt.header, names...)
			if got == nil {
				t.Fatalf("status %d: the request did not reach the app", code)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("headers the app received (-want +got):\n%s", diff)
			}
		})
	}

	// forwardToken: the app gets the token as the client sent it.
	writeFile(t, s.cfgPath, policy(`,"forwardToken":true`))
	eventually(t, "forwardToken in force", func() bool {
		_, got := received(t, s, a, "/api/orders", http.Header{"Authorization": {"Bearer " + tok}}, "Authorization")
		return got != nil && len(got["Authorization"]) == 1
	})
	h := http.Header{"Authorization": {"Bearer " + tok}, "Cookie": {"theme=dark; sid=" + tok}}
	_, got := received(t, s, a, "/api/orders", h, names...)
	want := map[string][]string{"Authorization": {"Bearer " + tok}, "Cookie": {"theme=dark; sid=" + tok}, "X-Gatehouse-Subject": {"alice"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("with forwardToken, headers the app received (-want +got):\n%s", diff)
	}
}
