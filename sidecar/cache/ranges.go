package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// maxRanges bounds the ranges of one request; more, or more than two that
// overlap, are signs of a broken client or a denial-of-service attempt
// (RFC 9110 14.2), and the Range header is ignored.
const maxRanges = 16

// byteRange is [start, end] inclusive, within a representation.
type byteRange struct{ start, end int64 }

func (b byteRange) contentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", b.start, b.end, size)
}

// writeRange answers a GET with Range from a stored full 200 response (RFC
// 9110 14): 206 with one range, 206 multipart/byteranges with several, 416
// when none is satisfiable. It reports false when the Range header is to be
// ignored (If-Range false, another unit, invalid or abusive), and the
// caller sends the whole representation.
func writeRange(w http.ResponseWriter, r *http.Request, e *entry) bool {
	if ir := r.Header.Get("If-Range"); ir != "" && !ifRange(ir, e.Header) {
		return false
	}
	size := int64(len(e.Body))
	ranges, ok := parseRanges(r.Header.Get("Range"), size)
	if !ok {
		return false
	}
	h := w.Header()
	switch len(ranges) {
	case 0:
		h.Del("Content-Type")
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return true
	case 1:
		b := ranges[0]
		h.Set("Content-Range", b.contentRange(size))
		h.Set("Content-Length", strconv.FormatInt(b.end-b.start+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(e.Body[b.start : b.end+1])
		return true
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var boundary [12]byte
	_, _ = rand.Read(boundary[:])
	// An unquoted token: some clients mishandle a quoted boundary (RFC 9110 14.6).
	_ = mw.SetBoundary("gatehouse-" + hex.EncodeToString(boundary[:]))
	ctype := e.Header.Get("Content-Type")
	for _, b := range ranges {
		ph := textproto.MIMEHeader{}
		if ctype != "" {
			ph.Set("Content-Type", ctype)
		}
		ph.Set("Content-Range", b.contentRange(size))
		part, _ := mw.CreatePart(ph)
		_, _ = part.Write(e.Body[b.start : b.end+1])
	}
	_ = mw.Close()
	h.Set("Content-Type", "multipart/byteranges; boundary="+mw.Boundary())
	h.Del("Content-Range")
	h.Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write(body.Bytes())
	return true
}

// parseRanges parses a bytes Range header (RFC 9110 14.1.1) against a
// representation of size bytes. It returns the satisfiable ranges (none:
// 416), or ok false when the header is to be ignored.
func parseRanges(spec string, size int64) ([]byteRange, bool) {
	unit, set, found := strings.Cut(spec, "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || size == 0 {
		return nil, false
	}
	parts := strings.Split(set, ",")
	if len(parts) > maxRanges {
		return nil, false
	}
	var out []byteRange
	for _, p := range parts {
		p = strings.TrimSpace(p)
		first, last, ok := strings.Cut(p, "-")
		if !ok {
			return nil, false
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if first == "" {
			// A suffix range: the last n bytes.
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 || !digits(last) {
				return nil, false
			}
			if n == 0 {
				continue
			}
			out = append(out, byteRange{max(size-n, 0), size - 1})
			continue
		}
		a, err := strconv.ParseInt(first, 10, 64)
		if err != nil || !digits(first) {
			return nil, false
		}
		b := size - 1
		if last != "" {
			if b, err = strconv.ParseInt(last, 10, 64); err != nil || !digits(last) || b < a {
				return nil, false
			}
			b = min(b, size-1)
		}
		if a >= size {
			continue
		}
		out = append(out, byteRange{a, b})
	}
	overlaps := 0
	for i := range out {
		for j := range i {
			if out[i].start <= out[j].end && out[j].start <= out[i].end {
				overlaps++
			}
		}
	}
	if overlaps > 1 {
		return nil, false
	}
	return out, true
}

func digits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }

// ifRange evaluates an If-Range field against a stored response (RFC 9110
// 13.1.5): an entity tag must match the stored one by strong comparison; a
// date must equal Last-Modified exactly and be a strong validator, that is
// at least a second before the response's Date (8.8.2.2).
func ifRange(v string, h http.Header) bool {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "W/") {
		et := h.Get("ETag")
		return !strings.HasPrefix(v, "W/") && !strings.HasPrefix(et, "W/") && v == et
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil || !lm.Equal(t) {
		return false
	}
	date, err := http.ParseTime(h.Get("Date"))
	return err == nil && date.Sub(lm) >= time.Second
}
