package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Progress deadlines towards the client (proxy.writeTimeout and
// proxy.bodyReadTimeout). http.Server's WriteTimeout and ReadTimeout bound a
// whole response or request, which would cut every long stream (SSE,
// downloads, WebSocket); these bound each operation instead, through
// http.ResponseController, so a client that stops reading or sending loses
// its connection while one that keeps up is never cut, however long it runs.
// Idle time between writes does not count: the deadline is set just before
// each write. On HTTP/2 a stream's deadline is a timer that resets the
// stream when it fires, written or not, so there it is also cleared after
// each write (disarm); the connection itself is bounded by
// http.HTTP2Config.WriteByteTimeout (serve.go).
const (
	// writeChunk is the most one write deadline covers. Larger writes (a
	// cache hit of a megabyte) are split, so a client must take 32 KiB per
	// writeTimeout rather than the whole body. It is httputil.ReverseProxy's
	// copy buffer, so proxied bodies are never split further.
	writeChunk = 32 << 10
	// readProgress is the least a client must send per bodyReadTimeout: the
	// read deadline moves on only once this much (or the rest of the body)
	// arrived, so trickling a byte at a time does not hold a request open.
	readProgress = 1 << 10
)

// clientSendBuffer caps the kernel send buffer of each client connection.
// A write blocked on a full buffer is woken only once about a third of the
// buffer has drained, so a write deadline measures "drained a third of the
// buffer in time", not "made any progress": with Linux' autotuned buffers
// (up to 4 MiB) a client steadily reading 50 KiB/s would be cut at the
// default 30s. At 256 KiB (the kernel doubles it) a client is cut only when
// it drains less than about 170 KiB per writeTimeout, and one connection
// still carries 10 MiB/s at 50ms of round trip.
const clientSendBuffer = 256 << 10

func capSendBuffer(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(clientSendBuffer)
	}
}

// timeouts are the deadlines of one handler graph.
type timeouts struct {
	write, bodyRead time.Duration
}

// armWrite gives the next write to the client d to complete.
func armWrite(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		// ErrNotSupported (a writer without deadlines, in tests) leaves the
		// write unbounded, as before.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
	}
}

// write writes b to w in chunks of at most writeChunk, each with its own
// deadline.
func (r *recorder) write(b []byte) (int, error) {
	if r.writeTimeout <= 0 {
		return r.ResponseWriter.Write(b)
	}
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		armWrite(r.ResponseWriter, r.writeTimeout)
		m, err := r.ResponseWriter.Write(chunk)
		r.disarm()
		n += m
		if err != nil {
			r.writeFailed(err)
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}

// disarm clears the write deadline of an HTTP/2 stream after a write: left
// armed, its timer would reset a stream that merely went quiet (a gRPC
// watch between events). On HTTP/1.1 a deadline only bounds writes in
// progress, so one left behind costs nothing and is not cleared.
func (r *recorder) disarm() {
	if r.h2 && r.writeTimeout > 0 {
		_ = http.NewResponseController(r.ResponseWriter).SetWriteDeadline(time.Time{})
	}
}

func (r *recorder) writeFailed(err error) {
	if isTimeout(err) && !r.stalled {
		r.stalled = true
		r.m.clientStalls[stallWrite].Inc()
	}
}

// Hijack hands the connection to a protocol switch (WebSocket) with the
// write deadline kept per write: the server clears every deadline on
// hijack, and a client that stops reading a WebSocket would otherwise hold
// the copy goroutine forever.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil || r.writeTimeout <= 0 {
		return c, brw, err
	}
	return &deadlineConn{Conn: c, d: r.writeTimeout, m: r.m}, brw, nil
}

// deadlineConn bounds each write of a hijacked connection. Reads stay
// unbounded: an idle WebSocket is normal.
type deadlineConn struct {
	net.Conn
	d       time.Duration
	m       *Metrics
	stalled bool
}

func (c *deadlineConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		_ = c.SetWriteDeadline(time.Now().Add(c.d))
		m, err := c.Conn.Write(chunk)
		n += m
		if err != nil {
			if isTimeout(err) && !c.stalled {
				c.stalled = true
				c.m.clientStalls[stallWrite].Inc()
			}
			return n, err
		}
		b = b[m:]
	}
	return n, nil
}

// progressBody bounds reading a request body: the client must send
// readProgress bytes (or the rest of the body) per timeout.
type progressBody struct {
	io.ReadCloser
	w       http.ResponseWriter
	d       time.Duration
	m       *Metrics
	h2      bool
	armed   bool
	pending int
	stalled atomic.Bool
	// deadline is the read deadline in force (Unix ns; 0: none), so the
	// error handler can tell a stall even when it runs before Read returns.
	deadline atomic.Int64
	// done is set when the handler returns: the transport may still be
	// reading, and the connection's deadlines then belong to the next
	// request on it; on HTTP/2 the stream's writer is released, and using
	// it would crash the process. mu orders finish against the deadline
	// calls of a Read on the transport's goroutine.
	mu   sync.Mutex
	done atomic.Bool
}

type bodyKey struct{}

// withBodyDeadline wraps r's body, if it has one; the caller calls finish
// on the returned body, if any, when its handler returns.
func withBodyDeadline(w http.ResponseWriter, r *http.Request, d time.Duration, m *Metrics) (*http.Request, *progressBody) {
	if d <= 0 || r.Body == nil || r.Body == http.NoBody {
		return r, nil
	}
	b := &progressBody{ReadCloser: r.Body, w: w, d: d, m: m, h2: r.ProtoMajor == 2}
	// The context lets the upstream error handler tell a stalled client
	// (408) from a failing app.
	r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
	r.Body = b
	return r, b
}

func (b *progressBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done.Store(true)
}

// control runs f on the request's ResponseController unless the handler
// has returned.
func (b *progressBody) control(f func(rc *http.ResponseController)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done.Load() {
		f(http.NewResponseController(b.w))
	}
}

func (b *progressBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return b.ReadCloser.Read(p)
	}
	if !b.armed || b.pending >= readProgress {
		now := time.Now()
		b.deadline.Store(now.Add(b.d).UnixNano())
		first := !b.armed
		b.control(func(rc *http.ResponseController) {
			_ = rc.SetReadDeadline(now.Add(b.d))
			if first && !b.h2 {
				// Reading the body may first write "100 Continue". (HTTP/2
				// sends it as a frame of the connection, bounded by
				// WriteByteTimeout; a stream deadline set here would reset
				// the stream once it expired, written to or not.)
				_ = rc.SetWriteDeadline(now.Add(b.d))
			}
		})
		b.armed, b.pending = true, 0
	}
	n, err := b.ReadCloser.Read(p)
	b.pending += n
	if err != nil {
		if isTimeout(err) && !b.stalled.Swap(true) {
			b.m.clientStalls[stallBodyRead].Inc()
		}
		// Once the body ends the server reads ahead on the connection to
		// notice the client leaving; a deadline left behind would cancel
		// a long response to a request that had a body.
		if !b.stalled.Load() {
			b.deadline.Store(0)
		}
		b.control(func(rc *http.ResponseController) { _ = rc.SetReadDeadline(time.Time{}) })
	}
	return n, err
}

// bodyStalled reports whether the client of the request behind ctx stopped
// sending its body.
func bodyStalled(ctx context.Context) bool {
	b, ok := ctx.Value(bodyKey{}).(*progressBody)
	if !ok {
		return false
	}
	d := b.deadline.Load()
	return b.stalled.Load() || (d != 0 && time.Now().UnixNano() >= d)
}
