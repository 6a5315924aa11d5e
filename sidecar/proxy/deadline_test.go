package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The progress deadlines bound operations that stall, never streams that
// move: each test runs with 1s deadlines (streamDoc; not shorter, so that a
// loaded test machine does not look like a stalled client) for several
// times that long, with idle gaps longer than the deadline between writes.

const streamDoc = `"proxy":{"writeTimeout":"1s","bodyReadTimeout":"1s"}`

func TestLongStreamsThatKeepMovingAreNotCut(t *testing.T) {
	t.Run("server-sent events with gaps longer than the write timeout", func(t *testing.T) {
		t.Parallel()
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 4 {
				if i > 0 {
					time.Sleep(1500 * time.Millisecond)
				}
				if _, err := io.WriteString(w, "data: tick\n\n"); err != nil {
					return
				}
				_ = http.NewResponseController(w).Flush()
			}
		}))
		defer app.Close()
		s := startWithConfig(t, app.URL, streamDoc)
		resp, err := http.Get(s.data + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || strings.Count(string(body), "data: tick") != 4 {
			t.Errorf("stream = %q, %v; want 4 events", body, err)
		}
	})

	t.Run("slow download far larger than the kernel buffers", func(t *testing.T) {
		t.Parallel()
		payload := bytes.Repeat([]byte("0123456789abcdef"), 3<<17) // 6 MiB
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(payload)
		}))
		defer app.Close()
		s := startWithConfig(t, app.URL, streamDoc)
		resp, err := http.Get(s.data + "/big")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// A slow, steady reader: at most 64 KiB per 100ms. A blocked write
		// wakes only once a third of the kernel send buffer drained; with
		// Linux' autotuned buffers that takes seconds at this rate and the
		// write timeout would cut the download, which is why the sidecar
		// caps client send buffers (clientSendBuffer).
		var got bytes.Buffer
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", got.Len(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if sha256.Sum256(got.Bytes()) != sha256.Sum256(payload) {
			t.Errorf("received %d bytes, not the %d sent", got.Len(), len(payload))
		}
	})

	t.Run("upload that keeps moving", func(t *testing.T) {
		t.Parallel()
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
		}))
		defer app.Close()
		s := startWithConfig(t, app.URL, streamDoc)
		pr, pw := io.Pipe()
		go func() {
			// 2 KiB every 300ms for 4.5s: slow, but more than 1 KiB per timeout.
			for range 15 {
				if _, err := pw.Write(bytes.Repeat([]byte("u"), 2048)); err != nil {
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
			pw.Close()
		}()
		resp, err := http.Post(s.data+"/upload", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != strconv.Itoa(15*2048) {
			t.Errorf("upload = %d %q, want 200 %d", resp.StatusCode, body, 15*2048)
		}
	})

	t.Run("long response to a request with a body", func(t *testing.T) {
		t.Parallel()
		// After the body ends the server reads ahead on the connection; a
		// read deadline left behind would cancel this response.
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			for range 3 {
				time.Sleep(1500 * time.Millisecond)
				_, _ = io.WriteString(w, "part\n")
				_ = http.NewResponseController(w).Flush()
			}
		}))
		defer app.Close()
		s := startWithConfig(t, app.URL, streamDoc)
		resp, err := http.Post(s.data+"/report", "text/plain", strings.NewReader("query"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "part\npart\npart\n" {
			t.Errorf("response = %q, %v", body, err)
		}
	})
}

// echoApp switches to a raw "echo" protocol (as a WebSocket upgrade does)
// and echoes what it reads; with done set it floods the connection instead
// and reports how that ended.
func echoApp(t *testing.T, done chan<- error) *httptest.Server {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		if done == nil {
			_, _ = io.Copy(c, brw)
			return
		}
		done <- flood(c)
	}))
	t.Cleanup(app.Close)
	return app
}

func upgrade(t *testing.T, s *sidecar) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialData(t, s, "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return c, br
}

// An idle WebSocket (or any upgraded connection) is normal: the deadlines
// apply to writes in progress, and the hijacked connection has no read
// deadline.
func TestIdleUpgradedConnectionIsNotCut(t *testing.T) {
	t.Parallel()
	s := startWithConfig(t, echoApp(t, nil).URL, streamDoc)
	c, br := upgrade(t, s)
	for range 2 {
		time.Sleep(2500 * time.Millisecond) // longer than both timeouts
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
	}
}

// A WebSocket client that stops reading while the app sends is a slow
// reader like any other: the write to it is cut and the app released.
func TestUpgradedSlowReaderIsCut(t *testing.T) {
	done := make(chan error, 1)
	s := startWithConfig(t, echoApp(t, done).URL, deadlineDoc)
	c, _ := upgrade(t, s)
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	waitStalledWrite(t, s, done)
}
