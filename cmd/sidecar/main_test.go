package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/internal/redistest"
	"github.com/gatehouse-dev/gatehouse/sidecar/config"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    contract.Flags
		wantErr string
	}{
		{
			name: "defaults",
			args: []string{"--config", "c.json"},
			want: contract.Flags{Config: "c.json", Listen: ":8080", Upstream: "http://127.0.0.1:8081", UpstreamProtocol: "http1", AdminListen: "127.0.0.1:9901", LogLevel: "info", DrainTimeout: 30 * time.Second},
		},
		{
			name: "environment fallbacks",
			env: map[string]string{
				"GATEHOUSE_CONFIG": "/etc/gatehouse/config.json", "GATEHOUSE_LISTEN": ":9000", "GATEHOUSE_UPSTREAM": "http://127.0.0.1:3000",
				"GATEHOUSE_ADMIN_LISTEN": "unix:/run/admin.sock", "GATEHOUSE_POD_LABELS": "/etc/podinfo/labels", "GATEHOUSE_LOG_LEVEL": "debug",
				"GATEHOUSE_DRAIN_TIMEOUT": "5s", "GATEHOUSE_UPSTREAM_HEADER_TIMEOUT": "1m", "GATEHOUSE_STATUS_LISTEN": ":9902",
				"GATEHOUSE_UPSTREAM_PROTOCOL": "h2c",
			},
			want: contract.Flags{Config: "/etc/gatehouse/config.json", Listen: ":9000", Upstream: "http://127.0.0.1:3000", UpstreamProtocol: "h2c", AdminListen: "unix:/run/admin.sock",
				StatusListen: ":9902", PodLabels: "/etc/podinfo/labels", LogLevel: "debug", DrainTimeout: 5 * time.Second, UpstreamHeaderTimeout: time.Minute},
		},
		{
			name: "flags win over environment",
			args: []string{"--config", "flag.json", "--drain-timeout", "2s"},
			env:  map[string]string{"GATEHOUSE_CONFIG": "env.json", "GATEHOUSE_DRAIN_TIMEOUT": "5s"},
			want: contract.Flags{Config: "flag.json", Listen: ":8080", Upstream: "http://127.0.0.1:8081", UpstreamProtocol: "http1", AdminListen: "127.0.0.1:9901", LogLevel: "info", DrainTimeout: 2 * time.Second},
		},
		{
			name: "path exceptions",
			args: []string{"--config", "c.json", "--allow-encoded-slash"},
			env:  map[string]string{"GATEHOUSE_ALLOW_PATH_PARAMETERS": "true"},
			want: contract.Flags{Config: "c.json", Listen: ":8080", Upstream: "http://127.0.0.1:8081", UpstreamProtocol: "http1", AdminListen: "127.0.0.1:9901", LogLevel: "info",
				DrainTimeout: 30 * time.Second, AllowEncodedSlash: true, AllowPathParameters: true},
		},
		{name: "bad env bool", args: []string{"--config", "c"}, env: map[string]string{"GATEHOUSE_ALLOW_ENCODED_SLASH": "sometimes"}, wantErr: "GATEHOUSE_ALLOW_ENCODED_SLASH"},
		{name: "unknown upstream protocol", args: []string{"--config", "c", "--upstream-protocol", "http2"}, wantErr: "--upstream-protocol"},
		{name: "config required", wantErr: "--config"},
		{name: "bad env duration", args: []string{"--config", "c"}, env: map[string]string{"GATEHOUSE_DRAIN_TIMEOUT": "soon"}, wantErr: "GATEHOUSE_DRAIN_TIMEOUT"},
		{name: "stray argument", args: []string{"--config", "c", "extra"}, wantErr: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseFlags (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBinaryWithoutKubernetes runs the real binary the way a developer would
// in front of a local app: a config file, no labels, SIGTERM to stop. A
// request in flight at SIGTERM still completes with 200.
func TestBinaryWithoutKubernetes(t *testing.T) {
	bin := sidecarBinary(t)

	var slowIn atomic.Int64
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			slowIn.Add(1)
			<-release
		}
		fmt.Fprintf(w, "subject=%q ip=%s", r.Header.Get("X-Gatehouse-Subject"), r.Header.Get("X-Gatehouse-Client-Ip"))
	}))
	defer app.Close()
	defer close(release)

	cfgPath := filepath.Join(t.TempDir(), "config.json")
	doc := fmt.Sprintf(`{"apiVersion":%q,"kind":%q}`, config.APIVersion, config.Kind)
	if err := os.WriteFile(cfgPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	dataAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(bin, "--config", cfgPath, "--upstream", app.URL, "--listen", dataAddr, "--admin-listen", adminAddr, "--drain-timeout", "20s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	logs := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		logs <- lines
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar never became ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+dataAddr+"/hello", nil)
	req.Header.Set("X-Gatehouse-Subject", "forged")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `subject="" ip=127.0.0.1`; resp.StatusCode != 200 || string(body) != want {
		t.Errorf("GET /hello = %d %q, want 200 %q", resp.StatusCode, body, want)
	}

	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + dataAddr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	for slowIn.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait until the sidecar refuses new connections, then let the app answer.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("tcp", dataAddr)
		if err != nil {
			break
		}
		c.Close()
		if ctx.Err() != nil {
			t.Fatal("data listener still accepting after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	release <- struct{}{}
	if code := <-slow; code != http.StatusOK {
		t.Errorf("in-flight request at SIGTERM = %d, want 200", code)
	}
	lines := <-logs
	if err := <-exited; err != nil {
		t.Errorf("sidecar exit: %v\n%s", err, strings.Join(lines, "\n"))
	}
	// Logs are JSON, one object per line.
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") {
			t.Errorf("non-JSON log line: %s", l)
		}
	}
}
