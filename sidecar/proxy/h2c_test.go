package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
)

// h2cOnly is the protocol set of an h2c-only peer: what a gRPC server
// accepts and a gRPC client speaks (prior knowledge, RFC 9113 §3.3).
func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

// newH2CApp is an app that speaks only HTTP/2 cleartext, as a gRPC server
// does: an HTTP/1.1 request never reaches h.
func newH2CApp(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = h2cOnly()
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: h2cOnly()}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func withUpstreamProtocol(p string) sidecarOpt {
	return func(o *Options) { o.UpstreamProtocol = p }
}

// The first symptom: an h2c client against the data port failed
// with "http2: frame too large, note that the frame header looked like an
// HTTP/1.1 header". Both protocols are served on the one socket.
func TestDataPortServesHTTP1AndH2CPriorKnowledge(t *testing.T) {
	app := newApp(t)
	s := newSidecar(t, app.URL, cfgDoc("h2c", "")).start(t)
	h2 := h2cClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			c, wantMajor := http.DefaultClient, 1
			if i%2 == 0 {
				c, wantMajor = h2, 2
			}
			resp, err := c.Get(s.data + fmt.Sprintf("/item/%d", i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || resp.ProtoMajor != wantMajor || !bytes.Contains(body, []byte("X-Gatehouse-Client-Ip")) {
				errs <- fmt.Errorf("%s client: %d over HTTP/%d, body %q", resp.Proto, resp.StatusCode, resp.ProtoMajor, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// With --upstream-protocol=h2c the app gets HTTP/2 whatever the client
// spoke, and its trailers reach the client; an HTTP/1.1 proxy in front of
// an h2c-only app answered nothing but 502.
func TestH2CUpstream(t *testing.T) {
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Proto", r.Proto)
		_, _ = io.Copy(w, r.Body)
		// Streamed, as a gRPC server answers: the trailers follow a body
		// of unknown length.
		_ = http.NewResponseController(w).Flush()
		w.Header().Set("X-Checksum", "ok")
	})
	s := newSidecar(t, app.URL, cfgDoc("h2c", ""), withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1 client", http.DefaultClient}, {"h2c client", h2cClient(t)}} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := c.client.Post(s.data+"/echo", "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != "hello" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Proto"); got != "HTTP/2.0" {
				t.Errorf("the app was reached over %q, want HTTP/2.0", got)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "ok" {
				t.Errorf("trailer X-Checksum = %q, want the app's", got)
			}
		})
	}
	t.Run("a WebSocket upgrade cannot cross HTTP/2: 502", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.data+"/ws", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("upgrade to an h2c app: %d, want 502 (docs/injection.md)", resp.StatusCode)
		}
	})
	t.Run("HTTP/1.1 app without the flag stays unaffected", func(t *testing.T) {
		plain := newApp(t)
		s := newSidecar(t, plain.URL, cfgDoc("h1", ""), withUpstreamProtocol(contract.UpstreamHTTP1)).start(t)
		resp, body := get(t, s.data+"/x", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "X-Forwarded-For") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
}

func TestNewRefusesH2CToHTTPS(t *testing.T) {
	_, err := New(Options{Upstream: mustURL(t, "https://127.0.0.1:8443"), ConfigPath: "c.json", UpstreamProtocol: contract.UpstreamH2C})
	if err == nil || !strings.Contains(err.Error(), "http://") {
		t.Errorf("New with h2c to https: %v, want a refusal", err)
	}
	_, err = New(Options{Upstream: mustURL(t, "http://127.0.0.1:8081"), ConfigPath: "c.json", UpstreamProtocol: "http2"})
	if err == nil {
		t.Error("New accepted upstream protocol http2")
	}
}

// grpcCall sends a gRPC-shaped unary call (an empty message) with the
// given grpc-timeout over h2c and returns the response, its trailers read.
func grpcCall(t *testing.T, c *http.Client, target, timeout string) (*http.Response, time.Duration) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader([]byte{0, 0, 0, 0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	if timeout != "" {
		req.Header.Set("Grpc-Timeout", timeout)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, time.Since(start)
}

// status is a response's grpc-status: from the trailers, or from the
// headers of a trailers-only answer.
func status(resp *http.Response) string {
	if v := resp.Trailer.Get(grpcwire.StatusHeader); v != "" {
		return v
	}
	return resp.Header.Get(grpcwire.StatusHeader)
}

// A client that does not enforce its own deadline (this raw one; a
// misbehaving or non-Go client) must still have its call ended when its
// grpc-timeout passes, and the app must learn how much time is left.
// Slack: the bound is 10s for a 300ms deadline — the mechanism, not the
// speed, is under test on this shared machine.
func TestGRPCTimeoutIsTheDeadlineTowardsTheApp(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Grpc-Timeout"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/grpc")
		if r.URL.Path == "/test.Svc/StartsThenHangs" {
			// The response begins, then the app ignores the deadline.
			_, _ = w.Write([]byte{0, 0, 0, 0, 0})
			_ = http.NewResponseController(w).Flush()
		}
		<-r.Context().Done() // an app that ignores grpc-timeout
	})
	s := newSidecar(t, app.URL, cfgDoc("deadline", ""), withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	c := h2cClient(t)

	for _, path := range []string{"/test.Svc/NeverAnswers", "/test.Svc/StartsThenHangs"} {
		t.Run(path, func(t *testing.T) {
			resp, took := grpcCall(t, c, s.data+path, "300m")
			if resp.StatusCode != http.StatusOK || status(resp) != "4" {
				t.Fatalf("HTTP %d grpc-status %q (headers %v, trailers %v), want 200 and 4 (DEADLINE_EXCEEDED)",
					resp.StatusCode, status(resp), resp.Header, resp.Trailer)
			}
			if took < 300*time.Millisecond || took > 10*time.Second {
				t.Errorf("call ended after %v, want at its 300ms deadline (10s slack)", took)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range seen {
		d, ok := grpcwire.ParseTimeout(v)
		if !ok || d > 300*time.Millisecond || d <= 0 {
			t.Errorf("the app was told grpc-timeout %q, want the time left of 300ms", v)
		}
	}
	if got := metric(t, s, `gatehouse_sidecar_upstream_errors_total{reason="deadline"}`); got != "1" {
		t.Errorf(`upstream_errors{reason="deadline"} = %q, want 1 (the call that never answered)`, got)
	}
}

// A malformed grpc-timeout is the app's to refuse (gRPC servers answer
// INTERNAL); the sidecar forwards it untouched and sets no deadline.
func TestMalformedGRPCTimeoutIsForwardedUntouched(t *testing.T) {
	got := make(chan string, 1)
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		_, hasDeadline := r.Context().Deadline()
		got <- fmt.Sprintf("%s %v", r.Header.Get("Grpc-Timeout"), hasDeadline)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "0")
	})
	s := newSidecar(t, app.URL, cfgDoc("deadline", ""), withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	resp, _ := grpcCall(t, h2cClient(t), s.data+"/test.Svc/M", "1.5S")
	if status(resp) != "0" {
		t.Fatalf("grpc-status %q", status(resp))
	}
	if v := <-got; v != "1.5S false" {
		t.Errorf("app saw %q, want the header as sent and no deadline", v)
	}
}

func TestGRPCDeadlineOnlyForGRPCCalls(t *testing.T) {
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(500 * time.Millisecond):
			_, _ = io.WriteString(w, "late but fine")
		case <-r.Context().Done():
		}
	})
	s := newSidecar(t, app.URL, cfgDoc("deadline", ""), withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.data+"/page", nil)
	req.Header.Set("Grpc-Timeout", "10m") // not a gRPC call: no meaning
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "late but fine" {
		t.Errorf("%d %q: a grpc-timeout on a non-gRPC request cut it", resp.StatusCode, body)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// An HTTP/2 client that goes away (its connection drops) while its request
// body is still being proxied: the server ends the handler, and the
// transport, still reading the body on its own goroutine, gets an error and
// cleared the body's read deadline on the stream's writer, which the server
// had released, crashing the whole sidecar (every client of the pod at
// once). Any client could do it.
func TestH2ClientDroppingMidBodyDoesNotCrash(t *testing.T) {
	entered := make(chan struct{}, 64)
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body)
	})
	s := newSidecar(t, app.URL, cfgDoc("drop", `"proxy":{"bodyReadTimeout":"5s"}`), withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	for range 20 {
		tr := &http.Transport{Protocols: h2cOnly()}
		pr, pw := io.Pipe()
		go func() {
			for {
				if _, err := pw.Write(bytes.Repeat([]byte("x"), 2<<10)); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		req, _ := http.NewRequest(http.MethodPost, s.data+"/upload", pr)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
		<-entered
		time.Sleep(30 * time.Millisecond)
		// Drop the connection: what a client that crashes or loses its
		// network does.
		tr.CloseIdleConnections()
		_ = pr.CloseWithError(errors.New("client gone"))
		tr.CloseIdleConnections()
		<-done
	}
	time.Sleep(200 * time.Millisecond)
	if code, _ := readyz(t, s); code != http.StatusOK {
		t.Fatalf("sidecar readyz %d", code)
	}
}

// An HTTP/2 stream whose client keeps sending its body but stops reading
// the answer is cut by the write deadline (proxy.writeTimeout), as on
// HTTP/1.1. The handler then returns while the transport is still reading
// the body on its own goroutine; the next read deadline it set went to the
// stream's writer, which the server had released, and crashed the whole
// sidecar (every client of the pod at once).
func TestH2StalledReaderIsCutWithoutCrashing(t *testing.T) {
	app := newH2CApp(t, func(w http.ResponseWriter, r *http.Request) {
		// Echo the body, then flood the answer.
		buf := make([]byte, 32<<10)
		go func() { _, _ = io.Copy(io.Discard, r.Body) }()
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
			if http.NewResponseController(w).Flush() != nil {
				return
			}
		}
	})
	s := newSidecar(t, app.URL, cfgDoc("stall", `"proxy":{"writeTimeout":"300ms","bodyReadTimeout":"5s"}`),
		withUpstreamProtocol(contract.UpstreamH2C)).start(t)
	c := h2cClient(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			pr, pw := io.Pipe()
			go func() {
				defer pw.Close()
				for range 40 {
					if _, err := pw.Write(bytes.Repeat([]byte("x"), 2<<10)); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			resp, err := c.Post(s.data+"/duplex", "application/octet-stream", pr)
			if err != nil {
				return
			}
			// Read a little, then stop reading while the body goes on.
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			time.Sleep(2 * time.Second)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if code, _ := readyz(t, s); code != http.StatusOK {
		t.Fatalf("sidecar readyz %d", code)
	}
	if got := metric(t, s, `gatehouse_sidecar_client_stalls_total{operation="write"}`); got == "" || got == "0" {
		t.Errorf("client write stalls = %q: the readers that stopped were not cut", got)
	}
}
