package proxy

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Streamed responses (Server-Sent Events, and any body of unknown length)
// must reach the client as the app flushes them, not when the app finishes:
// the app holds its second event until the client has received the first
// through the sidecar, so a sidecar that buffered would leave the client
// waiting until the deadline.
func TestStreamedResponsesAreFlushed(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
	}{
		{name: "server-sent events", contentType: "text/event-stream"},
		{name: "chunked body of unknown length", contentType: "application/x-ndjson"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				_, _ = io.WriteString(w, "first\n")
				_ = http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "second\n")
			}))
			defer app.Close()
			defer close(release)
			s := newSidecar(t, app.URL, cfgDoc("stream", "")).start(t)

			resp, err := http.Get(s.data + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			select {
			case got := <-lines:
				if got != "first" {
					t.Fatalf("first line = %q, want %q", got, "first")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first event did not arrive while the app was still streaming: the sidecar buffers streamed responses")
			}
			release <- struct{}{}
			var rest []string
			for l := range lines {
				rest = append(rest, l)
			}
			if strings.Join(rest, ",") != "second" {
				t.Errorf("rest of the stream = %q, want [second]", rest)
			}
		})
	}
}
