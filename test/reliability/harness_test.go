package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/internal/sidecarbin"
)

// sidecarBin is the gatehouse-sidecar binary under test, built once by TestMain
// exactly as it ships (the suite exercises the real process: signals, file
// descriptors, the config watcher).
var sidecarBin string

func TestMain(m *testing.M) { sidecarbin.Main(m, &sidecarBin) }

// app is the upstream: instant answers, plus /slow (delay before headers)
// and /drip (headers, then a byte every 50ms) that count how many of their
// handlers are running, so a test can see the sidecar cancel abandoned ones.
type app struct {
	inflight atomic.Int64
	srv      *http.Server
	addr     string

	// versions of /pages/ paths: a PUT makes a new one, a GET answers the
	// current one ("version N"), so a reader can tell a stale answer.
	mu       sync.Mutex
	versions map[string]int
}

func startApp(t *testing.T) *app {
	t.Helper()
	a := &app{versions: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("app listen: %v", err)
	}
	a.addr = l.Addr().String()
	a.srv = &http.Server{Handler: http.HandlerFunc(a.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(l) }()
	t.Cleanup(func() { _ = a.srv.Close() })
	return a
}

func (a *app) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case strings.HasPrefix(r.URL.Path, "/pages/"):
		a.mu.Lock()
		if r.Method == http.MethodPut {
			a.versions[r.URL.Path]++
		}
		v := a.versions[r.URL.Path]
		a.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintf(w, "version %d", v)
		return
	case strings.HasSuffix(r.URL.Path, "/slow"):
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	case strings.HasSuffix(r.URL.Path, "/drip"):
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		for range 60 {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok "+r.URL.Path+"\n")
}

// sidecar is one gatehouse-sidecar process.
type sidecar struct {
	name        string
	data, admin string
	configPath  string
	logPath     string
	cmd         *exec.Cmd
	done        chan struct{}
	exitErr     error
	client      *http.Client
	terminated  atomic.Bool // SIGTERM sent: refused connections are expected
}

func startSidecar(t *testing.T, name, upstream string, config []byte) *sidecar {
	t.Helper()
	dir := t.TempDir()
	s := &sidecar{
		name:       name,
		data:       net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t))),
		admin:      net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t))),
		configPath: filepath.Join(dir, "config.json"),
		logPath:    filepath.Join(dir, "sidecar.log"),
		done:       make(chan struct{}),
		client: &http.Client{
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true},
			Timeout:   15 * time.Second,
		},
	}
	if err := os.WriteFile(s.configPath, config, 0o644); err != nil {
		t.Fatalf("write config: %v", err)
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatalf("sidecar log: %v", err)
	}
	s.cmd = exec.Command(sidecarBin, "--config", s.configPath, "--listen", s.data, "--admin-listen", s.admin,
		"--upstream", "http://"+upstream, "--drain-timeout", "10s", "--log-level", "info")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sidecar: %v", err)
	}
	go func() {
		s.exitErr = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
		// GATEHOUSE_RELIABILITY_LOGS=dir keeps every sidecar's whole log.
		if dir := os.Getenv("GATEHOUSE_RELIABILITY_LOGS"); dir != "" {
			if raw, err := os.ReadFile(s.logPath); err == nil {
				_ = os.WriteFile(filepath.Join(dir, s.name+".log"), raw, 0o644)
			}
		}
		if t.Failed() {
			if raw, err := os.ReadFile(s.logPath); err == nil {
				t.Logf("sidecar %s log (tail):\n%s", s.name, tail(string(raw), 40))
			}
		}
	})
	eventually(t, 20*time.Second, "sidecar "+name+" ready", func() error {
		r, err := s.readiness()
		if err != nil {
			return err
		}
		if !r.Ready {
			return fmt.Errorf("not ready: %+v", r.Checks)
		}
		return nil
	})
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// readiness is the part of /readyz the suite reads.
type readiness struct {
	Ready    bool `json:"ready"`
	Checks   []struct{ Name, Error string }
	Warnings []string `json:"warnings"`
	Config   struct {
		Generation uint64 `json:"generation"`
		LastError  string `json:"lastError"`
	} `json:"config"`
	Policies []string `json:"policies"`
}

func (s *sidecar) readiness() (readiness, error) {
	var r readiness
	resp, err := s.client.Get("http://" + s.admin + "/readyz")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("decode /readyz: %w", err)
	}
	return r, nil
}

// goroutines reads go_goroutines from the sidecar's /metrics.
func (s *sidecar) goroutines() (int, error) {
	resp, err := s.client.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, errors.New("no go_goroutines in /metrics")
}

// fds counts the sidecar's open file descriptors (sockets included).
func (s *sidecar) fds() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.cmd.Process.Pid))
	return len(ents), err
}

// createSession mints a session through the admin API.
func (s *sidecar) createSession(t *testing.T, subject string) string {
	t.Helper()
	resp, err := s.client.Post("http://"+s.admin+"/v1/sessions", "application/json", strings.NewReader(fmt.Sprintf(`{"subject":%q,"ttl":"1h"}`, subject)))
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create session: status %d, %v", resp.StatusCode, err)
	}
	return out.Token
}

// eventually polls f until it returns nil or the generous deadline passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, within, err)
	return 0
}

// record is one request of the steady load.
type record struct {
	// phase is the scenario the request was sent in, endPhase the one it
	// was answered in: a request in flight when a fault began may fail.
	phase    string
	endPhase string
	sidecar  string
	path     string
	status   int // 0: transport error
	err      error
	refused  bool // the connection was refused: never accepted
	start    time.Time
	end      time.Time
	// remaining and reset are the r and t of the RateLimit field; -1 when absent.
	remaining, reset int
	method           string
	xcache           string
	cacheStatus      string
	// version is the "version N" a /pages/ answer carried; -1 otherwise.
	version int
	// token is the session a create returned.
	token string
}

// load is the steady background traffic: one loop per worker.
type load struct {
	phase atomic.Pointer[string]
	seq   atomic.Int64

	mu      sync.Mutex
	records []record
	wg      sync.WaitGroup
}

// worker is one client loop: a request every 20 ms through one sidecar.
type worker struct {
	s      *sidecar
	method string
	path   string
	header http.Header
	// admin sends to the sidecar's admin listener (a session create).
	admin bool
	body  string
	every time.Duration
}

func (l *load) setPhase(p string) { l.phase.Store(&p) }

func (l *load) run(ctx context.Context, workers []worker) {
	for _, w := range workers {
		if w.every == 0 {
			w.every = 20 * time.Millisecond
		}
		l.wg.Go(func() {
			for ctx.Err() == nil {
				rec := l.one(ctx, w)
				if ctx.Err() != nil && rec.err != nil {
					return // the suite ended, not the sidecar
				}
				l.mu.Lock()
				l.records = append(l.records, rec)
				l.mu.Unlock()
				if rec.refused && w.s.terminated.Load() {
					return // this sidecar is gone for good
				}
				time.Sleep(w.every)
			}
		})
	}
}

func (l *load) one(ctx context.Context, w worker) record {
	rec := record{phase: *l.phase.Load(), sidecar: w.s.name, path: w.path, method: w.method, start: time.Now(), remaining: -1, reset: -1, version: -1}
	host := w.s.data
	if w.admin {
		host = w.s.admin
	}
	var body io.Reader
	if w.body != "" {
		b := w.body
		if strings.Contains(b, "%d") {
			b = fmt.Sprintf(b, l.seq.Add(1))
		}
		body = strings.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, w.method, "http://"+host+w.path, body)
	maps.Copy(req.Header, w.header)
	resp, err := w.s.client.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		rec.status = resp.StatusCode
		rec.xcache = resp.Header.Get("X-Cache")
		rec.cacheStatus = resp.Header.Get("Cache-Status")
		if r, t, ok := draftRateLimit(resp.Header.Get("RateLimit")); ok {
			rec.remaining, rec.reset = r, t
		}
		if v, ok := strings.CutPrefix(string(b), "version "); ok {
			rec.version, _ = strconv.Atoi(v)
		}
		if w.admin && resp.StatusCode == http.StatusCreated {
			var out struct{ Token string }
			if json.Unmarshal(b, &out) == nil {
				rec.token = out.Token
			}
		}
	}
	rec.end = time.Now()
	rec.endPhase = *l.phase.Load()
	if err != nil {
		rec.status, rec.err = 0, err
		rec.refused = errors.Is(err, syscall.ECONNREFUSED)
	}
	return rec
}

func (l *load) snapshot() []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// outcome names a record's result for the table.
func (r record) outcome() string {
	switch {
	case r.refused:
		return "refused"
	case r.err != nil:
		return "error"
	}
	return strconv.Itoa(r.status)
}

// draftRateLimit reads r (remaining) and t (seconds to reset) of the first
// member of a RateLimit field (draft-ietf-httpapi-ratelimit-headers:
// `"policy/rule";r=5;t=2`). Each route of the suite has one rule.
func draftRateLimit(v string) (r, t int, ok bool) {
	member, _, _ := strings.Cut(v, ",")
	r, t = -1, -1
	for _, p := range strings.Split(member, ";")[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		n, err := strconv.Atoi(val)
		if err != nil {
			continue
		}
		switch k {
		case "r":
			r = n
		case "t":
			t = n
		}
	}
	return r, t, r >= 0 && t >= 0
}
