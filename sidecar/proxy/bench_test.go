package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// BenchmarkProxyPassthrough compares a request through the sidecar with no
// policies (normaliser, identity, metrics, graph reference, progress
// deadlines, reverse proxy) against a bare httputil.ReverseProxy with the
// same pooled transport, both over real loopback HTTP in the same run, so
// the difference is the sidecar's own cost. cpu-ns/op is the CPU the whole
// process spent per request.
func BenchmarkProxyPassthrough(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)

	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(0, false)

	s := newSidecarB(b, app.URL)
	if err := s.p.watcher.Reload(); err != nil {
		b.Fatal(err)
	}
	defer s.p.Close()

	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"gatehouse", s.p}} {
		b.Run(bc.name, func(b *testing.B) {
			front := httptest.NewServer(bc.h)
			defer front.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			defer func() {
				// Process CPU (user + system) per request: client, app and
				// proxy alike, so the gatehouse/bare ratio is the sidecar's
				// share; wall-clock ns/op of a parallel benchmark is not.
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			}()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(front.URL + "/bench")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// processCPU is the CPU time this process has used, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkProxyH2CPassthrough is BenchmarkProxyPassthrough for a gRPC
// unary call over h2c on both sides: a gRPC-shaped request, an answer
// streamed as a gRPC server streams it (a 1 KiB message, flushed, then the
// grpc-status trailer), through the sidecar with --upstream-protocol=h2c
// and through a bare httputil.ReverseProxy with an h2c transport.
func BenchmarkProxyH2CPassthrough(b *testing.B) {
	msg := make([]byte, 5+1024)
	msg[4] = 0 // a 1 KiB message of zeros; the length prefix is not checked
	app := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		_, _ = w.Write(msg)
		_ = http.NewResponseController(w).Flush()
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", "0")
	}))
	var h2cOnly, both http.Protocols
	h2cOnly.SetUnencryptedHTTP2(true)
	both.SetHTTP1(true)
	both.SetUnencryptedHTTP2(true)
	app.Config.Protocols = &h2cOnly
	app.Start()
	defer app.Close()
	target, _ := url.Parse(app.URL)

	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(0, true)

	s := newSidecar(b, app.URL, cfgDoc("bench", ""), func(o *Options) { o.UpstreamProtocol = "h2c" })
	if err := s.p.watcher.Reload(); err != nil {
		b.Fatal(err)
	}
	defer s.p.Close()
	body := make([]byte, 5)

	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"gatehouse", s.p}} {
		b.Run(bc.name, func(b *testing.B) {
			front := httptest.NewUnstartedServer(bc.h)
			front.Config.Protocols = &both
			front.Start()
			defer front.Close()
			tr := &http.Transport{Protocols: &h2cOnly}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, front.URL+"/grpc.testing.TestService/UnaryCall", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/grpc")
					req.Header.Set("Te", "trailers")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.Trailer.Get("Grpc-Status") != "0" {
						b.Errorf("grpc-status %q", resp.Trailer.Get("Grpc-Status"))
						return
					}
				}
			})
		})
	}
}

// BenchmarkProxyCacheHit is make bench's "cache-hit (shared tier)" row as a
// focused Go benchmark: a 1 KiB answer through a bare
// httputil.ReverseProxy to the app, and through the sidecar with one cache
// rule (Override) answering it from Redis, or from its in-process tier, in
// one run. As in make bench, the app and the load are processes of their
// own (this test binary in a helper role, main_test.go), so this process
// is the proxy alone: the load is wrk's, 32 keep-alive connections on
// loopback, each sending its next request once the answer is read.
// req/s is the load's throughput; cpu-ns/op the proxy's CPU per request,
// redis-reads/op the round trips Redis served per request (shared by
// collapsed hits and coalesced pipelines), redis-cpu-ns/op Redis' CPU and
// all-cpu-ns/op that of every process (proxy,
// Redis, app, load). On a busy machine req/s is noisy; the ratio of two
// sub-benchmarks' all-cpu-ns/op is what their req/s ratio is on 2 quiet
// cores the load saturates.
//
//	go test ./sidecar/proxy -run '^$' -bench ProxyCacheHit -benchtime 3s -count 3
func BenchmarkProxyCacheHit(b *testing.B) {
	app := startHelper(b, helperApp)
	target, _ := url.Parse("http://" + app.addr)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(0, false)

	srv := redistest.StartStandalone(b)
	cl := redistest.StartCluster(b)
	var primaries []string
	for _, p := range cl.Primaries {
		primaries = append(primaries, p.Addr())
	}
	standalone := `{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}`
	cluster := `{"name":"main","mode":"Cluster","addrs":["` + strings.Join(cl.Addrs(), `","`) + `"]}`
	cacheDoc := func(name, redis, tier string) string {
		return cfgDoc("bench-"+name, `"redis":[`+redis+`],
			"caches":[{"namespace":"bench","name":"`+name+`","redis":"main"`+tier+`,"rules":[{"name":"all","ttl":"60s","mode":"Override"}]}]`)
	}
	shared := newSidecar(b, target.String(), cacheDoc("shared", standalone, ""))
	sharedCluster := newSidecar(b, target.String(), cacheDoc("shared-cluster", cluster, ""))
	local := newSidecar(b, target.String(), cacheDoc("local", standalone, `,"inProcess":{"maxEntries":1000,"maxBytes":1000000}`))
	for _, s := range []*sidecar{shared, sharedCluster, local} {
		if err := s.p.watcher.Reload(); err != nil {
			b.Fatal(err)
		}
		defer s.p.Close()
	}

	for _, bc := range []struct {
		name, want string
		h          http.Handler
		redis      []string // the nodes whose CPU and reads count
	}{
		{"bare", "", bare, []string{srv.Addr()}},
		{"gatehouse-shared-tier", "detail=redis", shared.p, []string{srv.Addr()}},
		{"gatehouse-shared-tier-cluster", "detail=redis", sharedCluster.p, primaries},
		{"gatehouse-inprocess-tier", "detail=inprocess", local.p, []string{srv.Addr()}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			front := httptest.NewServer(bc.h)
			defer front.Close()
			addr := front.Listener.Addr().String()
			// Fill the cache, and the in-process tier from Redis, under
			// the Host the load sends.
			if _, err := load(loadSpec{addr: addr, path: "/hit", conns: 1, n: 3}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0, rcpu0, acpu0 := processCPU(), redisCPU(b, bc.redis), app.appCPU(b)
			reads0 := sumReads(b, bc.redis)
			elapsed, lcpu := runLoad(b, loadSpec{addr: addr, path: "/hit", conns: 32, n: b.N, want: bc.want})
			reads := sumReads(b, bc.redis)
			cpu, rcpu, acpu := processCPU()-cpu0, redisCPU(b, bc.redis)-rcpu0, app.appCPU(b)-acpu0
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "req/s")
			// Less each node's INFO after and the close of the connection
			// of the one before (redistest.Do's connections are one-shot).
			b.ReportMetric(float64(reads-reads0-2*int64(len(bc.redis)))/n, "redis-reads/op")
			b.ReportMetric(float64(cpu)/n, "cpu-ns/op")
			b.ReportMetric(float64(rcpu)/n, "redis-cpu-ns/op")
			b.ReportMetric(float64(cpu+rcpu+acpu+lcpu)/n, "all-cpu-ns/op")
		})
	}
}

// redisCPU is the nodes' used_cpu_sys + used_cpu_user, in nanoseconds.
func redisCPU(b *testing.B, addrs []string) int64 {
	b.Helper()
	var total float64
	for _, a := range addrs {
		info, err := redistest.Do(context.Background(), a, "INFO", "cpu")
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(info) {
			for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
					s, _ := strconv.ParseFloat(v, 64)
					total += s
				}
			}
		}
	}
	return int64(total * 1e9)
}

// BenchmarkProxySessionRateLimitCacheMiss is make bench's
// session+ratelimit+cache-miss row as a focused Go benchmark: a session
// held by the in-process tier, strict FixedWindow limits per client IP and
// per subject, and a cache rule varied by subject, every request for a path
// of its own (a miss, fetched and stored), 32 keep-alive connections from a
// load process, on standalone Redis and on the 3+3 cluster. redis-reads/op
// is what make bench reports as Redis round trips per request: the reads
// of every primary, which concurrent requests' coalesced pipelines share.
// A request's wall time is two round trips (its batch, then the store);
// TestCacheLookupJoinsTheRequestBatch counts them one request at a time.
//
//	go test ./sidecar/proxy -run '^$' -bench ProxySessionRateLimitCacheMiss -benchtime 3s
func BenchmarkProxySessionRateLimitCacheMiss(b *testing.B) {
	app := startHelper(b, helperApp)
	srv := redistest.StartStandalone(b)
	cl := redistest.StartCluster(b)
	var primaries []string
	for _, p := range cl.Primaries {
		primaries = append(primaries, p.Addr())
	}
	run := 0
	for _, bc := range []struct {
		name, redis string
		nodes       []string
	}{
		{"standalone", `{"name":"main","mode":"Standalone","addrs":["` + srv.Addr() + `"]}`, []string{srv.Addr()}},
		{"cluster", `{"name":"main","mode":"Cluster","addrs":["` + strings.Join(cl.Addrs(), `","`) + `"]}`, primaries},
	} {
		s := newSidecar(b, "http://"+app.addr, cfgDoc("bench-miss-"+bc.name, cacheBatchPolicies(bc.redis, "bench-"+bc.name)))
		if err := s.p.watcher.Reload(); err != nil {
			b.Fatal(err)
		}
		defer s.p.Close()
		admin := httptest.NewServer(s.p.AdminHandler())
		defer admin.Close()
		s.admin = admin.URL
		auth := "Authorization: Bearer " + mint(b, s, "bench", nil)
		b.Run(bc.name, func(b *testing.B) {
			front := httptest.NewServer(s.p)
			defer front.Close()
			addr := front.Listener.Addr().String()
			run++
			prefix := "/miss/" + strconv.Itoa(run) + "/"
			// The session's tier, the scripts and the connections warm.
			if _, err := load(loadSpec{addr: addr, path: prefix + "warm-", unique: true, header: auth, conns: 4, n: 40, want: "stored"}); err != nil {
				b.Fatal(err)
			}
			reads0 := sumReads(b, bc.nodes)
			elapsed, _ := runLoad(b, loadSpec{addr: addr, path: prefix, unique: true, header: auth, conns: 32, n: b.N, want: "stored"})
			reads := sumReads(b, bc.nodes)
			n := float64(b.N)
			b.ReportMetric(n/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(reads-reads0-2*int64(len(bc.nodes)))/n, "redis-reads/op")
		})
	}
}
