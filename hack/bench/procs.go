package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// body is what the upstream answers: 1 KiB, a typical small JSON API reply.
var body = []byte(strings.Repeat("x", 1023) + "\n")

// serveUpstream is the app behind every configuration: it answers at once so
// that what is measured is the proxy in front of it, not the app.
func serveUpstream(ctx context.Context, addr string) error {
	srv := &http.Server{
		Addr: addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	return serveUntil(ctx, srv)
}

// servePlainProxy is the baseline: a bare httputil.ReverseProxy with the same
// pooled transport settings as the sidecar (the default transport keeps two
// idle connections per host and would churn sockets, flattering the sidecar).
func servePlainProxy(ctx context.Context, addr, upstream string) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("parse upstream: %w", err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	srv := &http.Server{Addr: addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	return serveUntil(ctx, srv)
}

func serveUntil(ctx context.Context, srv *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// runner owns every process and temporary directory of a run and implements
// redistest.TB so the test helper can start Redis for a program too.
type runner struct {
	dir string

	mu       sync.Mutex
	cleanups []func()
	n        int
}

func (r *runner) Helper()                           {}
func (r *runner) Logf(format string, args ...any)   { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (r *runner) Cleanup(f func())                  { r.mu.Lock(); r.cleanups = append(r.cleanups, f); r.mu.Unlock() }
func (r *runner) Fatalf(format string, args ...any) { r.fail(fmt.Errorf(format, args...)) }

func (r *runner) TempDir() string {
	r.mu.Lock()
	r.n++
	n := r.n
	r.mu.Unlock()
	dir := filepath.Join(r.dir, "t"+strconv.Itoa(n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.fail(fmt.Errorf("temp dir: %w", err))
	}
	return dir
}

// fail stops everything and exits: a benchmark with a broken part has no
// figures worth writing.
func (r *runner) fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	r.close()
	os.Exit(1)
}

// close runs the cleanups in reverse order, once.
func (r *runner) close() {
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for _, c := range slices.Backward(cs) {
		c()
	}
	_ = os.RemoveAll(r.dir)
}

// start runs a long-lived child process (killed with us if we die) and stops
// it at cleanup; its output goes to a log file in the run directory.
func (r *runner) start(name string, args ...string) *exec.Cmd {
	return r.startCmd(exec.Command(name, args...))
}

// startCmd is start for a command with its own environment.
func (r *runner) startCmd(cmd *exec.Cmd) *exec.Cmd {
	name := cmd.Path
	logPath := filepath.Join(r.dir, strings.ReplaceAll(filepath.Base(name), "/", "_")+"-"+strconv.Itoa(len(r.cleanups))+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		r.fail(fmt.Errorf("log file: %w", err))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.fail(fmt.Errorf("start %s: %w", name, err))
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
	})
	return cmd
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %w)", u, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns an unused loopback address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procStat is what /proc tells about a process's cost.
type procStat struct {
	cpu   time.Duration // utime + stime
	hwmKB int64         // VmHWM: peak resident set
	rssKB int64         // VmRSS: current resident set
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 100

func readProc(pid int) (procStat, error) {
	var s procStat
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat: %w", err)
	}
	// The command name may hold spaces; fields restart after its ')'.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	if len(f) < 13 {
		return s, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(ut+st) * time.Second / clockTick
	fh, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmHWM":
			s.hwmKB = n
		case "VmRSS":
			s.rssKB = n
		}
	}
	return s, sc.Err()
}

// readProcs sums a process group's costs (nginx: master and workers).
func readProcs(pids []int) (procStat, error) {
	var sum procStat
	for _, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return sum, err
		}
		sum.cpu += s.cpu
		sum.hwmKB += s.hwmKB
		sum.rssKB += s.rssKB
	}
	return sum, nil
}

// childrenOf lists the direct children of pid (nginx workers).
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, n)
		}
	}
	return kids
}
