package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/gatehouse-dev/gatehouse/controllers"
)

// Names of the sample objects the tour works with (config/samples).
const (
	shopNamespace   = "shop"
	redisName       = "shop-redis"
	rateLimitName   = "storefront-limits"
	sessionName     = "storefront-sessions"
	cacheName       = "catalogue-cache"
	podName         = "storefront-0"
	appPortName     = "http"
	appPort         = 8080
	operatorNS      = "gatehouse-system"
	fieldOwner      = "gatehouse-demo"
	sidecarAdminEnv = "GATEHOUSE_ADMIN_URL"
)

// demo holds what the run started, so close can stop all of it.
type demo struct {
	o   options
	out *reporter
	tmp string

	procs procs
	env   *envtest.Environment
	cfg   *rest.Config
	k8s   client.WithWatch
	// kubeconfig is a file for the user's kubectl.
	kubeconfig string
	kubectl    string

	stopManager context.CancelFunc
	managerDone chan error
	managerLog  string

	// Background goroutines (ConfigMap sync, app server) end when
	// stopBackground is called; bg waits for them.
	stopBackground context.CancelFunc
	bg             sync.WaitGroup
	appServer      *http.Server

	redis    []*redisNode
	members  *controllers.LocalRedisMembers
	password string
	sidecar  *proc
	ports    *portMap
	sync     *volumeSync

	dataURL, adminURL, statusURL, appURL string
	readyURL                             string
	token                                string
}

func newDemo(o options) (*demo, error) {
	root, err := filepath.Abs(o.root)
	if err != nil {
		return nil, fmt.Errorf("repository root: %w", err)
	}
	o.root = root
	tmp, err := os.MkdirTemp("", "gatehouse-demo-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	return &demo{
		o:       o,
		out:     &reporter{w: os.Stdout},
		tmp:     tmp,
		kubectl: filepath.Join(o.assets, "kubectl"),
		ports:   newPortMap(),
	}, nil
}

// run is the whole demo. Each step either passes or returns an error that
// names it; without --check it then waits for ctx (Ctrl-C).
func (d *demo) run(ctx context.Context) error {
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	d.stopBackground = stopBackground

	d.out.header("Gatehouse demo: everything on loopback, nothing leaves this machine. Logs: " + d.tmp)
	if err := d.startAPIServer(ctx); err != nil {
		return err
	}
	if err := d.startManager(ctx); err != nil {
		return err
	}
	if err := d.applySamples(ctx); err != nil {
		return err
	}
	if err := d.startRedis(ctx); err != nil {
		return err
	}
	if err := d.waitPolicies(ctx); err != nil {
		return err
	}
	pod, err := d.createPod(ctx)
	if err != nil {
		return err
	}
	if err := d.runPod(ctx, bgCtx, pod); err != nil {
		return err
	}
	if err := d.tour(ctx); err != nil {
		return err
	}
	if err := d.validateManifests(ctx); err != nil {
		return err
	}
	if d.o.check {
		return nil
	}
	d.walkthrough()
	<-ctx.Done()
	return nil
}

// close stops everything the demo started and removes its files.
func (d *demo) close() {
	if d.stopBackground != nil {
		d.stopBackground()
	}
	if d.appServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = d.appServer.Shutdown(ctx)
		cancel()
	}
	d.procs.stopAll(5 * time.Second)
	d.bg.Wait()
	if d.stopManager != nil {
		d.stopManager()
		select {
		case err := <-d.managerDone:
			if err != nil {
				fmt.Fprintln(os.Stderr, "demo: the manager stopped with an error:", err)
			}
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "demo: the manager did not stop within 30s")
		}
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: stop the API server:", err)
		}
	}
	if d.o.keepTemp {
		fmt.Println("Kept", d.tmp)
		return
	}
	if err := os.RemoveAll(d.tmp); err != nil {
		fmt.Fprintln(os.Stderr, "demo: remove", d.tmp+":", err)
	}
}

// dumpLogs prints the end of every log, so a failed --check in CI says why
// without the temporary directory.
func (d *demo) dumpLogs() {
	logs, _ := filepath.Glob(filepath.Join(d.tmp, "logs", "*.log"))
	for _, path := range logs {
		lines := tail(path, 25)
		if len(lines) == 0 {
			continue
		}
		fmt.Printf("\n----- last lines of %s -----\n", filepath.Base(path))
		for _, l := range lines {
			fmt.Println(l)
		}
	}
}

func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

func (d *demo) logPath(name string) string {
	dir := filepath.Join(d.tmp, "logs")
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, name+".log")
}

// runKubectl runs the assets' kubectl against the demo's API server,
// printing the command line as a user would type it.
func (d *demo) runKubectl(ctx context.Context, args ...string) (string, error) {
	d.out.say("$ kubectl %s", strings.Join(quoteArgs(args), " "))
	cmd := exec.CommandContext(ctx, d.kubectl, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+d.kubeconfig)
	cmd.Dir = d.o.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \"{}[]*$") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

// reporter prints numbered steps and their results.
type reporter struct {
	w    io.Writer
	n    int
	step string
}

func (r *reporter) header(s string) { fmt.Fprintf(r.w, "%s\n", s) }

func (r *reporter) begin(title string) {
	r.n++
	r.step = fmt.Sprintf("%d. %s", r.n, title)
	fmt.Fprintf(r.w, "\n== %s\n", r.step)
}

func (r *reporter) say(format string, args ...any) {
	fmt.Fprintf(r.w, "   "+format+"\n", args...)
}

func (r *reporter) ok(format string, args ...any) {
	fmt.Fprintf(r.w, "   ✓ "+format+"\n", args...)
}

func (r *reporter) fail(err error) {
	fmt.Fprintf(r.w, "\n   ✗ FAILED at step %s\n     %v\n", r.step, err)
}

// poll calls f until it succeeds or ctx/timeout ends; the error then
// carries f's last complaint.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", time.Since(start).Round(100*time.Millisecond), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
