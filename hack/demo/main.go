// Command demo runs the whole of Gatehouse on one machine, on loopback, and
// walks through what it does with real requests. It is also the project's
// end-to-end test: with --check it runs the tour non-interactively and exits
// non-zero, naming the step, when anything does not behave as printed.
//
// What runs (see docs/demo.md): a Kubernetes API server and etcd (envtest),
// the real manager in-process (controllers.Setup, webhook included), six
// redis-server processes configured from the redis.conf the operator
// renders and formed into a cluster by the operator's own cluster code, the
// gatehouse-sidecar binary started with exactly the args and env the webhook
// injected (config file kept in sync with the ConfigMap the way the kubelet
// does it), and the sample catalogue app (hack/demo/app).
//
// Every child process is started by the demo and stopped by pid on exit,
// failure or Ctrl-C; the temporary directory is removed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	check      bool
	root       string
	assets     string
	sidecarBin string
	timeout    time.Duration
	keepTemp   bool
}

func main() {
	runAsShim()
	os.Exit(run())
}

func run() int {
	var o options
	flag.BoolVar(&o.check, "check", false, "run the tour non-interactively and exit non-zero on any deviation")
	flag.StringVar(&o.root, "root", ".", "repository root (config/ and cmd/ are read from here)")
	flag.StringVar(&o.assets, "assets", os.Getenv("KUBEBUILDER_ASSETS"), "directory with kube-apiserver, etcd and kubectl (hack/envtest-assets.sh prints it)")
	flag.StringVar(&o.sidecarBin, "sidecar-bin", "", "gatehouse-sidecar binary to run; empty builds ./cmd/sidecar")
	flag.DurationVar(&o.timeout, "timeout", 4*time.Minute, "with --check: bound on the whole run")
	flag.BoolVar(&o.keepTemp, "keep-temp", false, "keep the temporary directory (logs, redis data, kubeconfig) on exit")
	flag.Parse()
	if o.assets == "" {
		fmt.Fprintln(os.Stderr, "demo: --assets (or $KUBEBUILDER_ASSETS) is required: run hack/demo.sh, which sets it up")
		return 2
	}

	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx := sigCtx
	if o.check {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}

	start := time.Now()
	d, err := newDemo(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	err = d.run(ctx)
	// An interrupt before the tour finished is not a failure of Gatehouse,
	// but it is not a pass either.
	interrupted := err != nil && sigCtx.Err() != nil
	if err != nil && !interrupted {
		d.out.fail(err)
		d.dumpLogs()
	}
	fmt.Println("\nStopping: sidecar, app, redis-server processes, manager, API server; removing the temporary directory.")
	d.close()
	switch {
	case interrupted:
		fmt.Println("Interrupted.")
		return 130
	case err != nil:
		fmt.Printf("\nDEMO FAILED after %s\n", time.Since(start).Round(time.Second))
		return 1
	case o.check:
		fmt.Printf("\nAll steps passed in %s.\n", time.Since(start).Round(time.Second))
	default:
		fmt.Println("Stopped.")
	}
	return 0
}
