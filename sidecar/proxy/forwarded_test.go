package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The X-Forwarded-* headers the app receives. A client that reaches the
// sidecar directly could write any of them, so from an untrusted peer they
// are replaced: the peer's address, the Host it asked for, "http"; the
// RFC 7239 Forwarded header is dropped. From a peer in trustedProxies (a
// TLS-terminating load balancer) they describe the original request and
// pass on, the peer appended to X-Forwarded-For: an app building redirect
// URLs behind it sees https, not the sidecar's plain hop. Before, the
// chain and the scheme of a trusted proxy were dropped as well.
func TestForwardedHeaders(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("untrusted", "")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	host := strings.TrimPrefix(s.data, "http://")
	names := []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Gatehouse-Client-Ip"}
	forged := http.Header{
		"X-Forwarded-For":   {"203.0.113.7, 10.0.0.2"},
		"X-Forwarded-Host":  {"shop.example.com"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=203.0.113.7;proto=https"},
	}

	_, got := received(t, s, a, "/x", forged, names...)
	want := map[string][]string{
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {host}, "X-Forwarded-Proto": {"http"}, "X-Gatehouse-Client-Ip": {"127.0.0.1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from an untrusted peer, the app received (-want +got):\n%s", diff)
	}

	writeFile(t, s.cfgPath, cfgDoc("trusted", `"proxy":{"trustedProxies":["127.0.0.1"]}`))
	eventually(t, "trustedProxies in force", func() bool { return s.p.watcher.Status().Hash == "trusted" })
	_, got = received(t, s, a, "/x", forged, names...)
	want = map[string][]string{
		"X-Forwarded-For": {"203.0.113.7, 10.0.0.2, 127.0.0.1"}, "X-Forwarded-Host": {"shop.example.com"}, "X-Forwarded-Proto": {"https"},
		// The client is the first untrusted hop from the right.
		"X-Gatehouse-Client-Ip": {"10.0.0.2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from a trusted proxy, the app received (-want +got):\n%s", diff)
	}

	// A trusted proxy that sends none: the same as from any peer.
	_, got = received(t, s, a, "/x", nil, names...)
	want = map[string][]string{
		"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {host}, "X-Forwarded-Proto": {"http"}, "X-Gatehouse-Client-Ip": {"127.0.0.1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("from a trusted proxy sending no X-Forwarded-*, the app received (-want +got):\n%s", diff)
	}
}

// The app gets the client's Accept-Encoding as sent, and none when the
// client sent none: Go's transport would otherwise ask the app for gzip on
// the client's behalf and inflate the answer again (the app saw a header
// nobody sent, and both sides spent CPU on it).
func TestAppGetsTheClientsAcceptEncoding(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("ae", "")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	// A client that sends exactly the headers it is given.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tt := range []struct {
		sent []string
		want []string
	}{{nil, nil}, {[]string{"br"}, []string{"br"}}, {[]string{"gzip, deflate"}, []string{"gzip, deflate"}}} {
		req, _ := http.NewRequest(http.MethodGet, s.data+"/x", nil)
		req.Header["Accept-Encoding"] = tt.sent
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		a.mu.Lock()
		got := a.last.Values("Accept-Encoding")
		a.mu.Unlock()
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("client sent Accept-Encoding %q; the app received (-want +got):\n%s", tt.sent, diff)
		}
	}
}
