package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"
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
