package problem

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func rateLimited() *Error {
	return &Error{Status: http.StatusTooManyRequests, Kind: "rate-limited", Title: "Too many requests",
		Detail: "A rate limit is exhausted.", Header: http.Header{"Retry-After": {"3"}}}
}

func TestWriteHTTPIsProblemJSON(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/orders", nil)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	Write(w, r, rateLimited())
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != ContentType || w.Header().Get("Retry-After") != "3" {
		t.Fatalf("got %d %v", w.Code, w.Header())
	}
	var d Details
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	want := Details{Type: typeBase + "rate-limited", Title: "Too many requests", Status: 429, Detail: "A rate limit is exhausted.", Instance: "/orders"}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}
	if w.Header().Get("Grpc-Status") != "" {
		t.Error("an HTTP client got a grpc-status")
	}
}

// A gRPC client cannot read problem+json: a 429 with a body is, to it, a
// protocol error (codes.Unavailable at best, per
// http-grpc-status-mapping.md). It gets the error as a gRPC status, with
// the feature's headers as metadata.
func TestWriteGRPCIsTrailersOnlyStatus(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/shop.v1.Orders/Create", nil)
	r.Header.Set("Content-Type", "application/grpc")
	w := httptest.NewRecorder()
	Write(w, r, rateLimited())
	want := http.Header{
		"Content-Type":           {"application/grpc"},
		"Grpc-Status":            {"8"},
		"Grpc-Message":           {"Too many requests: A rate limit is exhausted."},
		"Retry-After":            {"3"},
		"Grpc-Retry-Pushback-Ms": {"3000"},
	}
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("got %d with %d body bytes, want 200 and none", w.Code, w.Body.Len())
	}
	if diff := cmp.Diff(want, w.Header()); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestWriteGRPCPastDeadlineIsDeadlineExceeded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/shop.v1.Orders/Create", nil)
	r.Header.Set("Content-Type", "application/grpc+proto")
	w := httptest.NewRecorder()
	// The session store lookup ran out of the call's time: 503 for HTTP,
	// but the cause the gRPC client must see is its own deadline.
	Write(w, r, &Error{Status: http.StatusServiceUnavailable, Kind: "session-store-unavailable", Title: "Session store unavailable"})
	if got := w.Header().Get("Grpc-Status"); got != "4" {
		t.Errorf("grpc-status %q, want 4 (DEADLINE_EXCEEDED)", got)
	}
}
