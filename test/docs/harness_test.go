package docs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/internal/sidecarbin"
)

// The binaries under test, built once by TestMain as they ship.
var sidecarBin, echoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-docs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	// The examples are shell sessions: what a reader has.
	for _, tool := range []string{"bash", "curl", "sed", "grep", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "%s not found: run hack/install-redis.sh (installs redis-server, redis-cli and curl)\n", tool)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	if sidecarBin, err = sidecarbin.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	echoBin = filepath.Join(dir, "echo")
	if out, err := exec.Command("go", "build", "-o", echoBin, "github.com/gatehouse-dev/gatehouse/hack/echo").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build hack/echo: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// redisPassword is the password of every ACL user the examples name.
const redisPassword = "docs-test-password"

// backends are the Redis servers examples run against: started on first
// use, flushed between examples.
type backends struct {
	t          *testing.T
	users      []string
	standalone *redistest.Server
	cluster    *redistest.Cluster
}

func (b *backends) extra() []string {
	var lines []string
	for _, u := range b.users {
		lines = append(lines, "user "+u+" on >"+redisPassword+" ~* &* +@all")
	}
	return lines
}

func (b *backends) addrs(mode string) []string {
	switch mode {
	case "Standalone":
		if b.standalone == nil {
			b.standalone = redistest.StartStandalone(b.t, b.extra()...)
		}
		return []string{b.standalone.Addr()}
	case "Cluster":
		if b.cluster == nil {
			b.cluster = redistest.StartCluster(b.t, b.extra()...)
		}
		return b.cluster.Addrs()
	}
	return nil
}

// flush empties every server, so an example starts from nothing.
func (b *backends) flush() {
	b.t.Helper()
	var nodes []*redistest.Server
	if b.standalone != nil {
		nodes = append(nodes, b.standalone)
	}
	if b.cluster != nil {
		nodes = append(nodes, b.cluster.Primaries...)
	}
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := redistest.Do(ctx, n.Addr(), "FLUSHALL")
		cancel()
		if err != nil {
			b.t.Fatalf("flush %s: %v", n.Addr(), err)
		}
	}
}

// localize points a documented config at the test's Redis servers and
// returns it with the environment its passwordEnv variables need.
func (b *backends) localize(t *testing.T, doc []byte) ([]byte, []string) {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal(doc, &raw); err != nil {
		t.Fatalf("example is not JSON: %v", err)
	}
	var env []string
	conns, _ := raw["redis"].([]any)
	for _, c := range conns {
		conn, _ := c.(map[string]any)
		mode, _ := conn["mode"].(string)
		if a := b.addrs(mode); a != nil {
			conn["addrs"] = a
		}
		if v, _ := conn["passwordEnv"].(string); v != "" {
			env = append(env, v+"="+redisPassword)
		}
	}
	out, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out, env
}

// usernames lists the ACL users a config's connections log in as.
func usernames(doc []byte) []string {
	var c struct {
		Redis []struct{ Username string } `json:"redis"`
	}
	_ = json.Unmarshal(doc, &c)
	var out []string
	for _, r := range c.Redis {
		if r.Username != "" {
			out = append(out, r.Username)
		}
	}
	return out
}

// process is a binary the harness started; it is killed at test end.
type process struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

func start(t *testing.T, env []string, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// sidecar is one running gatehouse-sidecar with its echo app.
type sidecar struct {
	data, admin string
	proc        *process
}

func freeAddr(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
}

// startSidecar runs the real binary with config (nil: a config path that
// does not exist) and labels, in front of a fresh echo app, and waits until
// it has loaded the config (or, without one, answers).
func startSidecar(t *testing.T, config []byte, env []string, labels string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	appAddr := freeAddr(t)
	start(t, nil, echoBin, "--listen", appAddr)
	s := &sidecar{data: freeAddr(t), admin: freeAddr(t)}
	cfg := filepath.Join(dir, "gatehouse.json")
	if config != nil {
		if err := os.WriteFile(cfg, config, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"--config", cfg, "--upstream", "http://" + appAddr, "--listen", s.data, "--admin-listen", s.admin}
	if labels != "" {
		lf := filepath.Join(dir, "labels")
		var lines []string
		for kv := range strings.SplitSeq(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			lines = append(lines, fmt.Sprintf("%s=%q", k, v))
		}
		if err := os.WriteFile(lf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--pod-labels", lf)
	}
	s.proc = start(t, env, sidecarBin, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sidecar log:\n%s", s.proc.log.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		loaded, lastErr, err := s.readyz()
		if err == nil && (loaded || config == nil) {
			return s
		}
		if err == nil {
			err = errors.New(lastErr)
		}
		select {
		case <-s.proc.done:
			t.Fatalf("sidecar exited:\n%s", s.proc.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar never loaded its config (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readyz reports what /readyz says of the config: whether one is loaded
// and the last error loading it; err while the sidecar does not answer.
func (s *sidecar) readyz() (loaded bool, lastError string, err error) {
	resp, err := http.Get("http://" + s.admin + "/readyz")
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	var rd struct {
		Config struct {
			Loaded    bool   `json:"loaded"`
			LastError string `json:"lastError"`
		} `json:"config"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rd); err != nil {
		return false, "", err
	}
	return rd.Config.Loaded, rd.Config.LastError, nil
}

// recordSep marks the start of each command's output in a run's transcript.
const recordSep = "\x1e"

// runSteps runs the commands in one bash shell against s and returns what
// each printed.
func runSteps(t *testing.T, s *sidecar, ss []step) []string {
	t.Helper()
	var script strings.Builder
	script.WriteString("exec 2>&1\n")
	// The page's commands talk to a sidecar started by hand; this one
	// listens elsewhere.
	var connect []string
	for doc, real := range map[string]string{"8080": s.data, "9901": s.admin} {
		for _, host := range []string{"localhost", "127.0.0.1"} {
			connect = append(connect, "--connect-to "+host+":"+doc+":"+real)
		}
	}
	sort.Strings(connect)
	fmt.Fprintf(&script, "curl() { command curl --max-time 20 %s \"$@\"; }\n", strings.Join(connect, " "))
	for i, st := range ss {
		fmt.Fprintf(&script, "printf '\\n%s%d\\n'\n%s\n", recordSep, i, st.command)
	}
	fmt.Fprintf(&script, "printf '\\n%s%d\\n'\n", recordSep, len(ss))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir, "LC_ALL=C.UTF-8"}
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	outputs := make([]string, len(ss))
	for i := range ss {
		_, rest, ok := strings.Cut(string(out), "\n"+recordSep+strconv.Itoa(i)+"\n")
		if !ok {
			t.Fatalf("transcript lost command %d:\n%s", i, out)
		}
		before, _, _ := strings.Cut(rest, "\n"+recordSep+strconv.Itoa(i+1)+"\n")
		outputs[i] = before
	}
	return outputs
}
