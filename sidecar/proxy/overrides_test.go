package proxy

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// The operator renders no proxy section, so an injected sidecar takes its
// proxy settings from its command line (pod annotations, docs/injection.md).
// Each one set replaces the document's field, through every reload; the
// ones not set leave the document's in force.
func TestCommandLineProxySettingsOverrideTheDocument(t *testing.T) {
	a := newApp(t)
	withProxy := func(p config.Proxy) sidecarOpt { return func(o *Options) { o.Proxy = p } }
	s := newSidecar(t, a.URL, cfgDoc("one", `"proxy":{"trustedProxies":["192.0.2.0/24"],"bodyReadTimeout":"7s"}`),
		withProxy(config.Proxy{TrustedProxies: []string{"127.0.0.0/8"}, WriteTimeout: config.Duration(45 * time.Second)})).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })

	clientIPSeen := func() string {
		_, body := get(t, s.data+"/", http.Header{"X-Forwarded-For": {"198.51.100.9"}})
		var h http.Header
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("app body %q: %v", body, err)
		}
		return h.Get(contract.ClientIPHeader)
	}
	// The test client connects from loopback, which only the command line trusts.
	if got := clientIPSeen(); got != "198.51.100.9" {
		t.Errorf("client IP = %q, want the X-Forwarded-For client: loopback is trusted by the command line", got)
	}
	g := s.p.cur.Load()
	if g.timeouts.write != 45*time.Second || g.timeouts.bodyRead != 7*time.Second {
		t.Errorf("deadlines = %+v, want the command line's write timeout and the document's body read timeout", g.timeouts)
	}

	writeFile(t, s.cfgPath, cfgDoc("two", ""))
	eventually(t, "the reload in force", func() bool { return s.p.watcher.Status().Hash == "two" })
	if got := clientIPSeen(); got != "198.51.100.9" {
		t.Errorf("after a reload, client IP = %q: the command line's trusted proxies must stay in force", got)
	}
	if g := s.p.cur.Load(); g.timeouts.write != 45*time.Second || g.timeouts.bodyRead != time.Duration(config.DefaultBodyReadTimeout) {
		t.Errorf("after a reload, deadlines = %+v, want 45s and the default", g.timeouts)
	}
}

// A setting every document would be refused with stops the sidecar at
// start, naming it, instead of leaving it unready for good.
func TestInvalidCommandLineProxySettingsFailAtStart(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	_, err := New(Options{Upstream: u, ConfigPath: "/nonexistent", Proxy: config.Proxy{TrustedProxies: []string{"10.0.0.0/8", "not-a-cidr"}, BodyReadTimeout: config.Duration(-time.Second)}})
	if err == nil {
		t.Fatal("New accepted an invalid trusted proxy and a negative deadline")
	}
	for _, want := range []string{`trustedProxies[1]: invalid CIDR or address "not-a-cidr"`, "bodyReadTimeout: must be positive"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
