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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/sidecar/proxy"
)

func main() {
	if err := run(os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse-sidecar:", err)
		os.Exit(1)
	}
}

// flags are the command line, each with a GATEHOUSE_* environment fallback
// so the operator can configure the injected container either way.
type flags struct {
	config                string
	listen                string
	upstream              string
	adminListen           string
	statusListen          string
	podLabels             string
	logLevel              string
	drainTimeout          time.Duration
	upstreamHeaderTimeout time.Duration
}

func parseFlags(args []string, getenv func(string) string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("gatehouse-sidecar", flag.ContinueOnError)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	envDuration := func(name string, def time.Duration) (time.Duration, error) {
		v := getenv(name)
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return d, nil
	}
	drain, err := envDuration("GATEHOUSE_DRAIN_TIMEOUT", 30*time.Second)
	if err != nil {
		return f, err
	}
	headerTimeout, err := envDuration("GATEHOUSE_UPSTREAM_HEADER_TIMEOUT", 0)
	if err != nil {
		return f, err
	}
	fs.StringVar(&f.config, "config", env("GATEHOUSE_CONFIG", ""), "sidecar config file (JSON); env GATEHOUSE_CONFIG")
	fs.StringVar(&f.listen, "listen", env("GATEHOUSE_LISTEN", ":8080"), "data listen address; env GATEHOUSE_LISTEN")
	fs.StringVar(&f.upstream, "upstream", env("GATEHOUSE_UPSTREAM", "http://127.0.0.1:8081"), "app base URL; env GATEHOUSE_UPSTREAM")
	fs.StringVar(&f.statusListen, "status-listen", env("GATEHOUSE_STATUS_LISTEN", ""), "listen address of /healthz, /readyz and /metrics alone, for kubelet probes and Prometheus (e.g. :9902); empty disables; env GATEHOUSE_STATUS_LISTEN")
	fs.StringVar(&f.adminListen, "admin-listen", env("GATEHOUSE_ADMIN_LISTEN", "127.0.0.1:9901"), "admin API listen address (keep it on loopback); env GATEHOUSE_ADMIN_LISTEN")
	fs.StringVar(&f.podLabels, "pod-labels", env("GATEHOUSE_POD_LABELS", ""), "downward-API labels file; empty means no labels; env GATEHOUSE_POD_LABELS")
	fs.StringVar(&f.logLevel, "log-level", env("GATEHOUSE_LOG_LEVEL", "info"), "debug, info, warn or error; env GATEHOUSE_LOG_LEVEL")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", drain, "how long in-flight requests may finish on SIGTERM; env GATEHOUSE_DRAIN_TIMEOUT")
	fs.DurationVar(&f.upstreamHeaderTimeout, "upstream-header-timeout", headerTimeout, "max wait for the app's response headers, 0 = no limit; env GATEHOUSE_UPSTREAM_HEADER_TIMEOUT")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if f.config == "" {
		return f, errors.New("--config (or GATEHOUSE_CONFIG) is required")
	}
	return f, nil
}

func run(args []string, getenv func(string) string) error {
	f, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	redis.SetLogger(redisLogger{log: log.With("component", "go-redis")})

	upstream, err := url.Parse(f.upstream)
	if err != nil || upstream.Host == "" || (upstream.Scheme != "http" && upstream.Scheme != "https") {
		return fmt.Errorf("--upstream %q: want an http(s) URL with a host", f.upstream)
	}
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register runtime metrics: %w", err)
		}
	}
	p, err := proxy.New(proxy.Options{
		Upstream:              upstream,
		ConfigPath:            f.config,
		LabelsPath:            f.podLabels,
		Registerer:            reg,
		Gatherer:              reg,
		Logger:                log,
		DrainTimeout:          f.drainTimeout,
		UpstreamHeaderTimeout: f.upstreamHeaderTimeout,
	})
	if err != nil {
		return err
	}
	data, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	admin, err := net.Listen("tcp", f.adminListen)
	if err != nil {
		data.Close()
		return fmt.Errorf("admin listen: %w", err)
	}
	ls := proxy.Listeners{Data: data, Admin: admin}
	if f.statusListen != "" {
		if ls.Status, err = net.Listen("tcp", f.statusListen); err != nil {
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
