package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// BenchmarkProxyPassthrough compares a request through the sidecar with no
// policies (identity, metrics, graph reference, reverse proxy) against a
// bare httputil.ReverseProxy with the same pooled transport, both over real
// loopback HTTP in the same run, so the difference is the sidecar's own cost.
func BenchmarkProxyPassthrough(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer app.Close()
	target, _ := url.Parse(app.URL)

	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = newTransport(0)

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
