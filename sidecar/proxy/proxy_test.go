package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redisconn"
	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
)

func TestForgedGatehouseHeadersNeverReachTheApp(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("h", "")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })

	resp, _ := get(t, s.data+"/anything", http.Header{
		"X-Gatehouse-Subject":     {"admin"},
		"X-Gatehouse-Claim-Roles": {"root"},
		"X-Gatehouse-Client-Ip":   {"1.2.3.4"},
		"x-gatehouse-lowercase":   {"raw key"}, // not canonicalised by the client
		"X-Other":                 {"kept"},
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	a.mu.Lock()
	got := a.last
	a.mu.Unlock()
	var gatehouse []string
	for k, v := range got {
		if strings.HasPrefix(strings.ToLower(k), "x-gatehouse-") {
			gatehouse = append(gatehouse, k+"="+strings.Join(v, ","))
		}
	}
	slices.Sort(gatehouse)
	// The only X-Gatehouse-* header is the one the sidecar set itself.
	if diff := cmp.Diff([]string{"X-Gatehouse-Client-Ip=127.0.0.1"}, gatehouse); diff != "" {
		t.Errorf("X-Gatehouse headers at the app (-want +got):\n%s", diff)
	}
	if got.Get("X-Other") != "kept" {
		t.Errorf("unrelated header lost: %v", got)
	}
}

// The hot-reload acceptance test: behaviour switches without a restart, a
// broken file keeps the old behaviour and is visible in /readyz and the
// metric, and fixing the file recovers.
func TestHotReload(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("one", "")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })

	forwarded := http.Header{"X-Forwarded-For": {"198.51.100.9"}}
	clientIPSeen := func() string {
		_, body := get(t, s.data+"/", forwarded)
		var h http.Header
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("app body %q: %v", body, err)
		}
		return h.Get(contract.ClientIPHeader)
	}
	if got := clientIPSeen(); got != "127.0.0.1" {
		t.Fatalf("client IP with no trusted proxies = %q, want the peer 127.0.0.1", got)
	}

	// Trust loopback: X-Forwarded-For now names the client.
	writeFile(t, s.cfgPath, cfgDoc("two", `"proxy":{"trustedProxies":["127.0.0.0/8"]}`))
	eventually(t, "trusted proxies in force", func() bool { return clientIPSeen() == "198.51.100.9" })
	code, rd := readyz(t, s)
	if code != http.StatusOK || rd.Config.Hash != "two" || rd.Config.Generation != 2 || len(rd.Warnings) != 0 {
		t.Errorf("readyz after good reload = %d %+v", code, rd)
	}
	if got := metric(t, s, "gatehouse_sidecar_config_last_reload_successful"); got != "1" {
		t.Errorf("last_reload_successful = %q, want 1", got)
	}

	// A broken file: the old behaviour stays, /readyz shows why, the metric flips.
	writeFile(t, s.cfgPath, cfgDoc("three", `"proxy":{"trustedProxies":["not-a-cidr"]}`))
	eventually(t, "broken config reported", func() bool {
		_, rd := readyz(t, s)
		return rd.Config.LastError != ""
	})
	code, rd = readyz(t, s)
	if code != http.StatusOK {
		t.Errorf("readyz status with a rejected reload = %d, want 200 (the previous config still serves)", code)
	}
	if !strings.Contains(rd.Config.LastError, `proxy.trustedProxies[0]: invalid CIDR or address "not-a-cidr"`) || rd.Config.Hash != "two" {
		t.Errorf("readyz config = %+v", rd.Config)
	}
	if len(rd.Warnings) != 1 || !strings.Contains(rd.Warnings[0], "not-a-cidr") {
		t.Errorf("readyz warnings = %q", rd.Warnings)
	}
	if got := metric(t, s, "gatehouse_sidecar_config_last_reload_successful"); got != "0" {
		t.Errorf("last_reload_successful = %q, want 0", got)
	}
	if got := metric(t, s, `gatehouse_sidecar_config_reloads_total{result="failure"}`); got != "1" {
		t.Errorf("reloads_total{failure} = %q, want 1", got)
	}
	if got := clientIPSeen(); got != "198.51.100.9" {
		t.Errorf("client IP after broken reload = %q, want the old behaviour", got)
	}

	// Fixing it recovers, again without a restart.
	writeFile(t, s.cfgPath, cfgDoc("four", ""))
	eventually(t, "fixed config in force", func() bool { return clientIPSeen() == "127.0.0.1" })
	_, rd = readyz(t, s)
	if rd.Config.LastError != "" || rd.Config.Hash != "four" || rd.Config.Generation != 3 {
		t.Errorf("readyz after fix = %+v", rd.Config)
	}
}

func TestNoValidConfigRefusesTrafficUntilFixed(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, `{"apiVersion":"v0"}`).start(t)
	resp, body := get(t, s.data+"/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != problem.ContentType {
		t.Fatalf("data path without config = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "config-not-loaded") {
		t.Errorf("problem body = %s", body)
	}
	code, rd := readyz(t, s)
	if code != http.StatusServiceUnavailable || rd.Ready {
		t.Errorf("readyz without config = %d", code)
	}
	if i := slices.IndexFunc(rd.Checks, func(c Check) bool { return c.Name == "config" }); i < 0 || rd.Checks[i].OK || !strings.Contains(rd.Checks[i].Error, "apiVersion") {
		t.Errorf("readyz checks = %+v", rd.Checks)
	}
	writeFile(t, s.cfgPath, cfgDoc("ok", ""))
	eventually(t, "traffic flows", func() bool {
		resp, _ := get(t, s.data+"/", nil)
		return resp.StatusCode == http.StatusOK
	})
	if code, _ := readyz(t, s); code != http.StatusOK {
		t.Errorf("readyz after fix = %d", code)
	}
}

// A pod that starts before the operator has rendered its namespace's
// ConfigMap (the namespace and its policies applied together, or the
// operator down) has an empty config volume. Its sidecar must not pass
// traffic as if no policy were in force: the routes a SessionPolicy will
// protect would be open until the file appears. It refuses traffic and
// stays unready until a document loads, and the operator's explicit empty
// document is what "no policy in force" looks like.
func TestMissingConfigFileFailsClosed(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, "").start(t)
	resp, body := get(t, s.data+"/admin/orders", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "config-not-loaded") {
		t.Fatalf("data path without a config file = %d %s, want 503 config-not-loaded", resp.StatusCode, body)
	}
	a.mu.Lock()
	reached := a.last != nil
	a.mu.Unlock()
	if reached {
		t.Fatal("a request reached the app without a configuration in force")
	}
	code, rd := readyz(t, s)
	if code != http.StatusServiceUnavailable || rd.Ready || rd.Config.Loaded {
		t.Errorf("readyz without a config file = %d %+v, want 503 and nothing loaded", code, rd)
	}
	if i := slices.IndexFunc(rd.Checks, func(c Check) bool { return c.Name == "config" }); i < 0 || rd.Checks[i].OK || !strings.Contains(rd.Checks[i].Error, "does not exist") {
		t.Errorf("readyz config check = %+v, want the missing file named", rd.Checks)
	}

	writeFile(t, s.cfgPath, cfgDoc("empty", ""))
	eventually(t, "the explicit empty document in force", func() bool {
		resp, _ := get(t, s.data+"/admin/orders", nil)
		return resp.StatusCode == http.StatusOK
	})
	if code, rd := readyz(t, s); code != http.StatusOK || rd.Config.Hash != "empty" {
		t.Errorf("readyz with the empty document = %d %+v", code, rd.Config)
	}
}

func TestReadyzFollowsRedis(t *testing.T) {
	srv := redistest.StartStandalone(t)
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("r", `"redis":[{"name":"main","mode":"Standalone","addrs":["`+srv.Addr()+`"]}],
		"sessions":[{"namespace":"ns","name":"s","redis":"main","ttl":"1m","sliding":true,"publicPaths":["/"]}]`)).start(t)
	eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
	_, rd := readyz(t, s)
	if diff := cmp.Diff([]Check{{Name: "draining", OK: true}, {Name: "terminating", OK: true}, {Name: "config", OK: true}, {Name: "redis/main", OK: true}}, rd.Checks); diff != "" {
		t.Errorf("checks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"session:ns/s"}, rd.Policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unready with Redis down", func() bool { code, _ := readyz(t, s); return code == http.StatusServiceUnavailable })
	_, rd = readyz(t, s)
	i := slices.IndexFunc(rd.Checks, func(c Check) bool { return c.Name == "redis/main" })
	if i < 0 || rd.Checks[i].OK || rd.Checks[i].Error == "" || rd.Ready {
		t.Errorf("readyz with Redis down = %+v", rd)
	}

	srv.Start(t)
	eventually(t, "ready again", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
}

// stub is a feature for exercising graph building, swapping and closing
// without depending on what a real feature does.
type stub struct {
	name    string
	closed  atomic.Bool
	block   chan struct{} // when set, requests to /block wait on it
	entered chan struct{}
}

func (f *stub) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			f.entered <- struct{}{}
			<-f.block
		}
		w.Header().Set("X-Stub", f.name)
		next.ServeHTTP(w, r)
	})
}

func (f *stub) RegisterAdmin(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/stub", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(f.name)) })
}

func (f *stub) Close() error { f.closed.Store(true); return nil }

func TestReloadSwapsWholeGraphAndClosesTheOldOneWhenIdle(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, "")
	var mu sync.Mutex
	built := map[string]*stub{}
	s.p.builders = []builder{func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error) {
		// The stub takes the config hash from the session policy's name.
		name := sel.session.Meta.Name
		if name == "fail" {
			return nil, errors.New("constructor failed")
		}
		f := &stub{name: name, block: make(chan struct{}), entered: make(chan struct{}, 1)}
		mu.Lock()
		built[name] = f
		mu.Unlock()
		return f, nil
	}}
	policy := func(name string) string {
		return cfgDoc(name, `"redis":[{"name":"r","mode":"Standalone","addrs":["127.0.0.1:1"]}],
			"sessions":[{"namespace":"ns","name":"`+name+`","redis":"r","ttl":"1m"}]`)
	}
	writeFile(t, s.cfgPath, policy("v1"))
	s.start(t)
	stubSeen := func() string { resp, _ := get(t, s.data+"/", nil); return resp.Header.Get("X-Stub") }
	eventually(t, "v1 in force", func() bool { return stubSeen() == "v1" })
	if _, body := get(t, s.admin+"/v1/stub", nil); body != "v1" {
		t.Errorf("feature admin route = %q", body)
	}
	if resp, body := get(t, s.admin+"/v1/nothing", nil); resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not-found") {
		t.Errorf("unknown admin route = %d %s", resp.StatusCode, body)
	}

	// A request in flight on v1 keeps v1 open across the swap.
	slow := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(s.data + "/block")
		if err != nil {
			t.Errorf("slow request: %v", err)
		}
		slow <- resp
	}()
	<-built["v1"].entered

	// A failing constructor keeps v1 and reports the error.
	writeFile(t, s.cfgPath, policy("fail"))
	eventually(t, "failure reported", func() bool {
		return strings.Contains(s.p.watcher.Status().LastError, "constructor failed")
	})
	if got := stubSeen(); got != "v1" {
		t.Errorf("after failed build X-Stub = %q, want v1", got)
	}

	writeFile(t, s.cfgPath, policy("v2"))
	eventually(t, "v2 in force", func() bool { return stubSeen() == "v2" })
	if _, body := get(t, s.admin+"/v1/stub", nil); body != "v2" {
		t.Errorf("feature admin route after swap = %q", body)
	}
	if built["v1"].closed.Load() {
		t.Fatal("v1 closed while a request was still running on it")
	}
	close(built["v1"].block)
	resp := <-slow
	if resp == nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Stub") != "v1" {
		t.Fatalf("slow request = %+v", resp)
	}
	resp.Body.Close()
	eventually(t, "v1 closed once idle", func() bool { return built["v1"].closed.Load() })
	if built["v2"].closed.Load() {
		t.Error("v2 closed while in force")
	}
	if got := metric(t, s, `gatehouse_sidecar_handler_builds_total{result="failure"}`); got != "1" {
		t.Errorf("handler_builds_total{failure} = %q", got)
	}
}

func TestPodLabelsSelectPoliciesAndAreWatched(t *testing.T) {
	a := newApp(t)
	labelsPath := t.TempDir() + "/labels"
	writeFile(t, labelsPath, "app=\"api\"\n")
	s := newSidecar(t, a.URL, cfgDoc("l", `"redis":[{"name":"r","mode":"Standalone","addrs":["127.0.0.1:1"]}],
		"rateLimits":[
			{"namespace":"ns","name":"everyone","redis":"r","rules":[{"name":"a","limit":1,"window":"1s"}]},
			{"namespace":"ns","name":"web-only","redis":"r","selector":{"matchLabels":{"app":"web"}},"rules":[{"name":"a","limit":1,"window":"1s"}]}
		]`), withLabels(labelsPath))
	s.p.builders = nil // only selection is under test here
	s.start(t)
	policies := func() []string { _, rd := readyz(t, s); return rd.Policies }
	eventually(t, "config loaded", func() bool { return len(policies()) > 0 })
	if diff := cmp.Diff([]string{"rateLimit:ns/everyone"}, policies()); diff != "" {
		t.Errorf("policies for app=api (-want +got):\n%s", diff)
	}
	writeFile(t, labelsPath, "app=\"web\"\n")
	eventually(t, "relabelled pod selects web-only", func() bool { return len(policies()) == 2 })

	writeFile(t, labelsPath, "app=web\n") // unquoted: rejected, labels kept
	eventually(t, "bad labels reported", func() bool {
		_, rd := readyz(t, s)
		return len(rd.Warnings) == 1 && strings.Contains(rd.Warnings[0], "pod labels")
	})
	_, rd := readyz(t, s)
	if diff := cmp.Diff(map[string]string{"app": "web"}, rd.Labels); diff != "" || len(rd.Policies) != 2 {
		t.Errorf("labels after bad file (-want +got):\n%s policies %v", diff, rd.Policies)
	}
	if got := metric(t, s, "gatehouse_sidecar_pod_labels_last_read_successful"); got != "0" {
		t.Errorf("pod_labels_last_read_successful = %q", got)
	}
}

// The drain acceptance test: 200 slow requests in flight when shutdown
// starts all complete with 200, /readyz reports draining meanwhile, and new
// connections are refused.
func TestDrainFinishesInFlightRequests(t *testing.T) {
	const n = 200
	var inApp atomic.Int64
	release := make(chan struct{})
	appSrv := newApp(t)
	appSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inApp.Add(1)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	s := newSidecar(t, appSrv.URL, cfgDoc("d", ""))
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
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.p.Run(ctx, Listeners{Data: dl, Admin: al}) }()
	eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	codes := make(chan int, n)
	for range n {
		go func() {
			resp, err := client.Get(s.data + "/slow")
			if err != nil {
				t.Errorf("in-flight request failed: %v", err)
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	eventually(t, "200 requests in flight", func() bool { return inApp.Load() == n })

	cancel() // what SIGTERM does in cmd/sidecar
	eventually(t, "readyz reports draining", func() bool {
		code, rd := readyz(t, s)
		return code == http.StatusServiceUnavailable && !rd.Checks[0].OK && rd.Checks[0].Name == "draining"
	})
	eventually(t, "new connections refused", func() bool {
		c, err := net.Dial("tcp", dl.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	for range n {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("in-flight request finished with %d, want 200", code)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Run after drain: %v", err)
	}
}

func TestDrainTimeoutCutsOffStragglers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	appSrv := newApp(t)
	var inApp atomic.Int64
	appSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inApp.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	s := newSidecar(t, appSrv.URL, cfgDoc("d", ""))
	s.p.drainTimeout = 100 * time.Millisecond
	s.run(t)
	go func() {
		resp, err := http.Get(s.data + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, "request in flight", func() bool { return inApp.Load() == 1 })
	s.cancel()
	if err := <-s.done; err == nil || !strings.Contains(err.Error(), "cut off") {
		t.Errorf("Run with a stuck request = %v, want a drain timeout error", err)
	}
}

func TestUpstreamDownIsProblem502(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, cfgDoc("u", "")).start(t)
	eventually(t, "config loaded", func() bool { return s.p.watcher.Status().Loaded })
	a.Close()
	resp, body := get(t, s.data+"/x", nil)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Content-Type") != problem.ContentType || !strings.Contains(body, "upstream-unavailable") {
		t.Errorf("upstream down = %d %s", resp.StatusCode, body)
	}
	if got := metric(t, s, `gatehouse_sidecar_requests_total{code="5xx"}`); got != "1" {
		t.Errorf("requests_total{5xx} = %q", got)
	}
}

// The status listener is exposed on the pod IP for probes and scrapes, so it
// must never serve the feature admin API (which mints sessions).
func TestStatusListenerServesOnlyHealthAndMetrics(t *testing.T) {
	a := newApp(t)
	s := newSidecar(t, a.URL, "")
	s.p.builders = []builder{func(sel selection, clients map[string]*redisconn.Conn, log *slog.Logger) (feature, error) {
		return &stub{name: sel.session.Meta.Name, block: make(chan struct{}), entered: make(chan struct{}, 1)}, nil
	}}
	writeFile(t, s.cfgPath, cfgDoc("v1", `"redis":[{"name":"r","mode":"Standalone","addrs":["127.0.0.1:1"]}],
		"sessions":[{"namespace":"ns","name":"v1","redis":"r","ttl":"1m"}]`))
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	dl, al, sl := listen(), listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.p.Run(ctx, Listeners{Data: dl, Admin: al, Status: sl}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	admin, status := "http://"+al.Addr().String(), "http://"+sl.Addr().String()
	eventually(t, "feature admin route on the admin listener", func() bool {
		resp, body := get(t, admin+"/v1/stub", nil)
		return resp.StatusCode == http.StatusOK && body == "v1"
	})
	if resp, _ := get(t, status+"/v1/stub", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status listener served a feature admin route: %d", resp.StatusCode)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if resp, _ := get(t, status+path, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("status listener %s = %d, want 200", path, resp.StatusCode)
		}
	}
	if resp, _ := get(t, status+"/readyz", nil); resp.StatusCode == http.StatusNotFound {
		t.Error("status listener does not serve /readyz")
	}
}
