// Command storefront runs the demo's product catalogue (hack/demo/app) as a
// container, for the e2e cluster: the app behind the injected sidecar.
//
// On SIGTERM it stops accepting connections and lets in-flight requests
// finish, as an app behind Gatehouse should; the Deployment's preStop hook
// keeps it serving until its endpoint is gone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/hack/demo/app"
)

func main() {
	listen := flag.String("listen", ":8080", "address the app serves on")
	admin := flag.String("admin-url", "unix:/var/run/gatehouse/admin.sock", "the sidecar's admin API, for minting sessions: unix:PATH (the socket the webhook shares with the app) or http://HOST:PORT")
	drain := flag.Duration("drain-timeout", 20*time.Second, "how long in-flight requests may finish after SIGTERM")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*listen, *admin, *drain, log); err != nil {
		fmt.Fprintln(os.Stderr, "storefront:", err)
		os.Exit(1)
	}
}

func run(listen, admin string, drain time.Duration, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{
		Addr:              listen,
		Handler:           app.New(admin, log).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("Serving", "listen", listen, "adminURL", admin)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("Draining", "timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
