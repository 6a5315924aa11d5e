package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// app is a real HTTP upstream that records the headers of the last request
// and echoes them back as JSON.
type app struct {
	*httptest.Server
	mu   sync.Mutex
	last http.Header
}

func newApp(t *testing.T) *app {
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.last = r.Header.Clone()
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(a.Close)
	return a
}

// sidecar is a Proxy running with Run on real loopback listeners.
type sidecar struct {
	p       *Proxy
	reg     *prometheus.Registry
	data    string // http://host:port
	admin   string
	cfgPath string
	cancel  context.CancelFunc
	done    chan error
}

type sidecarOpt func(*Options)

func withLabels(path string) sidecarOpt { return func(o *Options) { o.LabelsPath = path } }

func newSidecar(t testing.TB, upstream string, cfgDoc string, opts ...sidecarOpt) *sidecar {
	t.Helper()
	dir := t.TempDir()
	s := &sidecar{cfgPath: filepath.Join(dir, "config.json"), reg: prometheus.NewRegistry()}
	if cfgDoc != "" {
		writeFile(t, s.cfgPath, cfgDoc)
	}
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Upstream:     u,
		ConfigPath:   s.cfgPath,
		Registerer:   s.reg,
		Gatherer:     s.reg,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		DrainTimeout: 30 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	s.p, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs the sidecar; it stops (and must drain cleanly) at test end
// unless the test stopped it itself.
func (s *sidecar) start(t *testing.T) *sidecar {
	t.Helper()
	s.run(t)
	t.Cleanup(func() {
		s.cancel()
		if err := <-s.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

// run runs the sidecar for a test that stops it (s.cancel) and checks what
// Run returns (s.done) itself.
func (s *sidecar) run(t *testing.T) {
	t.Helper()
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.data, s.admin = "http://"+dl.Addr().String(), "http://"+al.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.p.Run(ctx, Listeners{Data: dl, Admin: al}) }()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	// Write-then-rename, so the watcher never reads a half-written file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func cfgDoc(hash, body string) string {
	if body != "" {
		body = "," + body
	}
	return fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"hash":%q%s}`, config.APIVersion, config.Kind, hash, body)
}

func get(t *testing.T, target string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func readyz(t *testing.T, s *sidecar) (int, Readiness) {
	t.Helper()
	resp, body := get(t, s.admin+"/readyz", nil)
	var rd Readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("readyz body %q: %v", body, err)
	}
	return resp.StatusCode, rd
}

// metric returns the value of an unlabelled-or-matching sample from /metrics.
func metric(t *testing.T, s *sidecar, series string) string {
	t.Helper()
	_, body := get(t, s.admin+"/metrics", nil)
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newSidecarB(b *testing.B, upstream string) *sidecar {
	return newSidecar(b, upstream, cfgDoc("bench", ""))
}
