package redisconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
)

// The password reaches redis-server through an included file, the way the
// RedisCluster StatefulSet starts it (redis.conf, then --include of the auth
// Secret's file). A real redis-server must then refuse unauthenticated
// clients, accept the exact password whatever bytes it holds, and its
// command line must not contain it.
func TestAuthConfWithRealRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (run hack/install-redis.sh): %v", err)
	}
	for _, password := range []string{
		"u5k2Qp0cYl1M-generated_URLsafe",
		`with space "quotes" and \backslash`,
		"new\nline\ttab",
		"ünïcödé-€",
		`trailing-backslash\`,
	} {
		t.Run(strconv.Quote(password), func(t *testing.T) {
			dir := t.TempDir()
			port := redistest.FreePort(t)
			conf := filepath.Join(dir, "redis.conf")
			auth := filepath.Join(dir, "auth.conf")
			writeFile(t, conf, "bind 127.0.0.1\nport "+strconv.Itoa(port)+"\ndir "+dir+"\nsave \"\"\nappendonly no\n")
			writeFile(t, auth, AuthConf(password))
			cmd := exec.Command(bin, conf, "--include", auth)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

			addr := "127.0.0.1:" + strconv.Itoa(port)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var reply string
			for ctx.Err() == nil {
				if reply, err = redistest.Do(ctx, addr, "PING"); err == nil || strings.Contains(err.Error(), "NOAUTH") {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Fatalf("unauthenticated PING = %q, %v; want NOAUTH", reply, err)
			}
			c := redis.NewClient(&redis.Options{Addr: addr, Password: password})
			defer func() { _ = c.Close() }()
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatalf("PING with the password: %v", err)
			}
			got, err := c.ConfigGet(ctx, "masterauth").Result()
			if err != nil || got["masterauth"] != password {
				t.Errorf("masterauth = %q (%v), want the password", got["masterauth"], err)
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(cmdline), password) {
				t.Errorf("the password is on redis-server's command line: %q", cmdline)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":  `"plain"`,
		`a"b\c`:  `"a\"b\\c"`,
		"x\ny":   `"x\x0ay"`,
		"é":      `"\xc3\xa9"`,
		"":       `""`,
		"sp ace": `"sp ace"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
