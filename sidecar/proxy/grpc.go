package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
)

// A gRPC call carries its deadline in grpc-timeout (PROTOCOL-HTTP2.md). The
// sidecar honours it as the deadline of everything the call waits on —
// session and rate-limit lookups, the app — so a call is never kept past
// the time its client gave it, and tells the app how much of it is left.

// withGRPCDeadline bounds a gRPC call's request context by its
// grpc-timeout. A value that does not parse is left for the app to refuse.
func withGRPCDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get(grpcwire.TimeoutHeader)
		if v == "" || !grpcwire.IsGRPC(r) {
			next.ServeHTTP(w, r)
			return
		}
		d, ok := grpcwire.ParseTimeout(v)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// forwardGRPCTimeout rewrites the grpc-timeout of a call towards the app to
// the time left: the sidecar's own work (Redis lookups) has used some of it.
func forwardGRPCTimeout(pr *httputil.ProxyRequest) {
	if pr.Out.Header.Get(grpcwire.TimeoutHeader) == "" {
		return
	}
	if _, ok := grpcwire.ParseTimeout(pr.Out.Header.Get(grpcwire.TimeoutHeader)); !ok {
		return
	}
	if dl, ok := pr.In.Context().Deadline(); ok && grpcwire.IsGRPC(pr.In) {
		pr.Out.Header.Set(grpcwire.TimeoutHeader, grpcwire.FormatTimeout(time.Until(dl)))
	}
}

// endExpiredGRPC ends a gRPC call whose deadline passed after the app's
// response began with grpc-status DEADLINE_EXCEEDED in the trailers. The
// reverse proxy can only abort such a response (http.ErrAbortHandler: on
// HTTP/2 a RST_STREAM), which a client reads as INTERNAL or CANCELLED; the
// call ran out of time, and says so. Before the response began, the
// upstream error handler answers instead (problem.Write does the same).
func endExpiredGRPC(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Deadline(); !ok || !grpcwire.IsGRPC(r) {
			next.ServeHTTP(w, r)
			return
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v != http.ErrAbortHandler || !errors.Is(r.Context().Err(), context.DeadlineExceeded) { //nolint:errorlint // ReverseProxy panics with the sentinel itself
				panic(v)
			}
			h := w.Header()
			h.Set(http.TrailerPrefix+grpcwire.StatusHeader, strconv.FormatUint(uint64(grpcwire.DeadlineExceeded), 10))
			h.Set(http.TrailerPrefix+grpcwire.MessageHeader, grpcwire.EncodeMessage("Deadline exceeded: the call's grpc-timeout passed before the app finished"))
		}()
		next.ServeHTTP(w, r)
	})
}
