// Package problem is the sidecar's one error writer. Every error response
// the sidecar itself produces goes through Write: an HTTP client gets RFC
// 9457 problem details, a gRPC call the same error as a gRPC status
// (grpcwire), so no feature needs to know which protocol it is answering.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/grpcwire"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Details is an RFC 9457 problem document.
type Details struct {
	// Type is a URI identifying the problem type.
	Type string `json:"type,omitempty"`
	// Title is a short, human-readable summary of the problem type.
	Title string `json:"title"`
	// Status repeats the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance is the request path the problem occurred on.
	Instance string `json:"instance,omitempty"`
}

// typeBase prefixes problem types; the fragment names the problem.
const typeBase = "https://gatehouse.dev/problems/"

// Error is an error that carries the HTTP status it should be answered with.
type Error struct {
	Status int
	// Kind is a short slug for the type URI, e.g. "session-required".
	Kind   string
	Title  string
	Detail string
	// Header holds extra response headers (WWW-Authenticate, Retry-After).
	Header http.Header
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Title + ": " + e.Detail
	}
	return e.Title
}

// Write answers r with the problem e: problem+json with e.Status, or, for
// a gRPC call, a trailers-only gRPC response whose grpc-status is the
// matching code (grpcwire.CodeFor) and whose grpc-message is e's title and
// detail. e's headers travel either way; for gRPC a Retry-After is also
// given as grpc-retry-pushback-ms, which gRPC's own retry policy honours.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	maps.Copy(h, e.Header)
	if grpcwire.IsGRPC(r) {
		writeGRPC(w, r, e)
		return
	}
	body, _ := json.Marshal(Details{
		Type:     typeBase + e.Kind,
		Title:    e.Title,
		Status:   e.Status,
		Detail:   e.Detail,
		Instance: r.URL.Path,
	})
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// writeGRPC answers a gRPC call. A call whose own deadline (grpc-timeout)
// has passed is told so whatever failed on the way, since that is why it
// failed: the feature's Redis call or the app was cut off by it.
func writeGRPC(w http.ResponseWriter, r *http.Request, e *Error) {
	code := grpcwire.CodeFor(e.Status)
	if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
		code = grpcwire.DeadlineExceeded
	}
	h := w.Header()
	if ra := h.Get("Retry-After"); ra != "" {
		if s, err := strconv.ParseUint(ra, 10, 32); err == nil {
			h.Set(grpcwire.RetryPushbackHeader, strconv.FormatInt((time.Duration(s)*time.Second).Milliseconds(), 10))
		}
	}
	grpcwire.WriteStatus(w, r, code, e.Error())
}
