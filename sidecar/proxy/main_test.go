package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// helperEnv names the role this test binary plays when a benchmark starts
// it as a process of its own: the app behind the proxy, or the load in
// front of it, so that the benchmark's process is the proxy alone (as in
// make bench, where each runs in its own process).
const helperEnv = "GATEHOUSE_BENCH_HELPER"

const (
	helperApp  = "app"
	helperLoad = "load"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case helperApp:
		os.Exit(serveBenchApp())
	case helperLoad:
		os.Exit(runBenchLoad())
	}
	os.Exit(m.Run())
}

// cpuPath is the app helper's path that answers with its process CPU time.
const cpuPath = "/.cpu"

// serveBenchApp answers every request with 1 KiB until stdin closes, and
// cpuPath with its process CPU time in nanoseconds.
func serveBenchApp() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	body := bytes.Repeat([]byte("x"), 1024)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == cpuPath {
			_, _ = io.WriteString(w, strconv.FormatInt(processCPU(), 10))
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Printf("ADDR %s\n", l.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// runBenchLoad runs load with the arguments in its environment once a line
// arrives on stdin, and prints how long it took.
func runBenchLoad() int {
	env := func(k string) string { return os.Getenv(helperEnv + "_" + k) }
	conns, _ := strconv.Atoi(env("CONNS"))
	n, _ := strconv.Atoi(env("N"))
	fmt.Println("READY")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cpu0 := processCPU()
	took, err := load(loadSpec{addr: env("ADDR"), path: env("PATH"), unique: env("UNIQUE") != "",
		header: env("HEADER"), conns: conns, n: n, want: env("WANT")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("DONE %d %d\n", took.Nanoseconds(), processCPU()-cpu0)
	return 0
}

// helper is a helper process and the address it printed, if any.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	addr  string
}

func startHelper(b *testing.B, role string, env ...string) *helper {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	if role == helperApp {
		h.addr = strings.TrimPrefix(h.line(b), "ADDR ")
	}
	return h
}

func (h *helper) line(b *testing.B) string {
	b.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		b.Fatalf("helper process: %v", err)
	}
	return strings.TrimSpace(s)
}

// runLoad runs l from a load process of its own (load) and returns how
// long it took and the CPU the load process spent; the benchmark's timer
// runs only meanwhile.
func runLoad(b *testing.B, l loadSpec) (took time.Duration, cpu int64) {
	b.Helper()
	b.StopTimer()
	env := []string{helperEnv + "_ADDR=" + l.addr, helperEnv + "_PATH=" + l.path, helperEnv + "_HEADER=" + l.header,
		helperEnv + "_CONNS=" + strconv.Itoa(l.conns), helperEnv + "_N=" + strconv.Itoa(l.n), helperEnv + "_WANT=" + l.want}
	if l.unique {
		env = append(env, helperEnv+"_UNIQUE=1")
	}
	h := startHelper(b, helperLoad, env...)
	if got := h.line(b); got != "READY" {
		b.Fatalf("load process: %q", got)
	}
	b.StartTimer()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	done := h.line(b)
	b.StopTimer()
	var ns int64
	if _, err := fmt.Sscanf(done, "DONE %d %d", &ns, &cpu); err != nil {
		b.Fatalf("load process: %q: %v", done, err)
	}
	return time.Duration(ns), cpu
}

// appCPU is the app helper's process CPU time in nanoseconds.
func (h *helper) appCPU(b *testing.B) int64 {
	b.Helper()
	resp, err := http.Get("http://" + h.addr + cpuPath)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n, err := strconv.ParseInt(string(body), 10, 64)
	if err != nil {
		b.Fatalf("app CPU %q: %v", body, err)
	}
	return n
}

// loadSpec is what load sends: n GET requests for path (with a number of
// its own appended to each when unique, so that each misses the cache) to
// addr, with header (a raw header line) if set, over conns connections; the
// head of every answer must contain want.
type loadSpec struct {
	addr, path, header string
	unique             bool
	conns, n           int
	want               string
}

// load sends l's requests over l.conns keep-alive connections, as wrk
// does: each connection sends its next request as soon as it has read the
// answer, which must be a 200. It parses no more of the answer than it
// must.
func load(l loadSpec) (time.Duration, error) {
	head := " HTTP/1.1\r\nHost: " + l.addr + "\r\nUser-Agent: load\r\n"
	if l.header != "" {
		head += l.header + "\r\n"
	}
	head += "\r\n"
	req := []byte("GET " + l.path + head)
	cs := make([]net.Conn, l.conns)
	for i := range cs {
		c, err := net.Dial("tcp", l.addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		cs[i] = c
	}
	var left atomic.Int64
	left.Store(int64(l.n))
	var wg sync.WaitGroup
	errs := make(chan error, l.conns)
	start := time.Now()
	for _, c := range cs {
		wg.Go(func() {
			br := bufio.NewReaderSize(c, 16<<10)
			for {
				i := left.Add(-1)
				if i < 0 {
					return
				}
				r := req
				if l.unique {
					r = []byte("GET " + l.path + strconv.FormatInt(i, 10) + head)
				}
				if _, err := c.Write(r); err != nil {
					errs <- err
					return
				}
				if err := readAnswer(br, l.want); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	return took, <-errs
}

// readAnswer reads one HTTP/1.1 answer with a Content-Length body.
func readAnswer(br *bufio.Reader, want string) error {
	n := -1
	found := want == ""
	var status []byte
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first && !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("answer %q", line)
		}
		if len(line) <= 2 {
			break
		}
		if bytes.HasPrefix(line, []byte("Cache-Status: ")) {
			status = append(status[:0], bytes.TrimSpace(line)...)
		}
		if !found && bytes.Contains(line, []byte(want)) {
			found = true
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 || !found {
		return fmt.Errorf("answer without Content-Length or %q (%s)", want, status)
	}
	_, err := br.Discard(n)
	return err
}
