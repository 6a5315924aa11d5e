// Command gatehouse-sidecar is the Gatehouse proxy injected next to an app:
// it enforces the sessions, rate limits and caching of the policies that
// select its pod, then forwards to the app.
//
// It also runs without Kubernetes, in front of any local HTTP app:
//
//	gatehouse-sidecar --config gatehouse.json --upstream http://127.0.0.1:3000
//
// Without --pod-labels the pod has no labels, so only policies with an empty
// selector apply.
//
// `gatehouse-sidecar prestop --admin-listen=ADDR` is the injected preStop
// hook: it tells the sidecar serving ADDR that its pod is terminating.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
	"github.com/gatehouse-dev/gatehouse/sidecar/proxy"
	"github.com/gatehouse-dev/gatehouse/sidecar/request"
)

func main() {
	err := run(os.Args[1:], os.Getenv)
	var usage usageError
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// Asked for: the usage is the answer, on stdout, and not a failure.
		fmt.Print(usageText())
	case errors.As(err, &usage):
		// A command line that does not parse: the error and the usage, exit
		// status 2, as the flag package's ExitOnError does.
		fmt.Fprintf(os.Stderr, "gatehouse-sidecar: %v\n\n%s", err, usageText())
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "gatehouse-sidecar:", err)
		os.Exit(1)
	}
}

// usageError is a command line that does not parse.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usageHead = `Usage: gatehouse-sidecar --config FILE [flags]
       gatehouse-sidecar prestop [--admin-listen ADDR]

The Gatehouse sidecar: a reverse proxy in front of one app that enforces the
sessions, rate limits and caching of the policies selecting its pod, from the
configuration document FILE (docs/sidecar-config.md). Every flag can also be
set through the environment variable named after it. "prestop" is the
injected container's preStop hook: it tells the sidecar serving the admin
API at ADDR that its pod is terminating (docs/injection.md, "Termination").

Flags:
`

// usageText is the help: what the command does, then every flag with its
// default and environment variable.
func usageText() string {
	var f contract.Flags
	fs := newFlagSet()
	// The environment must not change the defaults help shows.
	_ = f.Bind(fs, func(string) string { return "" })
	var b strings.Builder
	b.WriteString(usageHead)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse-sidecar", flag.ContinueOnError)
	// main prints the usage itself, once, where it belongs.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags reads the command line. flag.ErrHelp means -h or --help was
// given; any other problem is a usageError.
func parseFlags(args []string, getenv func(string) string) (contract.Flags, error) {
	var f contract.Flags
	fs := newFlagSet()
	if err := f.Bind(fs, getenv); err != nil {
		return f, usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, usageError{err}
	}
	if fs.NArg() > 0 {
		return f, usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	if f.Config == "" {
		return f, usageError{fmt.Errorf("--%s (or %s) is required", contract.FlagConfig, contract.Env(contract.FlagConfig))}
	}
	if !contract.ValidUpstreamProtocol(f.UpstreamProtocol) {
		return f, fmt.Errorf("--%s %q: want %q or %q", contract.FlagUpstreamProtocol, f.UpstreamProtocol, contract.UpstreamHTTP1, contract.UpstreamH2C)
	}
	return f, nil
}

func run(args []string, getenv func(string) string) error {
	if len(args) > 0 && args[0] == contract.PreStopCommand {
		return preStop(args[1:], getenv)
	}
	f, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	redis.SetLogger(redisLogger{log: log.With("component", "go-redis")})

	upstream, err := url.Parse(f.Upstream)
	if err != nil || upstream.Host == "" || (upstream.Scheme != "http" && upstream.Scheme != "https") {
		return fmt.Errorf("--upstream %q: want an http(s) URL with a host", f.Upstream)
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	p, err := proxy.New(proxy.Options{
		Upstream:              upstream,
		UpstreamProtocol:      f.UpstreamProtocol,
		ConfigPath:            f.Config,
		LabelsPath:            f.PodLabels,
		Registerer:            reg,
		Gatherer:              reg,
		Logger:                log,
		DrainTimeout:          f.DrainTimeout,
		UpstreamHeaderTimeout: f.UpstreamHeaderTimeout,
		Paths:                 request.Options{AllowEncodedSlash: f.AllowEncodedSlash, AllowPathParameters: f.AllowPathParameters},
		Proxy:                 f.Proxy(),
	})
	if err != nil {
		return err
	}
	data, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	admin, err := listenAdmin(f.AdminListen)
	if err != nil {
		data.Close()
		return fmt.Errorf("admin listen: %w", err)
	}
	ls := proxy.Listeners{Data: data, Admin: admin}
	if f.StatusListen != "" {
		if ls.Status, err = net.Listen("tcp", f.StatusListen); err != nil {
			data.Close()
			admin.Close()
			return fmt.Errorf("status listen: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := p.Run(ctx, ls); err != nil {
		log.Error("Stopped with errors", "error", err)
		return err
	}
	log.Info("Stopped")
	return nil
}

// redisLogger sends go-redis' internal messages (pool dial failures, for
// instance) to the structured log instead of the standard logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
