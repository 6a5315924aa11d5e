// Package problem writes RFC 9457 problem details. Every error response the
// sidecar itself produces goes through Write, so clients see one format.
package problem

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
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

// Write answers r with the problem e.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	maps.Copy(h, e.Header)
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
