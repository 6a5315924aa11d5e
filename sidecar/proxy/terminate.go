package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// termination is what the sidecar knows of its pod's termination before
// SIGTERM. The kubelet sends a native sidecar SIGTERM only once the app
// containers have exited, but runs its preStop hook at once; the hook
// (`gatehouse-sidecar prestop`) reaches the admin API, and from then on the
// sidecar is unready and moves every HTTP client off the connection it
// holds (WebSockets, hijacked, are not HTTP to it any more), while it
// keeps serving: clients' keep-alive connections, which conntrack
// keeps on this pod whatever kube-proxy does, move to another pod while the
// app (held by its own preStop delay) still answers.
type termination struct {
	on atomic.Bool

	mu    sync.Mutex // guards hooks
	hooks []func()
}

// onBegin runs f when the termination begins, or at once if it has.
func (t *termination) onBegin(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on.Load() {
		f()
		return
	}
	t.hooks = append(t.hooks, f)
}

// begin records the termination and runs the hooks. It reports whether
// this call began it.
func (t *termination) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on.Swap(true) {
		return false
	}
	for _, f := range t.hooks {
		f()
	}
	return true
}

// servePreStop is the admin route the preStop hook calls: idempotent, since
// the kubelet may run the hook again (a container restarted mid-termination).
func (p *Proxy) servePreStop(w http.ResponseWriter, _ *http.Request) {
	if p.term.begin() {
		p.log.Info("Pod terminating: unready, moving clients off their connections, still serving")
	}
	w.WriteHeader(http.StatusNoContent)
}

// dataServing serves the data listener: one server until the pod
// terminates, then a successor with keep-alives off, while the first shuts
// down gracefully exactly as at SIGTERM. net/http offers the graceful part
// only as Shutdown, which also closes the listener, so each server gets a
// view of one shared listener (sharedListener): closing a view stops that
// server's accepting only, and no connection kube-proxy still sends here is
// refused.
//
// What a client sees at the hand-over: an idle HTTP/1.1 connection closes,
// a busy one after its current response (Connection: close); every HTTP/2
// connection gets GOAWAY (NO_ERROR, naming the last stream the sidecar
// takes) at once, also one that always has a stream open, such as a gRPC
// client's with a long watch next to its calls; its streams go on and it
// closes when they have ended. A connection made after the hand-over is
// served for one request (HTTP/1.1) or until it has no stream open
// (HTTP/2: GOAWAY then).
type dataServing struct {
	shared    *sharedListener
	newServer func() *http.Server

	mu      sync.Mutex // guards the fields below
	cur     *http.Server
	view    net.Listener
	retired *http.Server // the server in place at the hand-over, shutting down
	stopped bool

	// retiredDone is closed when retired's Shutdown has returned, with
	// retiredErr; cancelRetire ends that Shutdown's wait.
	retiredDone  chan struct{}
	retiredErr   error
	retireCtx    context.Context
	cancelRetire context.CancelFunc
}

func newDataServing(l net.Listener, newServer func() *http.Server) *dataServing {
	d := &dataServing{shared: newSharedListener(l), newServer: newServer, retiredDone: make(chan struct{})}
	d.cur, d.view = newServer(), d.shared.view()
	d.retireCtx, d.cancelRetire = context.WithCancel(context.Background())
	return d
}

// serve serves until shutdown: the first server, and after a hand-over
// its successor, in turn on this goroutine (a hand-over ends the first
// server's Serve at once, and the successor's starts; the connections that
// arrive in between wait in the listener).
func (d *dataServing) serve() error {
	for {
		d.mu.Lock()
		srv, view := d.cur, d.view
		d.mu.Unlock()
		err := srv.Serve(view)
		d.mu.Lock()
		next, stopped := d.cur != srv, d.stopped
		d.mu.Unlock()
		switch {
		case stopped:
			// Shut down: the listener is closed, whatever Serve saw first.
			return nil
		case !errors.Is(err, http.ErrServerClosed):
			return fmt.Errorf("serve data: %w", err)
		case !next:
			return nil
		}
	}
}

// handOver gives the listener to a successor with keep-alives off and shuts
// the current server down gracefully in the background. It happens once;
// after shutdown it does nothing.
func (d *dataServing) handOver() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.retired != nil || d.stopped {
		return
	}
	next := d.newServer()
	next.SetKeepAlivesEnabled(false)
	d.retired = d.cur
	d.cur, d.view = next, d.shared.view()
	go func() {
		d.retiredErr = d.retired.Shutdown(d.retireCtx)
		close(d.retiredDone)
	}()
}

// shutdown stops accepting and waits, until ctx is done, for every
// connection of the current server and of one handed over to end; then it
// cuts off the rest.
func (d *dataServing) shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.stopped = true
	cur, retired := d.cur, d.retired
	d.mu.Unlock()
	// New connections are refused from now on, as by Shutdown alone.
	d.shared.Close()
	var errs []error
	if err := cur.Shutdown(ctx); err != nil {
		_ = cur.Close()
		errs = append(errs, err)
	}
	if retired != nil {
		select {
		case <-d.retiredDone:
		case <-ctx.Done():
			d.cancelRetire()
			<-d.retiredDone
		}
		if d.retiredErr != nil {
			_ = retired.Close()
			errs = append(errs, d.retiredErr)
		}
	}
	d.cancelRetire()
	return errors.Join(errs...)
}

// sharedListener lets successive servers accept from one listener: one
// goroutine accepts, and each server gets a view of its own whose Close
// ends that server's Accept without closing the listener.
type sharedListener struct {
	l        net.Listener
	accepted chan acceptResult
	closing  chan struct{} // closed by Close
	once     sync.Once
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newSharedListener(l net.Listener) *sharedListener {
	s := &sharedListener{l: l, accepted: make(chan acceptResult), closing: make(chan struct{})}
	go s.accept()
	return s
}

// accept hands each accepted connection, or error, to whichever view asks
// first; it ends when the listener is closed.
func (s *sharedListener) accept() {
	for {
		c, err := s.l.Accept()
		select {
		case s.accepted <- acceptResult{c, err}:
		case <-s.closing:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Close closes the listener itself: no view accepts any more.
func (s *sharedListener) Close() {
	s.once.Do(func() {
		close(s.closing)
		_ = s.l.Close()
	})
}

// view is a net.Listener for one server.
func (s *sharedListener) view() net.Listener {
	return &listenerView{s: s, closed: make(chan struct{})}
}

type listenerView struct {
	s      *sharedListener
	closed chan struct{}
	once   sync.Once
}

func (v *listenerView) Accept() (net.Conn, error) {
	// A closed view takes no connection, even one that is ready: that is
	// for the successor.
	select {
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.closing:
		return nil, net.ErrClosed
	default:
	}
	select {
	case r := <-v.s.accepted:
		return r.c, r.err
	case <-v.closed:
		return nil, net.ErrClosed
	case <-v.s.closing:
		return nil, net.ErrClosed
	}
}

func (v *listenerView) Close() error {
	v.once.Do(func() { close(v.closed) })
	return nil
}

func (v *listenerView) Addr() net.Addr { return v.s.l.Addr() }
