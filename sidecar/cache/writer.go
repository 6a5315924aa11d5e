package cache

import (
	"bytes"
	"maps"
	"net/http"
	"strconv"
	"strings"
)

// capture buffers an upstream response so it can be stored. The response
// headers are judged as soon as they arrive: one that will not be stored
// (private, Set-Cookie, an event stream, too large by Content-Length…)
// switches it to pass-through at once, as does a body outgrowing limit
// while it is read. On pass-through, onPass runs first — it releases the
// requests waiting for this fetch and marks the headers — then what was
// buffered is written to w and the rest streams, so no more than limit
// bytes are ever held and no one waits on this client. With a nil w
// (background refresh) pass-through discards.
type capture struct {
	w      http.ResponseWriter
	header http.Header
	status int
	buf    bytes.Buffer
	limit  int64
	passed bool
	// judge says, from the final status and headers, why the response
	// must not be stored ("" to keep buffering).
	judge func(status int, h http.Header) detail
	// onPass sets the cache's own headers when the response starts streaming.
	onPass func(h http.Header, reason detail)
}

func newCapture(w http.ResponseWriter, limit int64, judge func(int, http.Header) detail, onPass func(http.Header, detail)) *capture {
	return &capture{w: w, header: http.Header{}, limit: limit, judge: judge, onPass: onPass}
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(code int) {
	if c.status != 0 || code < 200 {
		// 1xx interim responses are dropped: the client gets the final one.
		return
	}
	c.status = code
	if reason := c.judge(code, c.header); reason != "" {
		c.pass(reason)
		return
	}
	if n, err := strconv.ParseInt(c.header.Get("Content-Length"), 10, 64); err == nil && n > c.limit {
		c.pass(detailTooLarge)
	} else if strings.HasPrefix(c.header.Get("Content-Type"), "text/event-stream") {
		c.pass(detailStream)
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.WriteHeader(http.StatusOK)
	}
	if !c.passed && int64(c.buf.Len()+len(p)) > c.limit {
		c.pass(detailTooLarge)
	}
	if c.passed {
		if c.w == nil {
			return len(p), nil
		}
		return c.w.Write(p)
	}
	return c.buf.Write(p)
}

// Flush is a no-op while buffering: httputil.ReverseProxy flushes every write
// of a response without Content-Length, which must not defeat caching.
func (c *capture) Flush() {
	if c.passed && c.w != nil {
		_ = http.NewResponseController(c.w).Flush()
	}
}

func (c *capture) pass(reason detail) {
	c.passed = true
	if c.onPass != nil {
		c.onPass(c.header, reason)
	}
	if c.w == nil {
		c.buf = bytes.Buffer{}
		return
	}
	dst := c.w.Header()
	maps.Copy(dst, c.header)
	dst.Del(ownField)
	c.w.WriteHeader(c.status)
	if c.buf.Len() > 0 {
		_, _ = c.w.Write(c.buf.Bytes())
	}
	c.buf = bytes.Buffer{}
}

// Unwrap lets http.ResponseController reach the client's writer once the
// response streams (an event stream's deadlines, say).
func (c *capture) Unwrap() http.ResponseWriter { return c.w }

// hookWriter calls onHeader once, just before the final status is written,
// so the cache can set its headers or evict before the client sees anything.
type hookWriter struct {
	http.ResponseWriter
	onHeader func(h http.Header, status int)
	wrote    bool
	status   int // the final status, once written
}

func (h *hookWriter) WriteHeader(code int) {
	if !h.wrote && code >= 200 {
		h.wrote = true
		h.status = code
		h.onHeader(h.Header(), code)
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *hookWriter) Write(p []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(p)
}

func (h *hookWriter) Flush() {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(h.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (h *hookWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }
