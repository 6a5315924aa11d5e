package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// RFC 9113 §6.8: on SIGTERM an HTTP/2 client is sent GOAWAY, naming the
// last stream the server will process, and the streams already open run to
// completion before the connection closes; a stream opened after the
// GOAWAY is not processed. Read off the wire with a raw framer, so that no
// client library's retry hides what the sidecar sent.
func TestDrainSendsGOAWAYAndFinishesOpenStreams(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan string, 4)
	app := newApp(t)
	app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- r.URL.Path
		<-release
		_, _ = io.WriteString(w, "finished")
	})
	// start's cleanup checks that Run drained cleanly.
	s := newSidecar(t, app.URL, cfgDoc("goaway", "")).start(t)
	eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.data, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	open := func(id uint32, path string) {
		t.Helper()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop.test"}, {":path", path}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	open(1, "/in-flight")
	if got := <-entered; got != "/in-flight" {
		t.Fatalf("app saw %q", got)
	}

	s.cancel() // SIGTERM
	var goaway *http2.GoAwayFrame
	for goaway == nil {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read before GOAWAY: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goaway = f
		}
	}
	if goaway.ErrCode != http2.ErrCodeNo || goaway.LastStreamID < 1 {
		t.Fatalf("GOAWAY %v last stream %d: want NO_ERROR covering stream 1", goaway.ErrCode, goaway.LastStreamID)
	}
	open(goaway.LastStreamID+2, "/after-goaway")

	close(release)
	var body bytes.Buffer
	ended := false
	for {
		f, err := fr.ReadFrame()
		if errors.Is(err, io.EOF) || (err != nil && ended) {
			break
		}
		if err != nil {
			t.Fatalf("stream 1 did not finish after GOAWAY: %v", err)
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if f.StreamID == 1 {
				body.Write(f.Data())
				ended = ended || f.StreamEnded()
			}
		case *http2.HeadersFrame:
			if f.StreamID != 1 {
				t.Errorf("stream %d opened after GOAWAY was answered", f.StreamID)
			}
			ended = ended || f.StreamEnded()
		}
	}
	if !ended || body.String() != "finished" {
		t.Errorf("stream 1 ended=%v with body %q, want the app's whole answer", ended, body.String())
	}
	select {
	case got := <-entered:
		t.Errorf("the app received %q, opened after GOAWAY", got)
	default:
	}
}
