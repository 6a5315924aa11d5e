package cache

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// grpcApp answers GET /products/42 with a cacheable body and every POST as
// a gRPC server does: HTTP 200, a message, and the outcome in the
// grpc-status trailer (the status it is told, in status).
func grpcApp(t *testing.T, status *atomic.Value) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			text("product 42", "Cache-Control", "max-age=60")(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte{0, 0, 0, 0, 0})
		// Streamed, as a gRPC response is: the trailer follows the body.
		_ = http.NewResponseController(w).Flush()
		w.Header().Set(http.TrailerPrefix+"Grpc-Status", status.Load().(string))
	})
}

// grpcCall makes a gRPC-shaped call through s and returns the grpc-status
// trailer the client received.
func grpcCall(t *testing.T, s *sidecar) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.srv.URL+"/shop.v1.Products/Update", strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("gRPC call: HTTP %d", res.StatusCode)
	}
	return res.Trailer.Get("Grpc-Status")
}

// A gRPC call is a POST, so a broad invalidate rule ("every write under /
// evicts the product pages") matches it; but its HTTP status is 200 even
// when the call failed, and an app's gRPC API is rarely the writer its
// HTTP pages are invalidated for. Rules fire on gRPC calls only when they
// say grpc: true, and then only for calls that ended OK.
func TestGRPCCallsInvalidateOnlyWhenAskedAndOK(t *testing.T) {
	srv := startStandalone(t)
	var status atomic.Value
	status.Store("0")
	up := grpcApp(t, &status)
	rules := []config.CacheRule{cacheRule("products", time.Minute)}
	evictProduct := config.InvalidateRule{Name: "writes", Match: config.Match{PathPrefix: "/"}, Paths: []string{"/products/42"}}

	warm := func(s *sidecar) {
		t.Helper()
		s.get(t, "/products/42")
		if r := s.get(t, "/products/42"); r.xcache != "HIT" {
			t.Fatalf("warm-up: %s", r.xcache)
		}
	}

	t.Run("not opted in: a successful gRPC call evicts nothing", func(t *testing.T) {
		s := newSidecar(t, policy(rules, []config.InvalidateRule{evictProduct}), standaloneClient(t, srv.Addr()), up)
		warm(s)
		grpcCall(t, s)
		if r := s.get(t, "/products/42"); r.xcache != "HIT" {
			t.Errorf("after a gRPC call the rule did not opt into: %s, want HIT", r.xcache)
		}
		// The same rule still fires on an HTTP write.
		if r := s.do(t, http.MethodPost, "/orders"); r.status != http.StatusOK {
			t.Fatalf("HTTP POST: %d", r.status)
		}
		if r := s.get(t, "/products/42"); r.xcache != "MISS" {
			t.Errorf("after an HTTP POST: %s, want MISS", r.xcache)
		}
	})

	t.Run("opted in: only a call that ended OK evicts", func(t *testing.T) {
		optedIn := evictProduct
		optedIn.GRPC = true
		s := newSidecar(t, policy(rules, []config.InvalidateRule{optedIn}), standaloneClient(t, srv.Addr()), up)
		warm(s)
		status.Store("5") // NOT_FOUND: HTTP 200, but the write did not happen
		grpcCall(t, s)
		if r := s.get(t, "/products/42"); r.xcache != "HIT" {
			t.Errorf("after a failed gRPC call: %s, want HIT", r.xcache)
		}
		status.Store("0")
		if got := grpcCall(t, s); got != "0" {
			t.Errorf("the client got grpc-status %q, want the app's 0", got)
		}
		if r := s.get(t, "/products/42"); r.xcache != "MISS" {
			t.Errorf("after a gRPC call that ended OK: %s, want MISS", r.xcache)
		}
	})
}

// gRPC calls are POSTs: a cache rule covering their path never stores or
// answers one, so every call reaches the app.
func TestGRPCCallsAreNeverCached(t *testing.T) {
	srv := startStandalone(t)
	var status atomic.Value
	status.Store("0")
	up := grpcApp(t, &status)
	s := newSidecar(t, policy([]config.CacheRule{cacheRule("everything", time.Minute)}, nil), standaloneClient(t, srv.Addr()), up)
	before := up.calls.Load()
	for range 3 {
		if got := grpcCall(t, s); got != "0" {
			t.Fatalf("grpc-status %q", got)
		}
	}
	if n := up.calls.Load() - before; n != 3 {
		t.Errorf("the app answered %d of 3 gRPC calls: the others came from the cache", n)
	}
}
