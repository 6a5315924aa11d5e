package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// procs tracks the child processes the demo starts, so that every exit
// path (success, failure, Ctrl-C) stops exactly those, by pid.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// proc is one child process. Its output goes to a log file in the demo's
// temporary directory.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
}

// start runs bin with exactly args and env (nil env means an empty
// environment, not the demo's). The child gets SIGKILL if the demo dies
// without cleaning up (Pdeathsig), and its own process group so a Ctrl-C
// on the terminal reaches only the demo, which then stops it in order.
func (ps *procs) start(name, logPath, bin string, args, env []string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stopAll stops every process, newest first (the sidecar before Redis).
func (ps *procs) stopAll(grace time.Duration) {
	ps.mu.Lock()
	list := slices.Clone(ps.list)
	ps.list = nil
	ps.mu.Unlock()
	slices.Reverse(list)
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Go(func() {
			p.stop(grace)
		})
	}
	wg.Wait()
}

// freePort asks the kernel for an unused loopback port. Another process may
// take it before the demo binds it; the window is small and a collision
// fails the demo loudly rather than silently.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: not a TCP address")
	}
	return addr.Port, nil
}

// realAssetsEnv tells the demo binary, started under the name of an
// envtest binary, where the real one is (see shimAssets).
const realAssetsEnv = "GATEHOUSE_DEMO_REAL_ASSETS"

// shimAssets returns a directory whose kube-apiserver and etcd are this
// very binary. envtest starts its processes without a parent-death signal,
// so a demo killed with SIGKILL would leave them running; started through
// the shim, each first asks the kernel for SIGKILL when the demo dies and
// then becomes the real binary (the setting survives exec).
func shimAssets(dir, real string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("asset shim: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("asset shim: %w", err)
	}
	for name, target := range map[string]string{
		"kube-apiserver": self,
		"etcd":           self,
		"kubectl":        filepath.Join(real, "kubectl"),
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("asset shim: %w", err)
		}
	}
	if err := os.Setenv(realAssetsEnv, real); err != nil {
		return "", fmt.Errorf("asset shim: %w", err)
	}
	return dir, nil
}

// runAsShim replaces the process with the real envtest binary when the
// demo binary was started as one (shimAssets); otherwise it returns.
func runAsShim() {
	real := os.Getenv(realAssetsEnv)
	name := filepath.Base(os.Args[0])
	if real == "" || (name != "kube-apiserver" && name != "etcd") {
		return
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "demo shim: prctl:", errno)
		os.Exit(1)
	}
	// The demo may have died between fork and prctl.
	if os.Getppid() == 1 {
		os.Exit(1)
	}
	err := syscall.Exec(filepath.Join(real, name), append([]string{name}, os.Args[1:]...), os.Environ())
	fmt.Fprintln(os.Stderr, "demo shim: exec", name+":", err)
	os.Exit(1)
}
