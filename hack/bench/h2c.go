package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// The h2c suite measures gRPC unary calls (grpc's own interop TestService,
// UnaryCall with a 1 KiB response, like the HTTP rows' body) through the
// sidecar with --upstream-protocol=h2c, against the gRPC server alone and a
// bare httputil.ReverseProxy with an h2c transport, driven by h2load
// (Debian's nghttp2-client) over HTTP/2 cleartext with prior knowledge.

// grpcResponseSize is the UnaryCall response payload.
const grpcResponseSize = 1024

// benchService answers UnaryCall at once and counts the calls it answered,
// so a run can tell calls the app served from 200s that carried a gRPC
// error (h2load sees only HTTP statuses).
type benchService struct {
	testgrpc.UnimplementedTestServiceServer
	served atomic.Int64
}

func (s *benchService) UnaryCall(_ context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.served.Add(1)
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, in.GetResponseSize())}}, nil
}

// serveGRPCUpstream is the gRPC app of the h2c rows; countAddr serves the
// number of calls answered (GET /count).
func serveGRPCUpstream(ctx context.Context, addr, countAddr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	svc := &benchService{}
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, svc)
	count := &http.Server{Addr: countAddr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, svc.served.Load())
	})}
	go func() { _ = count.ListenAndServe() }()
	go func() {
		<-ctx.Done()
		gs.Stop()
		_ = count.Close()
	}()
	return gs.Serve(l)
}

// servePlainH2CProxy is the h2c baseline: a bare httputil.ReverseProxy that
// serves h2c and speaks h2c to the app, as the sidecar does, and nothing
// else.
func servePlainH2CProxy(ctx context.Context, addr, upstream string) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return fmt.Errorf("parse upstream: %w", err)
	}
	var toApp, fromClients http.Protocols
	toApp.SetUnencryptedHTTP2(true)
	fromClients.SetHTTP1(true)
	fromClients.SetUnencryptedHTTP2(true)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			Protocols:   &toApp,
		},
	}
	srv := &http.Server{Addr: addr, Handler: rp, Protocols: &fromClients, ReadHeaderTimeout: 10 * time.Second}
	return serveUntil(ctx, srv)
}

// h2Target is one configuration of the h2c suite.
type h2Target struct {
	name   string
	redis  string
	url    string
	token  string
	pids   func() []int
	admin  string
	runs   []h2Result
	direct bool
}

// h2Result is one measured h2load run.
type h2Result struct {
	requests   int64
	rps        float64
	p50, p99   time.Duration
	p999       time.Duration
	cpuPer10k  time.Duration
	errors     int64
	degraded   int64
	unanswered int64 // 2xx the app did not answer OK (a gRPC error)
}

// setUpH2C starts the gRPC app, the h2c plain proxy and the sidecars.
func setUpH2C(r *runner, o options) ([]*h2Target, string, error) {
	ctx := context.Background()
	if _, err := exec.LookPath(o.h2load); err != nil {
		return nil, "", fmt.Errorf("%s: %w (hack/bench.sh installs nghttp2-client)", o.h2load, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("own executable: %w", err)
	}
	addr := func() string {
		a, err := freeAddr()
		if err != nil {
			r.fail(err)
		}
		return a
	}
	upAddr, countAddr := addr(), addr()
	r.start(self, "grpc-upstream", "--listen", upAddr, "--count-listen", countAddr)
	counter := "http://" + countAddr + "/count"
	if err := waitHTTP(ctx, counter); err != nil {
		return nil, "", err
	}
	upstream := "http://" + upAddr
	plainAddr := addr()
	plain := r.start(self, "h2c-plain-proxy", "--listen", plainAddr, "--upstream", upstream)
	pidOf := func(c *exec.Cmd) func() []int { return func() []int { return []int{c.Process.Pid} } }

	const method = "/grpc.testing.TestService/UnaryCall"
	targets := []*h2Target{
		{name: "grpc direct", url: upstream + method, pids: func() []int { return nil }, direct: true},
		{name: "grpc plain-proxy (h2c)", url: "http://" + plainAddr + method, pids: pidOf(plain)},
	}
	standalone := redistest.StartStandalone(r)
	for _, v := range []struct {
		name  string
		f     features
		mode  string
		addrs []string
	}{
		{"gatehouse passthrough (h2c)", features{}, "", nil},
		{"gatehouse session+ratelimit (h2c)", features{session: true, ratelimit: true}, "Standalone", []string{standalone.Addr()}},
	} {
		doc, err := sidecarConfig(v.f, v.mode, v.addrs)
		if err != nil {
			return nil, "", fmt.Errorf("render config: %w", err)
		}
		cfg := filepath.Join(r.TempDir(), "config.json")
		if err := os.WriteFile(cfg, doc, 0o644); err != nil {
			return nil, "", fmt.Errorf("write config: %w", err)
		}
		data, admin := addr(), addr()
		cmd := r.start(o.sidecar, "--config", cfg, "--listen", data, "--admin-listen", admin, "--upstream", upstream,
			"--upstream-protocol", "h2c", "--log-level", "warn", "--drain-timeout", "2s")
		if err := waitHTTP(ctx, "http://"+admin+"/readyz"); err != nil {
			return nil, "", fmt.Errorf("sidecar %s: %w", v.name, err)
		}
		t := &h2Target{name: v.name, url: "http://" + data + method, pids: pidOf(cmd), admin: admin}
		if v.mode != "" {
			t.redis = "standalone"
		}
		if v.f.session {
			if t.token, err = createSession(ctx, admin, "bench-grpc"); err != nil {
				return nil, "", fmt.Errorf("%s: %w", v.name, err)
			}
		}
		targets = append(targets, t)
	}
	if err := waitH2C(ctx, plainAddr); err != nil {
		return nil, "", err
	}
	return targets, counter, nil
}

// waitH2C waits until addr accepts TCP connections.
func waitH2C(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// grpcRequestBody is one length-prefixed gRPC message: a SimpleRequest for
// a grpcResponseSize payload.
func grpcRequestBody(dir string) (string, error) {
	msg, err := proto.Marshal(&testgrpc.SimpleRequest{ResponseSize: grpcResponseSize})
	if err != nil {
		return "", fmt.Errorf("marshal request: %w", err)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	path := filepath.Join(dir, "grpc-request.bin")
	if err := os.WriteFile(path, append(frame, msg...), 0o644); err != nil {
		return "", fmt.Errorf("write request body: %w", err)
	}
	return path, nil
}

// h2loadOutput is what one h2load run reports.
type h2loadOutput struct {
	rps                              float64
	done, succeeded, failed, errored int64
	timeout, status2xx, statusOther  int64
	latencies                        []time.Duration
}

var (
	h2Finished = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

func runH2load(ctx context.Context, o options, t *h2Target, body, logFile string, d time.Duration) (h2loadOutput, error) {
	var out h2loadOutput
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	args := []string{"-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.h2Clients), "-m", strconv.Itoa(o.h2Streams),
		"-D", strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))), "-d", body,
		"-H", "content-type: application/grpc", "-H", "te: trailers"}
	if t.token != "" {
		args = append(args, "-H", "authorization: Bearer "+t.token)
	}
	if logFile != "" {
		args = append(args, "--log-file", logFile)
	}
	raw, err := exec.CommandContext(ctx, o.h2load, append(args, t.url)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("h2load: %w: %s", err, raw)
	}
	s := string(raw)
	m := h2Finished.FindStringSubmatch(s)
	rq := h2Requests.FindStringSubmatch(s)
	st := h2Status.FindStringSubmatch(s)
	if m == nil || rq == nil || st == nil {
		return out, fmt.Errorf("h2load output not understood: %s", s)
	}
	out.rps, _ = strconv.ParseFloat(m[1], 64)
	n := func(v string) int64 { x, _ := strconv.ParseInt(v, 10, 64); return x }
	out.done, out.succeeded, out.failed, out.errored, out.timeout = n(rq[1]), n(rq[2]), n(rq[3]), n(rq[4]), n(rq[5])
	out.status2xx = n(st[1])
	out.statusOther = n(st[2]) + n(st[3]) + n(st[4])
	if logFile != "" {
		if out.latencies, err = readH2Log(logFile); err != nil {
			return out, err
		}
	}
	return out, nil
}

// readH2Log reads the per-request durations of an h2load --log-file: start
// time (µs since the epoch), HTTP status, µs until the response ended.
func readH2Log(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("h2load log: %w", err)
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		us, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, time.Duration(us)*time.Microsecond)
	}
	return out, sc.Err()
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// served is the number of calls the gRPC app has answered.
func served(ctx context.Context, counter string) (int64, error) {
	raw, err := fetch(ctx, counter)
	if err != nil {
		return 0, fmt.Errorf("read served count: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read served count: %w", err)
	}
	return n, nil
}

// measureH2 runs a warm-up and one measured h2load run against t.
func measureH2(ctx context.Context, r *runner, o options, t *h2Target, body, counter, runID string) (h2Result, error) {
	var res h2Result
	if o.warmup > 0 {
		if _, err := runH2load(ctx, o, t, body, "", o.warmup); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}
	before, err := readProcs(t.pids())
	if err != nil {
		return res, err
	}
	servedBefore, err := served(ctx, counter)
	if err != nil {
		return res, err
	}
	dBefore, err := degradedCount(ctx, t.admin)
	if err != nil {
		return res, err
	}
	out, err := runH2load(ctx, o, t, body, filepath.Join(r.dir, runID+".h2log"), o.duration)
	if err != nil {
		return res, err
	}
	after, err := readProcs(t.pids())
	if err != nil {
		return res, err
	}
	servedAfter, err := served(ctx, counter)
	if err != nil {
		return res, err
	}
	dAfter, err := degradedCount(ctx, t.admin)
	if err != nil {
		return res, err
	}
	res.requests, res.rps = out.done, out.rps
	slices.Sort(out.latencies)
	res.p50, res.p99, res.p999 = percentile(out.latencies, 50), percentile(out.latencies, 99), percentile(out.latencies, 99.9)
	res.unanswered = max(0, out.status2xx-(servedAfter-servedBefore))
	res.errors = out.failed + out.errored + out.timeout + out.statusOther + res.unanswered
	res.degraded = dAfter - dBefore
	if out.done > 0 {
		res.cpuPer10k = (after.cpu - before.cpu) * 10000 / time.Duration(out.done)
	}
	return res, nil
}

// runH2CSuite measures the h2c rows and returns the report block.
func runH2CSuite(ctx context.Context, r *runner, o options) (string, error) {
	started := time.Now()
	targets, counter, err := setUpH2C(r, o)
	if err != nil {
		return "", err
	}
	body, err := grpcRequestBody(r.dir)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "bench: h2c suite set up in %v; %d configurations × %d repetitions of %v\n",
		time.Since(started).Round(time.Second), len(targets), o.reps, o.duration)
	for rep := range o.reps {
		for i, t := range targets {
			res, err := measureH2(ctx, r, o, t, body, counter, fmt.Sprintf("h2-r%d-%d", rep, i))
			if err != nil {
				return "", fmt.Errorf("%s: %w", t.name, err)
			}
			t.runs = append(t.runs, res)
			fmt.Fprintf(os.Stderr, "bench: rep %d %-44s %8.0f req/s  p50 %v  p99 %v  errors %d  degraded %d\n",
				rep+1, t.label(), res.rps, res.p50, res.p99, res.errors, res.degraded)
		}
	}
	return renderH2C(o, targets, time.Since(started)), nil
}

func (t *h2Target) label() string {
	if t.redis == "" {
		return t.name
	}
	return t.name + " / " + t.redis
}

// renderH2C writes the generated block of the h2c rows.
func renderH2C(o options, targets []*h2Target, took time.Duration) string {
	type sum struct {
		rps            float64
		p50, p99, p999 time.Duration
		cpu            time.Duration
		errors, deg    int64
	}
	sums := map[string]sum{}
	for _, t := range targets {
		rps := make([]float64, 0, len(t.runs))
		p50, p99, p999, cpu := make([]time.Duration, 0, len(t.runs)), make([]time.Duration, 0, len(t.runs)),
			make([]time.Duration, 0, len(t.runs)), make([]time.Duration, 0, len(t.runs))
		var s sum
		for _, r := range t.runs {
			rps = append(rps, r.rps)
			p50, p99, p999, cpu = append(p50, r.p50), append(p99, r.p99), append(p999, r.p999), append(cpu, r.cpuPer10k)
			s.errors += r.errors
			s.deg += r.degraded
		}
		s.rps, s.p50, s.p99, s.p999, s.cpu = median(rps), median(p50), median(p99), median(p999), median(cpu)
		sums[t.label()] = s
	}
	plain, direct := sums["grpc plain-proxy (h2c)"], sums["grpc direct"]
	var b strings.Builder
	fmt.Fprintf(&b, "Generated by `%s` on %s (took %v).\n\n", o.command, time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	fmt.Fprintf(&b, "- Load: `h2load -t%d -c%d -m%d -D%d` (h2c, prior knowledge) per run after a %v warm-up; %d repetitions, configurations interleaved; medians shown.\n",
		o.threads, o.h2Clients, o.h2Streams, max(1, int(o.duration.Round(time.Second)/time.Second)), o.warmup, o.reps)
	fmt.Fprintf(&b, "- Calls: gRPC unary `grpc.testing.TestService/UnaryCall` with a %d-byte response from a grpc-go server on loopback; "+
		"every process on the same 2 cores as h2load.\n\n", grpcResponseSize)
	b.WriteString("| configuration | Redis | calls/s | × plain-proxy (h2c) | × direct | p50 ms | p99 ms | p99.9 ms | " +
		"p99 × plain-proxy (h2c) | CPU s / 10k calls | errors | degraded |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		s := sums[t.label()]
		redisCol, cpu, degraded := "—", "—", "—"
		if t.redis != "" {
			redisCol = t.redis
		}
		if !t.direct {
			cpu = fmt.Sprintf("%.3f", s.cpu.Seconds())
		}
		if t.admin != "" {
			degraded = strconv.FormatInt(s.deg, 10)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %.2f | %s | %s | %s | %.2f | %s | %d | %s |\n",
			t.name, redisCol, s.rps, ratio(s.rps, plain.rps), ratio(s.rps, direct.rps),
			ms(s.p50), ms(s.p99), ms(s.p999), ratio(float64(s.p99), float64(plain.p99)), cpu, s.errors, degraded)
	}
	return b.String()
}

var errNoSuite = errors.New("--suite: want all, http or h2c")
