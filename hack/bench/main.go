// Command bench measures what the Gatehouse sidecar costs per request next to
// its peers (the app alone, a bare httputil.ReverseProxy, nginx) and writes
// docs/benchmarks.md. Run it through `make bench` (hack/bench.sh), which
// builds the sidecar and checks the tools.
//
// Everything runs on loopback: an upstream app, Redis standalone and a 3+3
// Redis Cluster (real redis-server via internal/redistest), one sidecar
// process per configuration, the peers, and wrk driving each in turn at fixed
// concurrency. Configurations are interleaved within each repetition so that
// noise from the shared machine spreads over all of them; the report shows
// medians over the repetitions.
//
// The same binary is the upstream and the plain proxy (`bench upstream`,
// `bench plain-proxy`), so that each runs in its own process like the sidecar.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

func main() {
	if len(os.Args) > 1 {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:0", "listen address")
		upstream := fs.String("upstream", "", "upstream base URL")
		countListen := fs.String("count-listen", "127.0.0.1:0", "grpc-upstream: where GET /count answers the calls served")
		var err error
		switch os.Args[1] {
		case "upstream":
			_ = fs.Parse(os.Args[2:])
			err = serveUpstream(ctx, *listen)
		case "plain-proxy":
			_ = fs.Parse(os.Args[2:])
			err = servePlainProxy(ctx, *listen, *upstream)
		case "grpc-upstream":
			_ = fs.Parse(os.Args[2:])
			err = serveGRPCUpstream(ctx, *listen, *countListen)
		case "h2c-plain-proxy":
			_ = fs.Parse(os.Args[2:])
			err = servePlainH2CProxy(ctx, *listen, *upstream)
		case "run":
			err = run(os.Args[2:])
		default:
			err = fmt.Errorf("unknown command %q: want run, upstream, plain-proxy, grpc-upstream or h2c-plain-proxy", os.Args[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintln(os.Stderr, "usage: bench run --sidecar bin/gatehouse-sidecar [flags]")
	os.Exit(2)
}

type options struct {
	sidecar     string
	erl         string
	wrk         string
	nginx       string
	h2load      string
	suite       string
	h2Clients   int
	h2Streams   int
	out         string
	command     string
	duration    time.Duration
	warmup      time.Duration
	reps        int
	connections int
	threads     int
	only        *regexp.Regexp
}

// target is one configuration under load.
type target struct {
	name  string
	group string // "peer" or "gatehouse"
	redis string // "", "standalone" or "cluster"
	url   string
	// uniquePrefix makes every request a distinct path (cache misses).
	uniquePrefix string
	tokens       []string
	keys, erl    bool // see load
	pids         func() []int
	redisNodes   []string // the primaries whose counters the run moves
	redisPids    []int    // every redis-server of the backend, replicas included
	admin        string   // the sidecar's admin address, for /metrics
	idleRSSKB    int64
	runs         []result
}

// result is one measured wrk run.
type result struct {
	requests     int64
	rps          float64
	p50, p99     time.Duration
	p999         time.Duration
	cpuPer10k    time.Duration
	redisCPU10k  time.Duration
	hwmKB        int64
	cmdsPerReq   float64
	tripsPerReq  float64
	socketErrors int64
	statusErrors int64
	// degraded counts requests a feature could not serve from Redis as
	// configured, from the sidecar's own metrics (see degradedCount).
	degraded int64
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.sidecar, "sidecar", "bin/gatehouse-sidecar", "gatehouse-sidecar binary")
	fs.StringVar(&o.erl, "erl", "", "an envoyproxy/ratelimit service binary, to compare Redis' cost of a decision (optional)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk binary")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "report to (re)write; text outside the generated block is kept")
	fs.StringVar(&o.command, "command", "make bench", "the command to record in the report")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each run (fills caches, warms pools)")
	fs.IntVar(&o.reps, "reps", 3, "repetitions of every configuration (medians are reported)")
	fs.IntVar(&o.connections, "connections", 32, "wrk connections")
	fs.IntVar(&o.threads, "threads", 2, "wrk and h2load threads")
	fs.StringVar(&o.h2load, "h2load", "h2load", "h2load binary (Debian nghttp2-client)")
	fs.StringVar(&o.suite, "suite", "all", "all; http (the wrk rows); or h2c (the gRPC unary rows, h2load): each rewrites only its own block")
	fs.IntVar(&o.h2Clients, "h2-clients", 8, "h2load connections")
	fs.IntVar(&o.h2Streams, "h2-streams", 8, "h2load concurrent streams per connection")
	only := fs.String("only", "", "regexp: run only configurations whose name matches (development)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.suite != "all" && o.suite != "http" && o.suite != "h2c" {
		return errNoSuite
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("--only: %w", err)
		}
		o.only = re
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	r := &runner{dir: dir}
	defer r.close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		if s, ok := <-sigs; ok {
			r.fail(fmt.Errorf("interrupted by %v", s))
		}
	}()
	defer signal.Stop(sigs)

	ctx := context.Background()
	started := time.Now()
	if o.suite != "h2c" {
		report, err := runHTTPSuite(ctx, r, o)
		if err != nil {
			return err
		}
		if err := writeReport(o.out, report); err != nil {
			return err
		}
	}
	if o.suite != "http" {
		report, err := runH2CSuite(ctx, r, o)
		if err != nil {
			return err
		}
		if err := writeReportBlock(o.out, "bench-h2c", report); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s in %v\n", o.out, time.Since(started).Round(time.Second))
	return nil
}

// runHTTPSuite measures the HTTP/1.1 rows (wrk) and returns their block.
func runHTTPSuite(ctx context.Context, r *runner, o options) (string, error) {
	started := time.Now()
	targets, binSize, err := setUp(r, o)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "bench: set up in %v; %d configurations × %d repetitions of %v\n",
		time.Since(started).Round(time.Second), len(targets), o.reps, o.duration)
	for rep := range o.reps {
		for i, t := range targets {
			res, err := measure(ctx, r, o, t, fmt.Sprintf("r%d-%d", rep, i))
			if err != nil {
				return "", fmt.Errorf("%s: %w", t.name, err)
			}
			t.runs = append(t.runs, res)
			fmt.Fprintf(os.Stderr, "bench: rep %d %-44s %8.0f req/s  p50 %v  p99 %v  p99.9 %v  rt/req %.2f  errors %d/%d  degraded %d\n",
				rep+1, t.label(), res.rps, res.p50, res.p99, res.p999, res.tripsPerReq, res.socketErrors, res.statusErrors, res.degraded)
		}
	}
	return render(o, targets, binSize, time.Since(started)), nil
}

// setUp starts every process and returns the configurations in run order.
func setUp(r *runner, o options) ([]*target, int64, error) { //nolint:gocyclo // the benchmark set-up script, one step after another
	ctx := context.Background()
	for _, bin := range []string{o.sidecar, o.wrk, o.nginx} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, 0, fmt.Errorf("%s: %w (hack/bench.sh installs wrk and nginx-light)", bin, err)
		}
	}
	st, err := os.Stat(o.sidecar)
	if err != nil {
		return nil, 0, fmt.Errorf("sidecar binary: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, 0, fmt.Errorf("own executable: %w", err)
	}
	addr := func() string {
		a, err := freeAddr()
		if err != nil {
			r.fail(err)
		}
		return a
	}

	upAddr := addr()
	r.start(self, "upstream", "--listen", upAddr)
	upstream := "http://" + upAddr
	if err := waitHTTP(ctx, upstream+"/"); err != nil {
		return nil, 0, err
	}
	plainAddr := addr()
	plain := r.start(self, "plain-proxy", "--listen", plainAddr, "--upstream", upstream)
	if err := waitHTTP(ctx, "http://"+plainAddr+"/"); err != nil {
		return nil, 0, err
	}
	nginxDir := r.TempDir()
	ngPlain, ngCache := addr(), addr()
	conf := filepath.Join(nginxDir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(nginxDir, upAddr, ngPlain, ngCache, os.Geteuid() == 0)), 0o644); err != nil {
		return nil, 0, fmt.Errorf("write nginx.conf: %w", err)
	}
	ng := r.start(o.nginx, "-p", nginxDir, "-c", conf, "-e", filepath.Join(nginxDir, "nginx-error.log"))
	for _, a := range []string{ngPlain, ngCache} {
		if err := waitHTTP(ctx, "http://"+a+"/"); err != nil {
			return nil, 0, fmt.Errorf("nginx: %w", err)
		}
	}
	nginxPids := func() []int { return append([]int{ng.Process.Pid}, childrenOf(ng.Process.Pid)...) }

	standalone := redistest.StartStandalone(r)
	cluster := redistest.StartCluster(r)
	var primaries []string
	for _, p := range cluster.Primaries {
		primaries = append(primaries, p.Addr())
	}
	standalonePids := redisPids([]string{standalone.Addr()})
	clusterPids := redisPids(cluster.Addrs())

	pidOf := func(c *exec.Cmd) func() []int { return func() []int { return []int{c.Process.Pid} } }
	targets := []*target{
		{name: "direct", group: "peer", url: upstream + "/item", pids: func() []int { return nil }},
		{name: "plain-proxy", group: "peer", url: "http://" + plainAddr + "/item", pids: pidOf(plain)},
		{name: "nginx", group: "peer", url: "http://" + ngPlain + "/item", pids: nginxPids},
		{name: "nginx-cache-hit", group: "peer", url: "http://" + ngCache + "/hit", pids: nginxPids},
	}
	type variant struct {
		name string
		f    features
		path string
	}
	variants := []variant{
		{"session", features{session: true}, "/item"},
		{"session+ratelimit", features{session: true, ratelimit: true}, "/item"},
		{"session+ratelimit (leased)", features{session: true, ratelimit: true, leased: true}, "/item"},
		{"session+ratelimit+cache-miss", features{session: true, ratelimit: true, cache: true}, ""},
		{"cache-hit (shared tier)", features{cache: true}, "/hit"},
		{"cache-hit (in-process tier)", features{cache: true, inProcess: true}, "/hit"},
	}
	startSidecar := func(name string, f features, mode string, addrs []string) (*target, string, error) {
		doc, err := sidecarConfig(f, mode, addrs)
		if err != nil {
			return nil, "", fmt.Errorf("render config: %w", err)
		}
		cdir := r.TempDir()
		cfg := filepath.Join(cdir, "config.json")
		if err := os.WriteFile(cfg, doc, 0o644); err != nil {
			return nil, "", fmt.Errorf("write config: %w", err)
		}
		data, admin := addr(), addr()
		cmd := r.start(o.sidecar, "--config", cfg, "--listen", data, "--admin-listen", admin,
			"--upstream", upstream, "--log-level", "warn", "--drain-timeout", "2s")
		if err := waitHTTP(ctx, "http://"+admin+"/readyz"); err != nil {
			return nil, "", fmt.Errorf("sidecar %s: %w", name, err)
		}
		return &target{name: name, group: "gatehouse", url: "http://" + data, pids: pidOf(cmd), admin: admin}, admin, nil
	}
	pass, _, err := startSidecar("gatehouse passthrough", features{}, "", nil)
	if err != nil {
		return nil, 0, err
	}
	pass.url += "/item"
	targets = append(targets, pass)
	for _, backend := range []struct {
		name, mode string
		addrs      []string
		nodes      []string
		pids       []int
	}{
		{"standalone", "Standalone", []string{standalone.Addr()}, []string{standalone.Addr()}, standalonePids},
		{"cluster", "Cluster", cluster.Addrs(), primaries, clusterPids},
	} {
		for _, v := range variants {
			t, admin, err := startSidecar("gatehouse "+v.name, v.f, backend.mode, backend.addrs)
			if err != nil {
				return nil, 0, err
			}
			t.redis = backend.name
			t.redisNodes = backend.nodes
			t.redisPids = backend.pids
			if v.path == "" {
				// A path per request and per run: every request misses, is
				// fetched from the app and stored (60s TTL keeps Redis small).
				t.uniquePrefix = "/miss/" + backend.name + "/"
			} else {
				t.url += v.path
			}
			if v.f.session {
				for i := range o.threads {
					tok, err := createSession(ctx, admin, fmt.Sprintf("bench-user-%d", i))
					if err != nil {
						return nil, 0, fmt.Errorf("%s: %w", t.name, err)
					}
					t.tokens = append(t.tokens, tok)
				}
			}
			targets = append(targets, t)
		}
	}
	// Redis' cost of one strict decision, next to envoyproxy/ratelimit's
	// on the same standalone Redis (standalone only: ERL has no cluster
	// pipeline of its own to compare).
	for _, d := range []struct {
		name string
		keys bool
	}{{"hot", false}, {"keys", true}} {
		label := "decision, 1 key"
		if d.keys {
			label = fmt.Sprintf("decision, %dk keys", benchKeys/1000)
		}
		t, _, err := startSidecar("gatehouse "+label, features{decision: d.name}, "Standalone", []string{standalone.Addr()})
		if err != nil {
			return nil, 0, err
		}
		t.redis, t.redisNodes, t.redisPids, t.keys = "standalone", []string{standalone.Addr()}, standalonePids, d.keys
		t.url += "/item"
		targets = append(targets, t)
		if o.erl != "" {
			et, err := startERL(ctx, r, o.erl, standalone.Addr(), addr)
			if err != nil {
				return nil, 0, err
			}
			et.name = "envoy-ratelimit " + label
			et.redis, et.redisNodes, et.redisPids, et.keys = "standalone", []string{standalone.Addr()}, standalonePids, d.keys
			targets = append(targets, et)
		}
	}
	// Idle RSS: after start-up and the first (admin) requests, before load.
	time.Sleep(2 * time.Second)
	for _, t := range targets {
		if t.group != "gatehouse" {
			continue
		}
		s, err := readProcs(t.pids())
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", t.name, err)
		}
		t.idleRSSKB = s.rssKB
	}
	if o.only != nil {
		var kept []*target
		for _, t := range targets {
			if o.only.MatchString(t.label()) || t.name == "plain-proxy" || t.name == "direct" {
				kept = append(kept, t)
			}
		}
		targets = kept
	}
	return targets, st.Size(), nil
}

func (t *target) label() string {
	if t.redis == "" {
		return t.name
	}
	return t.name + " / " + t.redis
}

// createSession mints a session through the sidecar's admin API.
func createSession(ctx context.Context, admin, subject string) (string, error) {
	body := strings.NewReader(fmt.Sprintf(`{"subject":%q}`, subject))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/v1/sessions", body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.Token == "" {
		return "", fmt.Errorf("create session: status %d: %v", resp.StatusCode, err)
	}
	return out.Token, nil
}

// measure runs a warm-up and then one measured wrk run against t.
func measure(ctx context.Context, r *runner, o options, t *target, runID string) (result, error) {
	var res result
	prefix := ""
	if t.uniquePrefix != "" {
		prefix = t.uniquePrefix + runID + "/"
	}
	l := load{tokens: t.tokens, uniquePrefix: prefix, keys: t.keys, erl: t.erl}
	script, err := wrkScript(r.dir, runID, l)
	if err != nil {
		return res, err
	}
	if o.warmup > 0 {
		if _, err := runWrk(ctx, o, t.url, script, o.warmup); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
		if prefix != "" {
			// The warm-up filled the paths the measured run would request.
			l.uniquePrefix = prefix + "m"
			if script, err = wrkScript(r.dir, runID+"m", l); err != nil {
				return res, err
			}
		}
	}
	before, err := readProcs(t.pids())
	if err != nil {
		return res, err
	}
	rBefore, err := redisCounters(ctx, t.redisNodes)
	if err != nil {
		return res, err
	}
	rcBefore, err := readProcs(t.redisPids)
	if err != nil {
		return res, err
	}
	dBefore, err := degradedCount(ctx, t.admin)
	if err != nil {
		return res, err
	}
	out, err := runWrk(ctx, o, t.url, script, o.duration)
	if err != nil {
		return res, err
	}
	after, err := readProcs(t.pids())
	if err != nil {
		return res, err
	}
	rAfter, err := redisCounters(ctx, t.redisNodes)
	if err != nil {
		return res, err
	}
	rcAfter, err := readProcs(t.redisPids)
	if err != nil {
		return res, err
	}
	dAfter, err := degradedCount(ctx, t.admin)
	if err != nil {
		return res, err
	}
	res.degraded = dAfter - dBefore
	res.requests = out.Requests
	res.rps = float64(out.Requests) / (float64(out.DurationUS) / 1e6)
	res.p50 = time.Duration(out.P50) * time.Microsecond
	res.p99 = time.Duration(out.P99) * time.Microsecond
	res.p999 = time.Duration(out.P999) * time.Microsecond
	res.socketErrors, res.statusErrors = out.SocketErrors, out.StatusErrors
	if out.Requests > 0 {
		res.cpuPer10k = (after.cpu - before.cpu) * 10000 / time.Duration(out.Requests)
		res.redisCPU10k = (rcAfter.cpu - rcBefore.cpu) * 10000 / time.Duration(out.Requests)
		res.cmdsPerReq = float64(rAfter.commands-rBefore.commands) / float64(out.Requests)
		res.tripsPerReq = float64(rAfter.reads-rBefore.reads) / float64(out.Requests)
	}
	res.hwmKB = after.hwmKB
	return res, nil
}

// wrkOutput is the JSON line the done() hook of wrkScript prints.
type wrkOutput struct {
	Requests     int64 `json:"requests"`
	DurationUS   int64 `json:"duration_us"`
	SocketErrors int64 `json:"socket_errors"`
	StatusErrors int64 `json:"status_errors"`
	P50          int64 `json:"p50_us"`
	P99          int64 `json:"p99_us"`
	P999         int64 `json:"p999_us"`
}

func runWrk(ctx context.Context, o options, url, script string, d time.Duration) (wrkOutput, error) {
	var out wrkOutput
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.wrk, "-t", fmt.Sprint(o.threads), "-c", fmt.Sprint(o.connections),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second))), "--timeout", "5s", "-s", script, url)
	raw, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("wrk: %w: %s", err, raw)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "BENCH "); ok {
			if err := json.Unmarshal([]byte(rest), &out); err != nil {
				return out, fmt.Errorf("wrk output %q: %w", rest, err)
			}
			return out, nil
		}
	}
	return out, fmt.Errorf("wrk printed no BENCH line: %s", raw)
}

// counters are the Redis figures a run moves, summed over the nodes.
type counters struct {
	commands int64 // INFO commandstats calls, INFO itself excluded
	reads    int64 // INFO stats total_reads_processed: one per batch a client sent
}

// redisCounters reads the counters of nodes. A pipelined batch arrives in one
// read, so the read count is the number of client round trips (plus a few
// from replication acknowledgements and the cache subscriber's pings, which
// are negligible over thousands of requests).
func redisCounters(ctx context.Context, nodes []string) (counters, error) {
	var c counters
	for _, addr := range nodes {
		cl := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		info, err := cl.Info(ctx, "commandstats", "stats").Result()
		cl.Close()
		if err != nil {
			return c, fmt.Errorf("INFO %s: %w", addr, err)
		}
		for line := range strings.Lines(info) {
			line = strings.TrimSpace(line)
			if name, rest, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(name, "cmdstat_") {
				if name == "cmdstat_info" || name == "cmdstat_hello" || name == "cmdstat_client|setinfo" {
					continue
				}
				var calls int64
				if _, err := fmt.Sscanf(rest, "calls=%d", &calls); err == nil {
					c.commands += calls
				}
			}
			if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
				var n int64
				if _, err := fmt.Sscan(v, &n); err != nil {
					return c, fmt.Errorf("total_reads_processed %q: %w", v, err)
				}
				c.reads += n
			}
		}
	}
	return c, nil
}

// writeReport replaces the generated block of the HTTP rows in path (or
// creates the file), keeping the hand-written analysis around it.
func writeReport(path, block string) error { return writeReportBlock(path, "bench", block) }

// writeReportBlock replaces the block between <!-- name:begin --> and
// <!-- name:end --> in path, appending it when the file has none.
func writeReportBlock(path, name, block string) error {
	begin, end := "<!-- "+name+":begin -->", "<!-- "+name+":end -->"
	block = begin + "\n" + block + end
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		old = []byte("# Benchmarks\n\n" + begin + "\n" + end + "\n")
	case err != nil:
		return fmt.Errorf("read report: %w", err)
	}
	s := string(old)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	} else {
		s = s[:i] + block + s[j+len(end):]
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// redisPids finds the redis-server processes (children of this one) serving
// addrs: redis-server retitles itself "redis-server host:port [cluster]".
func redisPids(addrs []string) []int {
	var pids []int
	for _, pid := range childrenOf(os.Getpid()) {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		title := strings.ReplaceAll(string(raw), "\x00", " ")
		for _, a := range addrs {
			if strings.Contains(title, a+" ") || strings.HasSuffix(strings.TrimSpace(title), a) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// fetch GETs u and returns the body.
func fetch(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// degradedCount sums, from a sidecar's /metrics, the requests a feature
// could not serve as configured because Redis failed or was too slow:
// session lookups that errored, rate-limit decisions taken without Redis,
// cache requests that bypassed the cache. A benchmark figure is only worth
// reporting if this stays 0. No admin address (peers) counts 0.
func degradedCount(ctx context.Context, admin string) (int64, error) {
	if admin == "" {
		return 0, nil
	}
	raw, err := fetch(ctx, "http://"+admin+"/metrics")
	if err != nil {
		return 0, fmt.Errorf("scrape metrics: %w", err)
	}
	degraded := []struct{ name, label string }{
		{"gatehouse_session_lookups_total", `result="error"`},
		{"gatehouse_ratelimit_decisions_total", `result="error_open"`},
		{"gatehouse_ratelimit_decisions_total", `result="fallback_denied"`},
		{"gatehouse_ratelimit_decisions_total", `result="error_closed"`},
		{"gatehouse_cache_requests_total", `result="bypass"`},
	}
	var n float64
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		for _, d := range degraded {
			if strings.HasPrefix(series, d.name+"{") && strings.Contains(series, d.label) {
				v, err := strconv.ParseFloat(value, 64)
				if err != nil {
					return 0, fmt.Errorf("metric %s: %w", series, err)
				}
				n += v
			}
		}
	}
	return int64(n), nil
}

// startERL runs an envoyproxy/ratelimit service against Redis at redisAddr
// with erlConfig, answering its JSON API on a free port.
func startERL(ctx context.Context, r *runner, bin, redisAddr string, addr func() string) (*target, error) {
	root := r.TempDir()
	cfgDir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, fmt.Errorf("erl config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "bench.yaml"), []byte(erlConfig), 0o644); err != nil {
		return nil, fmt.Errorf("erl config: %w", err)
	}
	port := func() string { _, p, _ := strings.Cut(addr(), ":"); return p }
	httpPort := port()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"HOST=127.0.0.1", "PORT="+httpPort, "GRPC_HOST=127.0.0.1", "GRPC_PORT="+port(),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT="+port(), "USE_STATSD=false", "LOG_LEVEL=warn",
		"RUNTIME_ROOT="+root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL="+redisAddr)
	r.startCmd(cmd)
	url := "http://127.0.0.1:" + httpPort
	if err := waitHTTP(ctx, url+"/healthcheck"); err != nil {
		return nil, fmt.Errorf("envoy-ratelimit: %w", err)
	}
	return &target{group: "peer", url: url + "/json", erl: true, pids: func() []int { return []int{cmd.Process.Pid} }}, nil
}
