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
	"time"

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
// rule (Override, no in-process tier) that answers it from Redis, over real
// loopback HTTP with 32 concurrent clients, in one run. req/s is the
// throughput the sub-benchmark reached; cpu-ns/op is this process's CPU
// (client, app and proxy) per request and redis-cpu-ns/op Redis' own, which
// shares the same cores.
//
//	go test ./sidecar/proxy -run '^$' -bench ProxyCacheHit -benchtime 3s -count 3
func BenchmarkProxyCacheHit(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(0, false)

	srv := redistest.StartStandalone(b)
	cached := newSidecar(b, app.URL, cfgDoc("bench-cache", `"redis":[{"name":"main","mode":"Standalone","addrs":["`+srv.Addr()+`"]}],
		"caches":[{"namespace":"bench","name":"cache","redis":"main","rules":[{"name":"all","ttl":"60s","mode":"Override"}]}]`))
	if err := cached.p.watcher.Reload(); err != nil {
		b.Fatal(err)
	}
	defer cached.p.Close()

	for _, bc := range []struct {
		name, xcache string
		h            http.Handler
	}{{"bare", "", bare}, {"gatehouse-shared-tier", "HIT", cached.p}} {
		b.Run(bc.name, func(b *testing.B) {
			front := httptest.NewServer(bc.h)
			defer front.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			defer client.CloseIdleConnections()
			get := func() (*http.Response, error) {
				resp, err := client.Get(front.URL + "/hit")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			for range 2 {
				if _, err := get(); err != nil {
					b.Fatal(err)
				}
			}
			if resp, err := get(); err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != bc.xcache {
				b.Fatalf("warm-up: %v %v", err, resp)
			}
			b.SetParallelism(16) // 32 clients on 2 cores, as make bench's wrk
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, rcpu0 := processCPU(), redisCPU(b, srv.Addr())
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := get()
					if err != nil {
						b.Error(err)
						return
					}
					if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != bc.xcache {
						b.Errorf("status %d, X-Cache %q", resp.StatusCode, resp.Header.Get("X-Cache"))
						return
					}
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(redisCPU(b, srv.Addr())-rcpu0)/float64(b.N), "redis-cpu-ns/op")
		})
	}
}

// redisCPU is the node's used_cpu_sys + used_cpu_user, in nanoseconds.
func redisCPU(b *testing.B, addr string) int64 {
	b.Helper()
	info, err := redistest.Do(context.Background(), addr, "INFO", "cpu")
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				s, _ := strconv.ParseFloat(v, 64)
				total += s
			}
		}
	}
	return int64(total * 1e9)
}
