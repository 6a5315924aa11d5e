package proxy

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// termination is what the sidecar knows of its pod's termination before
// SIGTERM. The kubelet sends a native sidecar SIGTERM only once the app
// containers have exited, but runs its preStop hook at once; the hook
// (`gatehouse-sidecar prestop`) reaches the admin API, and from then on the
// sidecar is unready and ends every client connection after its current
// request, while it keeps serving: clients' keep-alive connections, which
// conntrack keeps on this pod whatever kube-proxy does, move to another
// pod while the app (held by its own preStop delay) still answers.
type termination struct {
	on atomic.Bool

	mu      sync.Mutex // guards servers
	servers []*http.Server
}

// track makes srv's connections follow the termination: at once when it has
// begun, otherwise when it does.
func (t *termination) track(srv *http.Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.servers = append(t.servers, srv)
	if t.on.Load() {
		srv.SetKeepAlivesEnabled(false)
	}
}

// begin records the termination and turns keep-alives off on every tracked
// server: idle HTTP/1.1 connections close now, every later HTTP/1.1
// response carries "Connection: close", and an HTTP/2 connection is sent
// GOAWAY as soon as it has no open stream (net/http's HTTP/2 server does
// this while keep-alives are off). It reports whether this call began it.
func (t *termination) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on.Swap(true) {
		return false
	}
	for _, srv := range t.servers {
		srv.SetKeepAlivesEnabled(false)
	}
	return true
}

// servePreStop is the admin route the preStop hook calls: idempotent, since
// the kubelet may run the hook again (a container restarted mid-termination).
func (p *Proxy) servePreStop(w http.ResponseWriter, _ *http.Request) {
	if p.term.begin() {
		p.log.Info("Pod terminating: unready, closing client connections after their current request, still serving")
	}
	w.WriteHeader(http.StatusNoContent)
}
