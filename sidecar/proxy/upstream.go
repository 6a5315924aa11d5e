package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/problem"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

// newTransport returns the pooled transport to the app. The app is on
// loopback next to us, so many idle connections per host are cheap and save
// a handshake per request under load; the default of 2 would churn sockets.
//
// With h2c the transport speaks only HTTP/2 with prior knowledge (as gRPC
// servers expect; an h2c-only server has no HTTP/1.1 to upgrade from), and
// multiplexes every request over a few connections, opening another only
// when the app's MAX_CONCURRENT_STREAMS is reached. Flow control is
// HTTP/2's own: a stream's window (4 MiB) bounds what the sidecar buffers
// from the app for a client that reads slowly.
func newTransport(responseHeaderTimeout time.Duration, h2c bool) *http.Transport {
	t := &http.Transport{
		Proxy: nil, // never route app traffic through an HTTP_PROXY from the environment
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: responseHeaderTimeout,
		// The app gets the client's Accept-Encoding, or none: by default
		// the transport would ask for gzip on its own and inflate the answer
		// again for a client that never wanted it, spending CPU on both
		// sides and showing the app a header nobody sent.
		DisableCompression: true,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return t
}

// timedTransport measures the upstream round trip: the time until the
// app's response headers arrive.
type timedTransport struct {
	next http.RoundTripper
	m    *Metrics
}

func (t timedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		t.m.upstream.Observe(time.Since(start).Seconds())
	}
	return resp, err
}

// newUpstream returns the reverse proxy to the app at target.
func newUpstream(target *url.URL, rt http.RoundTripper, m *Metrics, log *slog.Logger) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The app routes and builds links on the Host the client asked for.
			pr.Out.Host = pr.In.Host
			setForwarded(pr)
			// ReverseProxy has just removed the hop-by-hop headers. The
			// normaliser left Connection naming none of ours, but the
			// identity headers are the app's only source of truth, so they
			// are put back from the request the features saw regardless.
			for k, vs := range pr.In.Header {
				if request.IsReserved(k) {
					pr.Out.Header[k] = vs
				}
			}
			forwardGRPCTimeout(pr)
		},
		Transport: timedTransport{next: rt, m: m},
		// ReverseProxy allocates a 32 KiB copy buffer per response without
		// a pool: the largest allocation of a passthrough request, and most
		// of its garbage collection (docs/benchmarks.md).
		BufferPool: copyBuffers,
		// No periodic flushing: ReverseProxy already flushes every write of
		// a streamed response (text/event-stream, or a body of unknown
		// length; TestStreamedResponsesAreFlushed). Forcing it (-1) for
		// bodies of known length too cost a timer goroutine and an extra
		// write syscall for the headers on every response: about 15% of the
		// passthrough CPU (docs/benchmarks.md).
		FlushInterval: 0,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			switch {
			case bodyStalled(r.Context()):
				// The client stopped sending its body (proxy.bodyReadTimeout);
				// it may still read the answer. Counted in client stalls.
				problem.Write(w, r, &problem.Error{Status: http.StatusRequestTimeout, Kind: "body-timeout", Title: "Request body timed out",
					Detail: "The request body stopped arriving; see proxy.bodyReadTimeout.", Header: http.Header{"Connection": {"close"}}})
			case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
				// The client went away; nobody is left to answer.
				m.upstreamErrors.WithLabelValues("canceled").Inc()
				w.WriteHeader(499)
			case errors.Is(r.Context().Err(), context.DeadlineExceeded):
				// A gRPC call's own deadline (grpc-timeout) passed: the
				// client's choice, not a failing app. 504, which a gRPC
				// client gets as DEADLINE_EXCEEDED.
				m.upstreamErrors.WithLabelValues("deadline").Inc()
				problem.Write(w, r, &problem.Error{Status: http.StatusGatewayTimeout, Kind: "deadline-exceeded", Title: "Deadline exceeded",
					Detail: "The call's grpc-timeout passed before the app answered."})
			case isTimeout(err):
				m.upstreamErrors.WithLabelValues("timeout").Inc()
				log.Warn("Upstream timed out", "path", r.URL.Path, "error", err)
				problem.Write(w, r, &problem.Error{Status: http.StatusGatewayTimeout, Kind: "upstream-timeout", Title: "Upstream timed out"})
			default:
				m.upstreamErrors.WithLabelValues("unavailable").Inc()
				log.Warn("Upstream unavailable", "path", r.URL.Path, "error", err)
				problem.Write(w, r, &problem.Error{Status: http.StatusBadGateway, Kind: "upstream-unavailable", Title: "Upstream unavailable"})
			}
		},
	}
}

// setForwarded writes the X-Forwarded-For, -Host and -Proto headers the
// app receives. ReverseProxy removed the client's (and Forwarded) before
// Rewrite. From a peer in proxy.trustedProxies (a load balancer, an
// ingress) they describe the original request: its X-Forwarded-For chain
// is kept with the peer appended, and its X-Forwarded-Host and -Proto are
// kept when it sent them. From any other peer they could be forged, so the
// app gets the peer's address, the Host the client asked for and "http"
// (the sidecar serves no TLS). docs/sidecar-config.md#what-the-app-receives.
func setForwarded(pr *httputil.ProxyRequest) {
	trusted := fromTrustedPeer(pr.In)
	if xff := pr.In.Header["X-Forwarded-For"]; trusted && len(xff) > 0 {
		// SetXForwarded appends the peer to what Out already has.
		pr.Out.Header["X-Forwarded-For"] = xff
	}
	pr.SetXForwarded()
	if !trusted {
		return
	}
	for _, h := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header[h]; len(v) > 0 {
			pr.Out.Header[h] = v
		}
	}
}

// bufferPool recycles ReverseProxy's copy buffers. It holds array pointers,
// so that neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

var copyBuffers = &bufferPool{p: sync.Pool{New: func() any { return new([writeChunk]byte) }}}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[writeChunk]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= writeChunk {
		b.p.Put((*[writeChunk]byte)(buf[:writeChunk]))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
