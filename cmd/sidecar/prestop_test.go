package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// podSidecar is a sidecar process started the way the webhook configures
// it: the admin API on a Unix socket, the status endpoints on TCP.
type podSidecar struct {
	bin, data, status, adminListen string
	cmd                            *exec.Cmd
	exited                         chan error
	log                            *bytes.Buffer
}

func startPodSidecar(t *testing.T, upstream string) *podSidecar {
	t.Helper()
	bin := sidecarBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `{"apiVersion":%q,"kind":%q}`, config.APIVersion, config.Kind), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &podSidecar{
		bin:         bin,
		data:        fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)),
		status:      fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)),
		adminListen: contract.UnixPrefix + filepath.Join(dir, contract.AdminSocketName),
		exited:      make(chan error, 1),
		log:         &bytes.Buffer{},
	}
	s.cmd = exec.Command(bin, contract.Flags{
		Config: cfg, Listen: s.data, Upstream: upstream, AdminListen: s.adminListen, StatusListen: s.status, LogLevel: "info",
	}.Args()...)
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		exit := <-s.exited
		if t.Failed() {
			t.Logf("sidecar exit: %v; log:\n%s", exit, s.log)
		}
	})
	waitFor(t, "the sidecar ready", func() bool { code, _ := s.readyz(t); return code == http.StatusOK })
	return s
}

// readyz asks the status port, as the kubelet's readiness probe does.
func (s *podSidecar) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.status + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// preStop runs the hook exactly as the webhook injects it (argv[0] aside:
// the image's path is the built binary's here).
func (s *podSidecar) preStop(t *testing.T, adminListen string) (string, error) {
	t.Helper()
	argv := contract.PreStopExec(adminListen)
	if argv[0] != contract.SidecarBinary {
		t.Fatalf("the hook runs %q, not the image's %s", argv[0], contract.SidecarBinary)
	}
	out, err := exec.Command(s.bin, argv[1:]...).CombinedOutput()
	return string(out), err
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// h1Conn is one HTTP/1.1 client connection, read and written by hand so
// that the test sees exactly which connection a response came on and when
// the server closes it.
type h1Conn struct {
	c net.Conn
	r *bufio.Reader
}

func dialH1(t *testing.T, addr string) *h1Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &h1Conn{c: c, r: bufio.NewReader(c)}
}

func (h *h1Conn) send(t *testing.T, path string) {
	t.Helper()
	if _, err := fmt.Fprintf(h.c, "GET %s HTTP/1.1\r\nHost: shop.test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
}

// receive reads one response. Its Close field is true when, and only when,
// the response carried "Connection: close" (ReadResponse takes the token
// out of the header into the field).
func (h *h1Conn) receive(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// closedByServer reports whether the server has closed the connection:
// the next read ends without data.
func (h *h1Conn) closedByServer() bool {
	_ = h.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := h.r.ReadByte()
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// h2Conn is an HTTP/2 client connection with prior knowledge (as gRPC
// clients speak it), read off the wire with a raw framer so that no client
// library's retry hides a GOAWAY.
type h2Conn struct {
	fr     *http2.Framer
	nextID uint32
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A connection the server leaves open ends the reads in a timeout.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2Conn{fr: http2.NewFramer(c, c), nextID: 1}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

// open starts a GET stream and returns its ID.
func (h *h2Conn) open(t *testing.T, path string) uint32 {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "shop.test"}, {":path", path}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := h.nextID
	h.nextID += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return id
}

// h2Events is what the server sent on a connection.
type h2Events struct {
	bodies map[uint32]string
	ended  map[uint32]bool
	goaway *http2.GoAwayFrame
	eof    bool
}

// read collects frames until the connection ends, or, given stream IDs,
// until those streams have ended.
func (h *h2Conn) read(t *testing.T, stopWhenEnded ...uint32) h2Events {
	t.Helper()
	return h.readUntil(t, false, stopWhenEnded...)
}

// readToGoAway collects frames until the server's GOAWAY.
func (h *h2Conn) readToGoAway(t *testing.T) h2Events {
	t.Helper()
	ev := h.readUntil(t, true)
	if ev.goaway == nil {
		t.Fatal("no GOAWAY: the connection ended or stayed silent")
	}
	return ev
}

func (h *h2Conn) readUntil(t *testing.T, goAway bool, stopWhenEnded ...uint32) h2Events {
	t.Helper()
	ev := h2Events{bodies: map[uint32]string{}, ended: map[uint32]bool{}}
	done := func() bool {
		if goAway {
			return ev.goaway != nil
		}
		if len(stopWhenEnded) == 0 {
			return false
		}
		for _, id := range stopWhenEnded {
			if !ev.ended[id] {
				return false
			}
		}
		return true
	}
	for !done() {
		f, err := h.fr.ReadFrame()
		if err != nil {
			ev.eof = errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
			if !ev.eof {
				t.Errorf("read frame: %v", err)
			}
			return ev
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = h.fr.WritePing(true, f.Data)
			}
		case *http2.DataFrame:
			ev.bodies[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ev.ended[f.StreamID] = true
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				ev.ended[f.StreamID] = true
			}
		case *http2.GoAwayFrame:
			ev.goaway = f
		}
	}
	return ev
}

// The kubelet runs a native sidecar's preStop hook when the pod starts
// terminating and sends it SIGTERM only after the app has exited
// (kuberuntime killContainer, terminationOrdering). The hook, run as the
// webhook injects it, must make the sidecar unready and move every client
// off its connections, while every request, in flight or new, is still
// answered: clients' keep-alive connections stay on this pod whatever
// kube-proxy does, and would otherwise reach it after the app is gone.
func TestPreStopHookMovesClientsOffWhileServing(t *testing.T) {
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	inSlow := make(chan struct{}, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inSlow <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "served "+r.URL.Path)
	}))
	defer app.Close()
	// Before app.Close, which waits for the app's handlers.
	defer releaseOnce()
	s := startPodSidecar(t, app.URL)

	// Attack: the status port is reachable from every pod of the cluster;
	// the hook's route must not be there, or anyone could make the pod
	// unready.
	resp, err := http.Post("http://"+s.status+contract.PreStopPath, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		t.Fatalf("POST %s on the status port = %d: the status port must not serve it", contract.PreStopPath, resp.StatusCode)
	}
	if code, body := s.readyz(t); code != http.StatusOK {
		t.Fatalf("readyz after a POST on the status port = %d %s, want 200", code, body)
	}

	// Clients already connected: an idle HTTP/1.1 keep-alive connection,
	// one with a request in flight, an idle HTTP/2 connection and one with
	// a stream in flight.
	idle1 := dialH1(t, s.data)
	idle1.send(t, "/before")
	if r, _ := idle1.receive(t); r.StatusCode != http.StatusOK || r.Close {
		t.Fatalf("before the hook: %d, close=%v; want 200 on a kept-alive connection", r.StatusCode, r.Close)
	}
	busy1 := dialH1(t, s.data)
	busy1.send(t, "/slow")
	<-inSlow
	idle2 := dialH2(t, s.data)
	first := idle2.open(t, "/before")
	if ev := idle2.read(t, first); ev.bodies[first] != "served /before" || ev.goaway != nil {
		t.Fatalf("before the hook: h2 body %q, GOAWAY %v", ev.bodies[first], ev.goaway)
	}
	busy2 := dialH2(t, s.data)
	slow2 := busy2.open(t, "/slow")
	<-inSlow

	if out, err := s.preStop(t, s.adminListen); err != nil {
		t.Fatalf("preStop hook: %v: %s", err, out)
	}

	code, body := s.readyz(t)
	var rd struct {
		Ready  bool `json:"ready"`
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &rd); err != nil {
		t.Fatalf("readyz %q: %v", body, err)
	}
	failing := map[string]bool{}
	for _, c := range rd.Checks {
		failing[c.Name] = !c.OK
	}
	if code != http.StatusServiceUnavailable || rd.Ready || !failing["terminating"] || failing["draining"] || failing["config"] {
		t.Errorf("readyz after the hook = %d %s, want 503 with only the check terminating failing", code, body)
	}

	// The idle HTTP/1.1 connection is closed at once: its client's next
	// request opens a new connection, which kube-proxy sends elsewhere.
	if !idle1.closedByServer() {
		t.Error("an idle HTTP/1.1 keep-alive connection stayed open after the hook")
	}
	// A new connection is still served (kube-proxy may send new ones here
	// for a second or so), once.
	fresh := dialH1(t, s.data)
	fresh.send(t, "/after")
	if r, b := fresh.receive(t); r.StatusCode != http.StatusOK || b != "served /after" || !r.Close {
		t.Errorf("a new connection after the hook: %d %q close=%v; want 200, served, Connection: close", r.StatusCode, b, r.Close)
	}
	if !fresh.closedByServer() {
		t.Error("a new connection stayed open after its response")
	}
	// An idle HTTP/2 connection gets GOAWAY (NO_ERROR, RFC 9113 §6.8)
	// naming the last stream it served, and ends: its client opens its
	// next stream on a new connection.
	ev := idle2.read(t)
	if ev.goaway == nil || ev.goaway.ErrCode != http2.ErrCodeNo || ev.goaway.LastStreamID != first {
		t.Errorf("idle h2 connection after the hook: GOAWAY %v; want NO_ERROR with last stream %d", ev.goaway, first)
	}
	if !ev.eof {
		t.Error("idle h2 connection stayed open after GOAWAY")
	}
	// A new HTTP/2 connection is served until it has no open stream, then
	// gets GOAWAY.
	fresh2 := dialH2(t, s.data)
	next := fresh2.open(t, "/after")
	ev = fresh2.read(t)
	if ev.bodies[next] != "served /after" || !ev.ended[next] {
		t.Errorf("a new h2 connection after the hook: body %q, ended %v; want served", ev.bodies[next], ev.ended[next])
	}
	if ev.goaway == nil || ev.goaway.ErrCode != http2.ErrCodeNo || ev.goaway.LastStreamID < next || !ev.eof {
		t.Errorf("a new h2 connection after the hook: GOAWAY %v, ended %v; want NO_ERROR covering stream %d, then the end", ev.goaway, ev.eof, next)
	}
	// An HTTP/2 connection with a stream in flight gets GOAWAY at once,
	// not when the stream ends: a gRPC client whose connection always has
	// a stream open (a watch next to its calls) would otherwise send new
	// calls here until the sidecar's SIGTERM, after the app has gone.
	ev = busy2.readToGoAway(t)
	if ev.goaway.ErrCode != http2.ErrCodeNo || ev.goaway.LastStreamID < slow2 || ev.ended[slow2] {
		t.Errorf("h2 connection with a stream in flight: GOAWAY %v, stream ended %v; want NO_ERROR covering stream %d while it runs", ev.goaway, ev.ended[slow2], slow2)
	}

	// In-flight requests finish on their connections, which then end.
	releaseOnce()
	if r, b := busy1.receive(t); r.StatusCode != http.StatusOK || b != "served /slow" || !r.Close {
		t.Errorf("HTTP/1.1 request in flight at the hook: %d %q close=%v; want 200, served, Connection: close", r.StatusCode, b, r.Close)
	}
	if !busy1.closedByServer() {
		t.Error("the HTTP/1.1 connection stayed open after its in-flight response")
	}
	ev = busy2.read(t)
	if ev.bodies[slow2] != "served /slow" || !ev.ended[slow2] {
		t.Errorf("h2 stream in flight at the hook: body %q ended %v; want it whole", ev.bodies[slow2], ev.ended[slow2])
	}
	if !ev.eof {
		t.Error("the h2 connection stayed open after its last stream")
	}

	// The kubelet may run the hook again (a restarted container): it
	// succeeds and changes nothing.
	if out, err := s.preStop(t, s.adminListen); err != nil {
		t.Errorf("second preStop hook: %v: %s", err, out)
	}
	if !strings.Contains(s.log.String(), "Pod terminating") || strings.Count(s.log.String(), "Pod terminating") != 1 {
		t.Errorf("want the termination logged once:\n%s", s.log)
	}

	// Then SIGTERM, once the app has exited: a clean drain.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			t.Errorf("sidecar exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sidecar did not exit after SIGTERM")
	}
}

// A hook that reaches no sidecar fails, saying where it looked: the
// kubelet records a FailedPreStopHook event and goes on terminating.
func TestPreStopHookWithoutSidecarFails(t *testing.T) {
	bin := sidecarBinary(t)
	sock := contract.UnixPrefix + filepath.Join(t.TempDir(), "absent.sock")
	argv := contract.PreStopExec(sock)
	out, err := exec.Command(bin, argv[1:]...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("prestop without a sidecar: %v, want a failing exit", err)
	}
	if !strings.Contains(string(out), sock) {
		t.Errorf("prestop error %q does not name the address %s", out, sock)
	}
	// A hook the kubelet cannot run as written is a usage error (exit 2),
	// as for the sidecar itself; asking for help is not an error.
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--admin-listen=127.0.0.1:1", "extra"}, 2, "prestop: unexpected arguments"},
		{[]string{"--no-such-flag"}, 2, "prestop: flag provided but not defined"},
		{[]string{"--help"}, 0, "gatehouse-sidecar prestop [--admin-listen ADDR]"},
	} {
		code, stdout, stderr := runBinary(t, append([]string{contract.PreStopCommand}, tt.args...)...)
		if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("prestop %q: exit %d, output %q; want %d and %q", tt.args, code, stdout+stderr, tt.code, tt.want)
		}
	}
}
