// Package redistest starts real redis-server processes on free loopback ports
// for tests: a standalone server, blank cluster-mode nodes, or a formed Redis
// Cluster of three primaries with one replica each.
//
// Every process is registered for cleanup with the test that started it and
// is also killed by the kernel if the test binary dies (Pdeathsig), so a
// failing or panicking test leaves nothing running.
//
// A missing redis-server is a setup error, not a reason to skip: run
// hack/install-redis.sh.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TB is the part of testing.TB the helpers need. Ginkgo's GinkgoT() satisfies
// it too, so the same helpers serve plain tests and envtest suites.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// startTimeout bounds how long a node may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process.
type Server struct {
	// Port is the client port; BusPort the cluster bus port (cluster mode only).
	Port    int
	BusPort int
	// Dir is the working directory (nodes.conf, dumps). It survives Stop, so a
	// restarted node keeps its cluster identity.
	Dir string
	// Cluster reports whether the node runs with cluster-enabled yes.
	Cluster bool
	// Extra holds additional redis.conf directives ("key value").
	Extra []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the node's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// binary finds redis-server or fails the test with the install hint.
func binary(t TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found in PATH: run hack/install-redis.sh (installs the OS package)")
	}
	return path
}

// StartStandalone starts a plain Redis server and stops it when the test ends.
func StartStandalone(t TB, extra ...string) *Server {
	t.Helper()
	s := &Server{Dir: t.TempDir(), Extra: extra}
	s.Port, _ = freePorts(t)
	s.mustStart(t)
	t.Cleanup(func() { _ = s.Kill() })
	return s
}

// StartNodes starts n blank cluster-mode nodes (no slots, no peers), as a
// freshly scheduled StatefulSet would have them.
func StartNodes(t TB, n int, extra ...string) []*Server {
	t.Helper()
	nodes := make([]*Server, n)
	for i := range nodes {
		nodes[i] = StartNode(t, extra...)
	}
	return nodes
}

// StartNode starts one blank cluster-mode node.
func StartNode(t TB, extra ...string) *Server {
	t.Helper()
	s := &Server{Dir: t.TempDir(), Cluster: true, Extra: extra}
	s.Port, s.BusPort = freePorts(t)
	s.mustStart(t)
	t.Cleanup(func() { _ = s.Kill() })
	return s
}

func (s *Server) mustStart(t TB) {
	t.Helper()
	if err := s.start(binary(t)); err != nil {
		t.Fatalf("start redis-server on port %d: %v", s.Port, err)
	}
}

func (s *Server) conf() string {
	lines := []string{
		"bind 127.0.0.1",
		"protected-mode no",
		"port " + strconv.Itoa(s.Port),
		"dir " + s.Dir,
		`save ""`,
		"appendonly no",
		"loglevel warning",
		"logfile " + filepath.Join(s.Dir, "redis.log"),
	}
	if s.Cluster {
		lines = append(lines,
			"cluster-enabled yes",
			"cluster-config-file nodes.conf",
			"cluster-port "+strconv.Itoa(s.BusPort),
			// Fast failure detection keeps failover tests short.
			"cluster-node-timeout 1000",
			"cluster-replica-validity-factor 0",
			// Replicas sync at once instead of after Redis' default 5s
			// wait for more replicas to batch a diskless transfer.
			"repl-diskless-sync-delay 0",
		)
	}
	lines = append(lines, s.Extra...)
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) start(bin string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	confPath := filepath.Join(s.Dir, "redis.conf")
	if err := os.WriteFile(confPath, []byte(s.conf()), 0o600); err != nil {
		return fmt.Errorf("write redis.conf: %w", err)
	}
	cmd := exec.Command(bin, confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	if err := waitPing(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		s.cmd = nil
		log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
		return fmt.Errorf("%w; redis.log:\n%s", err, log)
	}
	return nil
}

// Stop shuts the node down gracefully (SIGTERM) and waits for it to exit.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill stops the node abruptly (SIGKILL), as a crashed pod would.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	// Signal the whole process group: redis-server forks children for
	// background saves and AOF rewrites (CONFIG SET appendonly yes starts
	// one), which would otherwise keep writing into Dir after the test.
	pgid := -s.cmd.Process.Pid
	if sig != syscall.SIGKILL {
		// A frozen node handles SIGTERM only once resumed.
		_ = syscall.Kill(pgid, syscall.SIGCONT)
	}
	if err := syscall.Kill(pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal redis-server %d: %w", s.Port, err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-s.done
	}
	// A forked child may outlive its parent briefly; wait until the group
	// is gone so Dir can be removed or reused.
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pgid, 0) == nil && time.Now().Before(deadline); {
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		time.Sleep(10 * time.Millisecond)
	}
	s.cmd = nil
	return nil
}

// Freeze suspends the node (SIGSTOP), as a stalled VM or a long GC pause
// would: its sockets stay open and accept connections, but nothing is
// answered until Thaw.
func (s *Server) Freeze() error { return s.pause(syscall.SIGSTOP) }

// Thaw resumes a frozen node (SIGCONT).
func (s *Server) Thaw() error { return s.pause(syscall.SIGCONT) }

func (s *Server) pause(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("not running")
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("signal redis-server %d: %w", s.Port, err)
	}
	return nil
}

// Start starts a stopped node again on s.Port (and s.BusPort) with its
// directory intact. Change the ports first to simulate a node that returns
// with a new address.
func (s *Server) Start(t TB) {
	t.Helper()
	s.mustStart(t)
}

// Restart stops the node gracefully and starts it again on the same ports
// with its directory intact, returning an error instead of failing a test,
// so it can run outside the test's goroutine (an operator's restart hook).
func (s *Server) Restart() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if err := s.Stop(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return s.start(bin)
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Do sends one command over a fresh connection and returns the raw reply
// text. It exists so the helpers need no Redis client library; tests use
// go-redis.
func Do(ctx context.Context, addr string, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

// readReply reads one RESP2 reply, flattening arrays into newline-separated text.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for range n {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		reply, err := Do(ctx, addr, "PING")
		cancel()
		// A node started with requirepass answers, just not to us.
		if (err == nil && reply == "PONG") || (err != nil && strings.HasPrefix(err.Error(), "NOAUTH")) {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited during start")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG from %s within %s (last error: %v)", addr, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var portMu sync.Mutex
var handedOut = map[int]bool{}

// freePorts returns a client port and a bus port that are free on loopback
// now and were not handed out before by this process. The bus port is chosen
// explicitly (cluster-port) rather than port+10000, so any free port works.
func freePorts(t TB) (int, int) {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	var ports []int
	for len(ports) < 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !handedOut[p] {
			handedOut[p] = true
			ports = append(ports, p)
		}
	}
	return ports[0], ports[1]
}

// FreePort returns a loopback port that is free now, for tests that restart a
// node on a new port.
func FreePort(t TB) int {
	t.Helper()
	p, _ := freePorts(t)
	return p
}

// Reads is the node's INFO stats total_reads_processed. Redis reads a
// pipelined batch in one read, so the difference across a run counts
// client round trips (the INFO itself is one more).
func Reads(ctx context.Context, addr string) (int64, error) {
	info, err := Do(ctx, addr, "INFO", "stats")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO stats has no total_reads_processed")
}
