package proxy

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/reload"
)

// Listeners are the sockets the sidecar serves.
type Listeners struct {
	// Data carries application traffic.
	Data net.Listener
	// Admin serves health, metrics and the feature admin API (creating
	// sessions, purging the cache): a Unix socket in a volume shared with
	// the app container only, or a loopback TCP port; never the network.
	Admin net.Listener
	// Status, when set, serves only /healthz, /readyz and /metrics, for
	// kubelet probes and Prometheus, which cannot reach a loopback listener.
	Status net.Listener
}

// Run loads the config, serves the data path, the admin API and the status
// endpoints, and hot-reloads config and labels until ctx is done. A POST of
// contract.PreStopPath to the admin API (the pod's preStop hook) turns
// /readyz unready and moves every client off the connection it holds
// (HTTP/2 connections get GOAWAY at once, HTTP/1.1 ones close after their
// current response), while new connections are still served
// (dataServing). When ctx is done it drains: /readyz turns unready, the
// data listener stops accepting, every HTTP/2 connection is sent GOAWAY
// (clients open new streams elsewhere, the ones in flight go on),
// in-flight requests and streams finish within the drain timeout, and
// finally the admin and status listeners close. It returns nil after a
// clean drain.
func (p *Proxy) Run(ctx context.Context, ls Listeners) error {
	data, admin := ls.Data, ls.Admin
	// A bad file at start-up is logged by the watcher and shown by /readyz;
	// the sidecar keeps running so that fixing the ConfigMap is enough.
	_ = p.watcher.Reload()

	watchCtx, stopWatching := context.WithCancel(context.Background())
	var watchers sync.WaitGroup
	// Watchers stop before the final Close, so that no reload can install a
	// graph after it; the deferred call covers early returns.
	stopWatchers := sync.OnceFunc(func() {
		stopWatching()
		watchers.Wait()
	})
	defer stopWatchers()
	watchers.Go(func() {
		if err := p.watcher.Run(watchCtx); err != nil {
			p.log.Error("Config watch stopped; hot reload is off", "error", err)
		}
	})
	if p.labelsPath != "" {
		watchers.Go(func() {
			if err := reload.WatchFile(watchCtx, p.labelsPath, p.log, p.reloadLabels); err != nil {
				p.log.Error("Pod labels watch stopped", "error", err)
			}
		})
	}

	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)
	ds := newDataServing(data, func() *http.Server { return p.dataServer(errLog) })
	// The preStop hook hands the data listener over (dataServing).
	p.term.onBegin(ds.handOver)
	adminSrv := &http.Server{
		Handler:           p.AdminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errLog,
	}
	// The side servers (admin, status) outlive the data drain so that probes
	// see "draining" instead of a refused connection.
	side := []*http.Server{adminSrv}
	errc := make(chan error, 3)
	go func() { errc <- ds.serve() }()
	go func() { errc <- serve(adminSrv, admin, "admin") }()
	pending := 2
	if ls.Status != nil {
		statusSrv := &http.Server{Handler: p.StatusHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
		side = append(side, statusSrv)
		go func() { errc <- serve(statusSrv, ls.Status, "status") }()
		pending++
		p.log.Info("Serving status endpoints", "status", ls.Status.Addr().String())
	}
	p.log.Info("Serving", "data", data.Addr().String(), "admin", admin.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		pending--
	}
	drainErr := p.drain(ds)
	closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, srv := range side {
		if err := srv.Shutdown(closeCtx); err != nil {
			_ = srv.Close()
		}
	}
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	stopWatchers()
	_ = p.Close()
	return errors.Join(serveErr, drainErr)
}

// dataServer is a server of the data listener. dataServing makes a second
// one when the pod terminates.
func (p *Proxy) dataServer(errLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:   p,
		Protocols: dataProtocols(),
		// Bound how long a client may take to send headers (slowloris).
		// The body and the response are bounded per operation instead
		// (proxy.bodyReadTimeout, proxy.writeTimeout; deadline.go): a
		// whole-request ReadTimeout or WriteTimeout would cut every long
		// stream.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          errLog,
		// Each client connection's send buffer is capped (capSendBuffer).
		// The response to a request, the server's own error answers and a
		// "100 Continue" included, must make progress within the write
		// timeout from the moment a request starts arriving; each write
		// of the handler moves the deadline on (deadline.go). Nothing is
		// set while a connection idles between requests.
		// HTTP/2 connections: the write deadline set at StateActive below
		// is replaced by the one WriteByteTimeout sets before each frame
		// write, so a connection that keeps draining is never cut while
		// one that stops is; each stream's writes are bounded by the
		// recorder (deadline.go). A peer that sends nothing for a minute
		// is pinged, and closed if it does not answer within 15s: that
		// bounds the gRPC streams exempt from the body deadline when the
		// client has gone away without a FIN.
		HTTP2: &http.HTTP2Config{
			WriteByteTimeout: p.clientWriteTimeout(),
			SendPingTimeout:  time.Minute,
			PingTimeout:      15 * time.Second,
		},
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				capSendBuffer(c)
			case http.StateActive:
				if g := p.cur.Load(); g != nil && g.timeouts.write > 0 {
					_ = c.SetWriteDeadline(time.Now().Add(g.timeouts.write))
				}
			}
		},
	}
}

// clientWriteTimeout is the write timeout of the configuration in force
// when the data server starts, or the default. http.Server reads its HTTP/2
// settings when a connection is accepted and cannot take a new value on
// reload; the per-stream write deadlines do follow reloads.
func (p *Proxy) clientWriteTimeout() time.Duration {
	if g := p.cur.Load(); g != nil && g.timeouts.write > 0 {
		return g.timeouts.write
	}
	return time.Duration(config.DefaultClientWriteTimeout)
}

// dataProtocols are the data port's: HTTP/1.1 (WebSocket upgrades among
// it) and HTTP/2 over cleartext with prior knowledge (RFC 9113 §3.3), which
// gRPC clients speak, on the same socket. The server tells them apart by
// the HTTP/2 connection preface. The h2c Upgrade dance of RFC 7540 §3.2 is
// not offered; RFC 9113 deprecated it and gRPC clients never use it.
func dataProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// drain stops accepting on the data listener and waits for in-flight
// requests, at most the drain timeout; requests still running then are cut
// off.
func (p *Proxy) drain(ds *dataServing) error {
	p.draining.Store(true)
	p.log.Info("Draining", "timeout", p.drainTimeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), p.drainTimeout)
	defer cancel()
	if err := ds.shutdown(ctx); err != nil {
		return fmt.Errorf("drain: in-flight requests cut off after %s: %w", p.drainTimeout, err)
	}
	p.log.Info("Drained")
	return nil
}

func serve(srv *http.Server, l net.Listener, name string) error {
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	return nil
}
