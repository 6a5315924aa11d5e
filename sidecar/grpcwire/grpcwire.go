// Package grpcwire is the part of gRPC's HTTP/2 mapping (PROTOCOL-HTTP2.md
// in the grpc/grpc repository) that the sidecar speaks itself: recognising
// a gRPC call, answering one with a status and no message (a
// "trailers-only" response), and reading and writing its deadline
// (grpc-timeout).
//
// Everything else about gRPC — framing, flow control, trailers from the
// app — is HTTP/2 that the reverse proxy forwards untouched. The package
// imports nothing from google.golang.org/grpc, so the sidecar binary stays
// small; its tests hold every constant and format against that module.
package grpcwire

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Code is a gRPC status code (the grpc-status trailer).
type Code uint32

// The status codes the sidecar answers with (grpc/grpc doc/statuscodes.md).
const (
	OK                Code = 0
	Canceled          Code = 1
	Unknown           Code = 2
	InvalidArgument   Code = 3
	DeadlineExceeded  Code = 4
	NotFound          Code = 5
	PermissionDenied  Code = 7
	ResourceExhausted Code = 8
	Unimplemented     Code = 12
	Internal          Code = 13
	Unavailable       Code = 14
	Unauthenticated   Code = 16
)

// Header names of the gRPC protocol, in canonical form.
const (
	StatusHeader  = "Grpc-Status"
	MessageHeader = "Grpc-Message"
	TimeoutHeader = "Grpc-Timeout"
	// RetryPushbackHeader tells a client with a retry policy how long to
	// wait before its next attempt (gRFC A6, "Pushback").
	RetryPushbackHeader = "Grpc-Retry-Pushback-Ms"
)

// ContentType is the media type of a gRPC call with the default (protobuf)
// encoding.
const ContentType = "application/grpc"

// IsGRPC reports whether r is a gRPC call: its Content-Type is
// application/grpc, a variant of it (application/grpc+proto,
// application/grpc+json) or gRPC-Web (application/grpc-web,
// application/grpc-web-text, with their variants), in any letter case.
func IsGRPC(r *http.Request) bool {
	ct := r.Header["Content-Type"]
	return len(ct) > 0 && isGRPCType(ct[0])
}

func isGRPCType(ct string) bool {
	if len(ct) < len(ContentType) || !strings.EqualFold(ct[:len(ContentType)], ContentType) {
		return false
	}
	rest := ct[len(ContentType):]
	if len(rest) >= 4 && strings.EqualFold(rest[:4], "-web") {
		rest = rest[4:]
		if len(rest) >= 5 && strings.EqualFold(rest[:5], "-text") {
			rest = rest[5:]
		}
	}
	// "application/grpcfoo" is another media type altogether.
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// CodeFor is the status a gRPC client gets where an HTTP client gets the
// HTTP status s from the sidecar. It follows grpc/grpc
// doc/http-grpc-status-mapping.md, except where the sidecar knows more than
// a status code tells: it answers 429 only when a rate limit is exhausted
// (RESOURCE_EXHAUSTED, not UNAVAILABLE), 504 only when the app or the
// call's deadline ran out (DEADLINE_EXCEEDED), and 400 only for a request
// it refuses as malformed (INVALID_ARGUMENT, not INTERNAL, which would
// blame the server).
func CodeFor(s int) Code {
	switch s {
	case http.StatusOK:
		return OK
	case http.StatusBadRequest:
		return InvalidArgument
	case http.StatusUnauthorized:
		return Unauthenticated
	case http.StatusForbidden:
		return PermissionDenied
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return Unimplemented
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return DeadlineExceeded
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return ResourceExhausted
	case 499: // the client went away (nginx's "client closed request")
		return Canceled
	case http.StatusInternalServerError:
		return Internal
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return Unavailable
	}
	return Unknown
}

// WriteStatus answers the gRPC call r with code and msg and no message: a
// trailers-only response, HTTP 200 with grpc-status and grpc-message in
// the one header block (on HTTP/2, a HEADERS frame that ends the stream).
// Headers already set on w (RateLimit fields, Retry-After) travel with
// them, so a client reads them as metadata. Nothing may have been written
// to w yet.
func WriteStatus(w http.ResponseWriter, r *http.Request, code Code, msg string) {
	h := w.Header()
	h.Set("Content-Type", responseType(r))
	h.Set(StatusHeader, strconv.FormatUint(uint64(code), 10))
	if msg != "" {
		h.Set(MessageHeader, EncodeMessage(msg))
	}
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
}

// responseType echoes the call's own gRPC media type (a gRPC-Web client
// needs application/grpc-web back), without parameters.
func responseType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	if !isGRPCType(ct) {
		return ContentType
	}
	return ct
}

// EncodeMessage percent-encodes a status message for grpc-message: every
// byte outside printable ASCII (0x20–0x7E), and "%" itself, becomes %XX.
// UTF-8 survives, byte by byte.
func EncodeMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(msg) * 3)
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// maxTimeoutValue is the largest TimeoutValue: "at most 8 digits".
const maxTimeoutValue = 99_999_999

var timeoutUnits = [...]struct {
	unit byte
	d    time.Duration
}{
	{'n', time.Nanosecond},
	{'u', time.Microsecond},
	{'m', time.Millisecond},
	{'S', time.Second},
	{'M', time.Minute},
	{'H', time.Hour},
}

// ParseTimeout reads a grpc-timeout value: 1 to 8 ASCII digits and one of
// the units H, M, S, m, u, n. ok is false for anything else (a sign, a
// space, a ninth digit, an unknown unit), which the sidecar leaves for the
// app to refuse.
func ParseTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v)-1; i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	unit := v[len(v)-1]
	for _, u := range timeoutUnits {
		if u.unit == unit {
			// 99,999,999 hours is the only product that overflows.
			if u.d == time.Hour && n > int64(maxDuration/time.Hour) {
				return maxDuration, true
			}
			return time.Duration(n) * u.d, true
		}
	}
	return 0, false
}

const maxDuration = time.Duration(1<<63 - 1)

// FormatTimeout writes d as a grpc-timeout value in the finest unit whose
// 8 digits hold it, rounded up so the app never sees less time than is
// left. A duration that has run out is "0n".
func FormatTimeout(d time.Duration) string {
	if d <= 0 {
		return "0n"
	}
	for _, u := range timeoutUnits {
		n := d / u.d
		if d%u.d != 0 {
			n++
		}
		if n <= maxTimeoutValue {
			return strconv.FormatInt(int64(n), 10) + string(u.unit)
		}
	}
	return strconv.Itoa(maxTimeoutValue) + "H"
}
