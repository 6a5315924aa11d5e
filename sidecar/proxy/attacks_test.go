package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

// The regression tests of issue 13: each replays one attack an adversarial
// review ran against a real sidecar (fdded49), through the real proxy
// handler on real listeners with a real Redis, and checks that it is now
// refused or neutralised. docs/security.md lists them.

// recordingApp is an upstream that remembers every request target and the
// headers of every request it received, and answers "ok <target>".
type recordingApp struct {
	*httptest.Server
	mu      sync.Mutex
	targets []string
	headers []http.Header
}

func newRecordingApp(t *testing.T) *recordingApp {
	a := &recordingApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.targets = append(a.targets, r.RequestURI)
		a.headers = append(a.headers, r.Header.Clone())
		a.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "ok %s lang=%s", r.RequestURI, r.Header.Get("Accept-Language"))
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *recordingApp) seen() ([]string, []http.Header) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.targets), slices.Clone(a.headers)
}

// raw sends one HTTP/1.1 request exactly as written (no client-side
// cleaning of the target or the header names) and reads the answer.
func raw(t *testing.T, base, method, target string, header ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: app.test\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	if method == http.MethodPost {
		req += "Content-Length: 0\r\n"
	}
	req += "Connection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func redisDoc(addr, rest string) string {
	return `"redis":[{"name":"main","mode":"Standalone","addrs":["` + addr + `"]}],` + rest
}

func startWithConfig(t *testing.T, upstream, body string) *sidecar {
	t.Helper()
	s := newSidecar(t, upstream, cfgDoc("attack", body)).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	return s
}

// mint creates a session on the admin API and returns its token.
func mint(t testing.TB, s *sidecar, subject string, claims map[string]string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"subject": subject, "claims": claims})
	resp, err := http.Post(s.admin+"/v1/sessions", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var created struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&created); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d %v", resp.StatusCode, err)
	}
	return created.Token
}

// Attack 1: public-path bypass. publicPaths ["/public/"], requireFor ["/"],
// no token: ';' parameters and backslashes walked out of the public prefix
// to /admin, which Tomcat, Jetty, Spring (";") and IIS ("\") route as /admin.
func TestAttackPublicPathBypass(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newRecordingApp(t)
	s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
		`"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1m","requireFor":["/"],"publicPaths":["/public/"]}]`))

	tests := []struct {
		target string
		status int
	}{
		{"/public/x", http.StatusOK},
		{"/admin", http.StatusUnauthorized},
		{"/public/../admin", http.StatusUnauthorized},
		{"/public/%2e%2e/admin", http.StatusUnauthorized},
		{"/public/..;/admin", http.StatusBadRequest},
		{"/public/%2e%2e;/admin", http.StatusBadRequest},
		{`/public/..\admin`, http.StatusBadRequest},
		{"/public/..%5Cadmin", http.StatusBadRequest},
		{"/public%2F..%2Fadmin", http.StatusBadRequest},
		{"/public/;x/../admin", http.StatusBadRequest},
	}
	for _, tt := range tests {
		resp, body := raw(t, s.data, http.MethodGet, tt.target)
		if resp.StatusCode != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.target, resp.StatusCode, body, tt.status)
		}
		if tt.status == http.StatusBadRequest && resp.Header.Get("Content-Type") != problem.ContentType {
			t.Errorf("GET %s: Content-Type %q, want problem+json", tt.target, resp.Header.Get("Content-Type"))
		}
	}
	targets, _ := a.seen()
	if diff := cmp.Diff([]string{"/public/x"}, targets); diff != "" {
		t.Errorf("requests the app received (-want +got):\n%s", diff)
	}
}

// Attack 2: rate-limit evasion by path spelling. A rule on /api/login,
// limit 1 per minute: spellings of the same route each got a fresh 200.
func TestAttackRateLimitEvasionBySpelling(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newRecordingApp(t)
	s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
		`"rateLimits":[{"namespace":"ns","name":"login","redis":"main","rules":[
			{"name":"login","match":{"pathPrefix":"/api/login"},"key":{"clientIP":true},"limit":1,"window":"1m"},
			{"name":"login-any-case","match":{"pathPrefix":"/v2/login","caseInsensitive":true},"key":{"clientIP":true,"path":true},"limit":1,"window":"1m"}]}]`))

	for _, c := range []struct {
		target string
		status int
	}{
		{"/api/login", http.StatusOK},
		{"/api/login", http.StatusTooManyRequests},
		{"//api/login", http.StatusTooManyRequests},
		{"/x/../api/login", http.StatusTooManyRequests},
		{"/api/./login", http.StatusTooManyRequests},
		{"/api/%6cogin", http.StatusTooManyRequests},
		{"/api//login/", http.StatusTooManyRequests},
		// Case-insensitive apps: the rule opted in, and the path key folds.
		{"/v2/login", http.StatusOK},
		{"/V2/LOGIN", http.StatusTooManyRequests},
		{"/v2/Login", http.StatusTooManyRequests},
	} {
		if resp, body := raw(t, s.data, http.MethodPost, c.target); resp.StatusCode != c.status {
			t.Errorf("POST %s = %d %s, want %d", c.target, resp.StatusCode, body, c.status)
		}
	}
	// By default matching is case-sensitive, as most routers are.
	if resp, _ := raw(t, s.data, http.MethodPost, "/API/login"); resp.StatusCode != http.StatusOK {
		t.Errorf("POST /API/login = %d, want 200 (the /api/login rule is case-sensitive)", resp.StatusCode)
	}
	targets, _ := a.seen()
	if diff := cmp.Diff([]string{"/api/login", "/v2/login", "/API/login"}, targets); diff != "" {
		t.Errorf("requests the app received (-want +got):\n%s", diff)
	}
}

// Attack 2, continued: cache and invalidation rules matched the raw path
// the same way, so //products/1 missed the entry of /products/1 (and was
// passed to the app as written) and a write to /x/../products/1 evicted
// nothing.
func TestAttackCacheRulesMatchTheCanonicalPath(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newRecordingApp(t)
	s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
		`"caches":[{"namespace":"ns","name":"c","redis":"main",
			"rules":[{"name":"products","match":{"pathPrefix":"/products/"},"ttl":"1m","honorCacheControl":true}],
			"invalidate":[{"name":"writes","match":{"pathPrefix":"/products/"},"requestPath":true}]}]`))

	step := func(method, target, wantCache string) {
		t.Helper()
		resp, body := raw(t, s.data, method, target)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s = %d %s", method, target, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Cache"); !strings.HasPrefix(got, wantCache) {
			t.Errorf("%s %s: X-Cache %q, want %s", method, target, got, wantCache)
		}
	}
	step(http.MethodGet, "/products/1", "MISS")
	eventually(t, "entry stored", func() bool {
		resp, _ := raw(t, s.data, http.MethodGet, "/products/1")
		return strings.HasPrefix(resp.Header.Get("X-Cache"), "HIT")
	})
	step(http.MethodGet, "//products/1", "HIT")
	step(http.MethodGet, "/products/./1", "HIT")
	step(http.MethodGet, "/%70roducts/1", "HIT")
	resp, _ := raw(t, s.data, http.MethodPost, "/x/../products/1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST = %d", resp.StatusCode)
	}
	eventually(t, "write evicted the entry", func() bool {
		resp, _ := raw(t, s.data, http.MethodGet, "/products/1")
		return strings.HasPrefix(resp.Header.Get("X-Cache"), "MISS")
	})
	targets, _ := a.seen()
	for _, got := range targets {
		if got != "/products/1" {
			t.Errorf("the app received %q; every spelling must reach it as /products/1", got)
		}
	}
}

// Attack 3: stripping the sidecar's identity headers by naming them in
// Connection, which the reverse proxy honoured after the session step set
// them: the app saw a valid request with no subject, claims or client IP.
func TestAttackConnectionStripsIdentityHeaders(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newRecordingApp(t)
	s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
		`"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1m","requireFor":["/"],"forwardClaims":["role"]}]`))
	tok := mint(t, s, "alice", map[string]string{"role": "viewer"})

	resp, body := raw(t, s.data, http.MethodGet, "/orders",
		"Authorization: Bearer "+tok,
		"Connection: X-Gatehouse-Subject, X-Gatehouse-Claim-Role, X-Gatehouse-Client-Ip")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /orders = %d %s", resp.StatusCode, body)
	}
	_, headers := a.seen()
	got := identityHeaders(headers[len(headers)-1])
	want := []string{"X-Gatehouse-Claim-Role=viewer", "X-Gatehouse-Client-Ip=127.0.0.1", "X-Gatehouse-Subject=alice"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("identity headers at the app (-want +got):\n%s", diff)
	}
}

// identityHeaders lists the headers of h in the reserved namespace, with
// names folded as CGI does ('_' read as '-'), as "Name=value".
func identityHeaders(h http.Header) []string {
	var out []string
	for k, vs := range h {
		folded := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if strings.HasPrefix(folded, "x-gatehouse-") {
			out = append(out, k+"="+strings.Join(vs, ","))
		}
	}
	slices.Sort(out)
	return out
}

// Attack 4: forging identity with underscores, which CGI, WSGI, PHP and
// Rack servers read as the same HTTP_X_GATEHOUSE_SUBJECT.
func TestAttackUnderscoreIdentityForgery(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newRecordingApp(t)
	s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
		`"sessions":[{"namespace":"ns","name":"web","redis":"main","ttl":"1m","requireFor":["/account/"],"forwardClaims":["role"]}]`))
	tok := mint(t, s, "alice", map[string]string{"role": "viewer"})

	forged := []string{"X_Gatehouse_Subject: admin", "X-Gatehouse_claim-Role: admin", "x_gatehouse_client_ip: 10.0.0.1", "X-GATEHOUSE-SUBJECT: admin"}
	// Anonymous, on a path that needs no session.
	if resp, body := raw(t, s.data, http.MethodGet, "/catalog", forged...); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /catalog = %d %s", resp.StatusCode, body)
	}
	// With a valid session.
	if resp, body := raw(t, s.data, http.MethodGet, "/account/me", append(forged, "Authorization: Bearer "+tok)...); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /account/me = %d %s", resp.StatusCode, body)
	}
	_, headers := a.seen()
	if diff := cmp.Diff([]string{"X-Gatehouse-Client-Ip=127.0.0.1"}, identityHeaders(headers[0])); diff != "" {
		t.Errorf("anonymous request: identity headers at the app (-want +got):\n%s", diff)
	}
	want := []string{"X-Gatehouse-Claim-Role=viewer", "X-Gatehouse-Client-Ip=127.0.0.1", "X-Gatehouse-Subject=alice"}
	if diff := cmp.Diff(want, identityHeaders(headers[1])); diff != "" {
		t.Errorf("session request: identity headers at the app (-want +got):\n%s", diff)
	}
}

// Attack 5: hop-by-hop games in general. A header a feature reads, named in
// Connection, was seen by the feature and then dropped before the app (or
// the other way round): the rate limit keyed on a tenant the app never saw,
// the session step accepted a token the app never saw, and the cache stored
// the app's answer for a request without Accept-Language under the variant
// of the Accept-Language the client sent, poisoning it for real clients.
func TestAttackHopByHopHeaderGames(t *testing.T) {
	srv := redistest.StartStandalone(t)

	t.Run("rate-limit key header", func(t *testing.T) {
		a := newRecordingApp(t)
		s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
			`"rateLimits":[{"namespace":"ns","name":"tenants","redis":"main","rules":[
				{"name":"per-tenant","key":{"header":"X-Tenant"},"limit":1,"window":"1m"}]}]`))
		// Each request claims a fresh tenant but hides it from the app.
		for i, want := range []int{http.StatusOK, http.StatusTooManyRequests, http.StatusTooManyRequests} {
			resp, _ := raw(t, s.data, http.MethodGet, "/api/things", fmt.Sprintf("X-Tenant: t%d", i), "Connection: X-Tenant")
			if resp.StatusCode != want {
				t.Errorf("request %d = %d, want %d: the limit must count what the app sees (no tenant: per client IP)", i, resp.StatusCode, want)
			}
		}
		_, headers := a.seen()
		for _, h := range headers {
			if h.Get("X-Tenant") != "" {
				t.Errorf("the app received X-Tenant %q", h.Get("X-Tenant"))
			}
		}
	})

	t.Run("session token", func(t *testing.T) {
		a := newRecordingApp(t)
		s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
			`"sessions":[{"namespace":"ns","name":"hop","redis":"main","ttl":"1m","requireFor":["/"]}]`))
		tok := mint(t, s, "bob", nil)
		resp, _ := raw(t, s.data, http.MethodGet, "/me", "Authorization: Bearer "+tok, "Connection: Authorization")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token named in Connection = %d, want 401 (the session step and the app must both go without it)", resp.StatusCode)
		}
		if resp, _ := raw(t, s.data, http.MethodGet, "/me", "Authorization: Bearer "+tok); resp.StatusCode != http.StatusOK {
			t.Errorf("token = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("cache vary header", func(t *testing.T) {
		a := newRecordingApp(t)
		s := startWithConfig(t, a.URL, redisDoc(srv.Addr(),
			`"caches":[{"namespace":"ns","name":"vary","redis":"main",
				"rules":[{"name":"pages","match":{"pathPrefix":"/"},"ttl":"1m","varyHeaders":["Accept-Language"],"honorCacheControl":true}]}]`))
		// The attacker's request: German for the cache, no language for the app.
		_, body := raw(t, s.data, http.MethodGet, "/welcome", "Accept-Language: de", "Connection: Accept-Language")
		if body != "ok /welcome lang=" {
			t.Fatalf("attacker's answer = %q", body)
		}
		eventually(t, "the attacker's answer stored", func() bool {
			resp, _ := raw(t, s.data, http.MethodGet, "/welcome", "Accept-Language: de", "Connection: Accept-Language")
			return strings.HasPrefix(resp.Header.Get("X-Cache"), "HIT")
		})
		_, body = raw(t, s.data, http.MethodGet, "/welcome", "Accept-Language: de")
		if body != "ok /welcome lang=de" {
			t.Errorf("a German client got %q: the cache was poisoned with the attacker's language-less answer", body)
		}
	})
}

// deadlineDoc is a config with the progress deadlines shortened, so that
// the slow-client tests take a second instead of a minute.
const deadlineDoc = `"proxy":{"writeTimeout":"300ms","bodyReadTimeout":"300ms"}`

// Attack 6a: a slow reader. The client asks for a large response and never
// reads it; before, the sidecar's write blocked forever, holding its
// goroutine, the client connection and the upstream request. Now the write
// that makes no progress for writeTimeout aborts the response, which also
// releases the app.
func TestAttackSlowReader(t *testing.T) {
	appDone := make(chan error, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		appDone <- flood(w)
	}))
	defer app.Close()
	s := startWithConfig(t, app.URL, deadlineDoc)

	c := dialData(t, s, "GET /download HTTP/1.1\r\nHost: app.test\r\n\r\n")
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	// Never read.
	waitStalledWrite(t, s, appDone)
	eventually(t, "no request left in flight", func() bool {
		return metric(t, s, "gatehouse_sidecar_requests_in_flight") == "0"
	})
}

// flood writes to w for at most 60s and returns the first write error, or
// nil if every write succeeded: an app streaming to a client that may not
// read.
func flood(w io.Writer) error {
	chunk := make([]byte, 64<<10)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if _, err := w.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

// waitStalledWrite waits for the flooding app to be released (its write
// failed because the sidecar aborted the stalled response) and for the
// stall to be counted. Slack: the app fills several megabytes of socket
// buffers first, on a loaded machine; the bound asserts the mechanism (the
// stalled write is cut), not its speed.
func waitStalledWrite(t *testing.T, s *sidecar, appDone <-chan error) {
	t.Helper()
	select {
	case err := <-appDone:
		if err == nil {
			t.Fatal("the app wrote for 60s into a client that never reads")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the app is still writing to a client that never reads: the sidecar's write to it is not bounded")
	}
	eventually(t, "the stalled write counted", func() bool {
		return metric(t, s, `gatehouse_sidecar_client_stalls_total{operation="write"}`) == "1"
	})
}

// dialData opens a connection to the sidecar's data listener and writes
// req on it, exactly as given.
func dialData(t *testing.T, s *sidecar, req string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.data, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return c
}

// Attack 6b: a slow writer. The client announces a body and then trickles
// it (or stops); before, the request held its goroutine and connection as
// long as the client liked. Now the body must progress by 1 KiB per
// bodyReadTimeout.
func TestAttackSlowBodyWriter(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trickle time.Duration // 0: send a little, then stop
	}{
		{"stops sending", 0},
		{"trickles a byte at a time", 50 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			appErr := make(chan error, 1)
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := io.ReadAll(r.Body)
				appErr <- err
			}))
			defer app.Close()
			s := startWithConfig(t, app.URL, deadlineDoc)

			c := dialData(t, s, "POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nfirst bytes")
			stop := make(chan struct{})
			defer close(stop)
			if tt.trickle > 0 {
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(tt.trickle):
							if _, err := c.Write([]byte("x")); err != nil {
								return
							}
						}
					}
				}()
			}
			select {
			case err := <-appErr:
				if err == nil {
					t.Fatal("the app read a complete body the client never sent")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the request is still open: reading the body is not bounded")
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer before the sidecar closed: %v", err)
			}
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status = %d, want 408", resp.StatusCode)
			}
			eventually(t, "the stalled body counted", func() bool {
				return metric(t, s, `gatehouse_sidecar_client_stalls_total{operation="body-read"}`) == "1"
			})
		})
	}
}

// Attack 3, second line of defence: even a request that reaches the reverse
// proxy with Connection naming identity headers (no normaliser in front)
// delivers them: the upstream puts them back after httputil.ReverseProxy's
// hop-by-hop removal.
func TestIdentityHeadersSurviveTheReverseProxy(t *testing.T) {
	a := newRecordingApp(t)
	u, err := url.Parse(a.URL)
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(u, newTransport(0, false), NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Connection", "X-Gatehouse-Subject, X-Gatehouse-Claim-Role, X-Other")
	r.Header.Set("X-Gatehouse-Subject", "alice")
	r.Header.Set("X-Gatehouse-Claim-Role", "viewer")
	r.Header.Set("X-Other", "hop")
	w := httptest.NewRecorder()
	up.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	_, headers := a.seen()
	if diff := cmp.Diff([]string{"X-Gatehouse-Claim-Role=viewer", "X-Gatehouse-Subject=alice"}, identityHeaders(headers[0])); diff != "" {
		t.Errorf("identity headers at the app (-want +got):\n%s", diff)
	}
	if headers[0].Get("X-Other") != "" {
		t.Error("a header named in Connection was forwarded")
	}
}
