package grpcwire

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
)

// The constants are the wire values of grpc/grpc doc/statuscodes.md, as the
// grpc module numbers them.
func TestCodesAreGRPCs(t *testing.T) {
	for _, tt := range []struct {
		ours   Code
		theirs codes.Code
	}{
		{OK, codes.OK}, {Canceled, codes.Canceled}, {Unknown, codes.Unknown},
		{InvalidArgument, codes.InvalidArgument}, {DeadlineExceeded, codes.DeadlineExceeded},
		{NotFound, codes.NotFound}, {PermissionDenied, codes.PermissionDenied},
		{ResourceExhausted, codes.ResourceExhausted}, {Unimplemented, codes.Unimplemented},
		{Internal, codes.Internal}, {Unavailable, codes.Unavailable}, {Unauthenticated, codes.Unauthenticated},
	} {
		if uint32(tt.ours) != uint32(tt.theirs) {
			t.Errorf("%v: ours %d, grpc's %d", tt.theirs, tt.ours, tt.theirs)
		}
	}
}

func TestCodeFor(t *testing.T) {
	// The mapping for the sidecar's own answers, then the
	// http-grpc-status-mapping.md rows the sidecar does not override.
	for status, want := range map[int]Code{
		401: Unauthenticated, 429: ResourceExhausted, 503: Unavailable, 504: DeadlineExceeded,
		502: Unavailable, 403: PermissionDenied, 404: Unimplemented, 400: InvalidArgument,
		408: DeadlineExceeded, 413: ResourceExhausted, 499: Canceled, 500: Internal, 418: Unknown, 200: OK,
	} {
		if got := CodeFor(status); got != want {
			t.Errorf("CodeFor(%d) = %d, want %d", status, got, want)
		}
	}
}

func TestIsGRPC(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/grpc":                 true,
		"application/grpc+proto":           true,
		"application/grpc+json":            true,
		"application/grpc;charset=utf-8":   true,
		"Application/GRPC":                 true,
		"application/grpc-web":             true,
		"application/grpc-web+proto":       true,
		"application/grpc-web-text":        true,
		"application/grpc-web-text+proto":  true,
		"application/grpcfoo":              false,
		"application/grpc-webfoo":          false,
		"application/json":                 false,
		"text/plain; x=application/grpc":   false,
		"":                                 false,
		"application/gr":                   false,
		"application/grpc-gateway+json":    false,
		"application/problem+json":         false,
		"multipart/form-data; boundary=gr": false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/pkg.Svc/M", nil)
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if got := IsGRPC(r); got != want {
			t.Errorf("IsGRPC(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestWriteStatusIsTrailersOnly(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/pkg.Svc/M", nil)
	r.Header.Set("Content-Type", "application/grpc+proto")
	w := httptest.NewRecorder()
	w.Header().Set("Content-Length", "12") // left over from a feature: must go
	w.Header().Set("Retry-After", "3")
	WriteStatus(w, r, ResourceExhausted, "Too many requests: 100% used")
	if w.Code != http.StatusOK {
		t.Errorf("status %d, want 200 (gRPC carries its status in grpc-status)", w.Code)
	}
	if w.Body.Len() != 0 {
		t.Errorf("body %q: a trailers-only response has no message", w.Body)
	}
	want := http.Header{
		"Content-Type": {"application/grpc+proto"},
		"Grpc-Status":  {"8"},
		"Grpc-Message": {"Too many requests: 100%25 used"},
		"Retry-After":  {"3"},
	}
	if diff := cmp.Diff(want, w.Header()); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// decode is the grpc-message decoding of PROTOCOL-HTTP2.md, written from
// the spec for the test.
func decode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestEncodeMessage(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "",
		"Session required":          "Session required",
		"50% off":                   "50%25 off",
		"line\nbreak\r\x00":         "line%0Abreak%0D%00",
		"naïve ✓":                   "na%C3%AFve %E2%9C%93",
		"\x7f\xff":                  "%7F%FF",
		"~ and space are printable": "~ and space are printable",
	} {
		got := EncodeMessage(in)
		if got != want {
			t.Errorf("EncodeMessage(%q) = %q, want %q", in, got, want)
		}
		if d := decode(got); d != in {
			t.Errorf("decode(EncodeMessage(%q)) = %q", in, d)
		}
	}
}

func FuzzEncodeMessage(f *testing.F) {
	f.Add("Session required: the token is unknown")
	f.Add("\x00%\xff")
	f.Fuzz(func(t *testing.T, in string) {
		got := EncodeMessage(in)
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c > 0x7e {
				t.Fatalf("EncodeMessage(%q) = %q: byte %#x is not printable ASCII", in, got, c)
			}
		}
		if d := decode(got); d != in {
			t.Fatalf("decode(EncodeMessage(%q)) = %q", in, d)
		}
	})
}

func TestParseTimeout(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"100m", 100 * time.Millisecond, true},
		{"250u", 250 * time.Microsecond, true},
		{"7n", 7, true},
		{"0n", 0, true},
		{"99999999m", 99999999 * time.Millisecond, true},
		{"00000010S", 10 * time.Second, true},
		{"99999999H", maxDuration, true}, // overflows int64 nanoseconds: clamped
		// Malformed: a ninth digit, no digits, a sign, a space, an
		// unknown or lower-case unit, a fraction, no unit.
		{"123456789m", 0, false},
		{"m", 0, false},
		{"", 0, false},
		{"-1S", 0, false},
		{"+1S", 0, false},
		{" 1S", 0, false},
		{"1 S", 0, false},
		{"1s", 0, false},
		{"1h", 0, false},
		{"1.5S", 0, false},
		{"10", 0, false},
		{"1D", 0, false},
	} {
		got, ok := ParseTimeout(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestFormatTimeout(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                     "0n",
		0:                                "0n",
		1:                                "1n",
		99_999_999:                       "99999999n",
		100_000_000:                      "100000u",
		100*time.Millisecond + 1:         "100001u",
		time.Hour:                        "3600000m",
		30 * time.Second:                 "30000000u",
		27 * time.Hour:                   "97200000m",
		28 * time.Hour:                   "100800S",
		maxDuration:                      "2562048H",
		99_999_999*time.Millisecond + 1:  "100000S",
		99_999_999*time.Microsecond + 10: "100000m",
	} {
		got := FormatTimeout(d)
		if got != want {
			t.Errorf("FormatTimeout(%v) = %q, want %q", d, got, want)
		}
	}
}

// Whatever the sidecar forwards as the time left, the app reads back at
// least that much and at most one unit more: it never sees the call expire
// before the sidecar does.
func FuzzTimeoutRoundTrip(f *testing.F) {
	for _, d := range []int64{0, 1, 999, int64(time.Second), int64(time.Hour), 1<<63 - 1} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		s := FormatTimeout(d)
		got, ok := ParseTimeout(s)
		if !ok {
			t.Fatalf("FormatTimeout(%v) = %q does not parse", d, s)
		}
		if d <= 0 {
			if got != 0 {
				t.Fatalf("%v → %q → %v, want 0", d, s, got)
			}
			return
		}
		if got < d && got != maxDuration {
			t.Fatalf("%v → %q → %v: less time than was left", d, s, got)
		}
	})
}
