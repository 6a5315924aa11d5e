package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// shortDir is a directory whose socket paths fit sun_path (108 bytes);
// t.TempDir paths of long test names may not.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// staleSocket leaves a socket file behind as a killed sidecar would.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
}

func TestListenAdminUnixSocket(t *testing.T) {
	t.Run("usable by any user, replaces a stale socket, removed on close", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "admin.sock")
		staleSocket(t, path)
		l, err := listenAdmin("unix:" + path)
		if err != nil {
			t.Fatalf("a stale socket was not replaced: %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
			t.Errorf("socket mode = %v, want a socket with 0666 (the app container may run as any UID)", fi.Mode())
		}
		go func() {
			c, err := l.Accept()
			if err == nil {
				_, _ = c.Write([]byte("hi"))
				c.Close()
			}
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if string(b) != "hi" {
			t.Errorf("read %q over the socket", b)
		}
		l.Close()
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("socket file left after close: %v", err)
		}
	})
	t.Run("refuses a socket another process serves", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "admin.sock")
		live, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		if l, err := listenAdmin("unix:" + path); err == nil {
			l.Close()
			t.Fatal("took over a live socket")
		}
	})
	t.Run("refuses to replace a file that is not a socket", func(t *testing.T) {
		path := filepath.Join(shortDir(t), "admin.sock")
		if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		if l, err := listenAdmin("unix:" + path); err == nil {
			l.Close()
			t.Fatal("replaced a regular file")
		}
		if b, _ := os.ReadFile(path); string(b) != "keep me" {
			t.Error("the file was changed")
		}
	})
	t.Run("host:port is TCP", func(t *testing.T) {
		l, err := listenAdmin("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.Addr().Network() != "tcp" {
			t.Errorf("network = %s", l.Addr().Network())
		}
	})
}

// TestBinaryServesAdminOnUnixSocket runs the real binary as the webhook
// injects it (--admin-listen=unix:…/admin.sock) over a stale socket file:
// the admin API answers on the socket and the socket is gone after SIGTERM.
func TestBinaryServesAdminOnUnixSocket(t *testing.T) {
	bin := sidecarBinary(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "admin.sock")
	staleSocket(t, sock)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`{"apiVersion":%q,"kind":%q}`, config.APIVersion, config.Kind)), 0o644); err != nil {
		t.Fatal(err)
	}
	dataAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(bin, "--config", cfgPath, "--upstream", "http://127.0.0.1:1", "--listen", dataAddr, "--admin-listen", "unix:"+sock)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	logs := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(bufio.NewReader(stderr))
		logs <- string(b)
	}()

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://sidecar/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API never answered on %s: %v", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, <-logs)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after exit: %v", err)
	}
	if l := <-logs; !strings.Contains(l, sock) {
		t.Errorf("logs do not name the socket:\n%s", l)
	}
}
