package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// preStop calls the hook's admin route, as `gatehouse-sidecar prestop` does.
func preStop(t *testing.T, s *sidecar) {
	t.Helper()
	resp, err := http.Post(s.admin+"/prestop", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /prestop = %d, want 204", resp.StatusCode)
	}
}

// The kubelet sends SIGTERM once the app has exited, which may be while a
// request that began before the preStop hook still runs on the server the
// hook retired (a long download, a stream). The drain waits for it as for
// any in-flight request, and Run returns only when it has finished.
func TestDrainAfterPreStopWaitsForTheRetiredServersRequests(t *testing.T) {
	release := make(chan struct{})
	var inSlow atomic.Int64
	app := newApp(t)
	app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			inSlow.Add(1)
			<-release
		}
		_, _ = io.WriteString(w, "served "+r.URL.Path)
	})
	s := newSidecar(t, app.URL, cfgDoc("h", "")).start(t)
	eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })

	type result struct {
		body  string
		close bool
		err   error
	}
	slow := make(chan result, 1)
	go func() {
		resp, err := http.Get(s.data + "/slow")
		if err != nil {
			slow <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- result{string(b), resp.Close, err}
	}()
	eventually(t, "the slow request in flight", func() bool { return inSlow.Load() == 1 })

	preStop(t, s)
	// Served by the successor, once.
	resp, body := get(t, s.data+"/after", nil)
	if resp.StatusCode != http.StatusOK || body != "served /after" || !resp.Close {
		t.Errorf("after the hook: %d %q close=%v; want 200, served, Connection: close", resp.StatusCode, body, resp.Close)
	}

	s.cancel() // SIGTERM
	select {
	case err := <-s.done:
		s.done <- err // for start's cleanup
		close(release)
		t.Fatalf("Run returned %v with a request of the retired server in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	// Refused, as after any SIGTERM.
	if c, err := net.Dial("tcp", strings.TrimPrefix(s.data, "http://")); err == nil {
		c.Close()
		t.Error("the data port accepts connections after SIGTERM")
	}
	close(release)
	if r := <-slow; r.err != nil || r.body != "served /slow" || !r.close {
		t.Errorf("the request in flight at the hook: %q close=%v err=%v; want served with Connection: close", r.body, r.close, r.err)
	}
	err := <-s.done
	s.done <- err // for start's cleanup
	if err != nil {
		t.Errorf("Run: %v", err)
	}
}

// A request of the retired server still running at the drain timeout is
// cut off, and Run says so, as for the current server's (the drain timeout
// bounds everything after SIGTERM).
func TestDrainTimeoutAfterPreStopCutsOffTheRetiredServersStragglers(t *testing.T) {
	app := newApp(t)
	var inApp atomic.Int64
	stuck := make(chan struct{})
	defer close(stuck)
	app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inApp.Add(1)
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	})
	s := newSidecar(t, app.URL, cfgDoc("h", ""))
	s.p.drainTimeout = 100 * time.Millisecond
	s.run(t)
	eventually(t, "ready", func() bool { code, _ := readyz(t, s); return code == http.StatusOK })
	go func() {
		if resp, err := http.Get(s.data + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, "request in flight", func() bool { return inApp.Load() == 1 })
	preStop(t, s)
	s.cancel()
	select {
	case err := <-s.done:
		if err == nil || !strings.Contains(err.Error(), "cut off") {
			t.Errorf("Run with a stuck request of the retired server = %v, want a drain timeout error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain timeout")
	}
}
