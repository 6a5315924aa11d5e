package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestTranslateArg(t *testing.T) {
	d := &demo{ports: newPortMap()}
	// Fix the mapping so expectations are stable.
	d.ports.m = map[int]int{15080: 41000, 8080: 41001, 9901: 41002, 9902: 41003}
	mounts := []corev1.VolumeMount{
		{Name: "gatehouse-config", MountPath: "/etc/gatehouse/config"},
		{Name: "gatehouse-podinfo", MountPath: "/etc/gatehouse/podinfo"},
		{Name: "gatehouse-admin", MountPath: "/var/run/gatehouse"},
	}
	tests := []struct {
		arg, want string
	}{
		{"--config=/etc/gatehouse/config/config.json", "--config=/r/etc/gatehouse/config/config.json"},
		{"--pod-labels=/etc/gatehouse/podinfo/labels", "--pod-labels=/r/etc/gatehouse/podinfo/labels"},
		// A path that only shares a prefix with a mount is not under it.
		{"--config=/etc/gatehouse/configs/x.json", "--config=/etc/gatehouse/configs/x.json"},
		{"--listen=:15080", "--listen=127.0.0.1:41000"},
		{"--status-listen=0.0.0.0:9902", "--status-listen=127.0.0.1:41003"},
		{"--admin-listen=127.0.0.1:9901", "--admin-listen=127.0.0.1:41002"},
		{"--admin-listen=unix:/var/run/gatehouse/admin.sock", "--admin-listen=unix:/r/var/run/gatehouse/admin.sock"},
		{"--admin-listen=unix:/elsewhere/admin.sock", "--admin-listen=unix:/elsewhere/admin.sock"},
		{"--upstream=http://127.0.0.1:8080", "--upstream=http://127.0.0.1:41001"},
		{"--upstream=http://127.0.0.1:8080/base", "--upstream=http://127.0.0.1:41001/base"},
		{"--log-level=info", "--log-level=info"},
		{"--drain-timeout=30s", "--drain-timeout=30s"},
		{"positional", "positional"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			if got := d.translateArg(tt.arg, "/r", mounts); got != tt.want {
				t.Errorf("translateArg(%q) = %q, want %q", tt.arg, got, tt.want)
			}
		})
	}
	if _, ok := d.ports.m[30]; ok {
		t.Errorf("a non-port value was allocated a port: %v", d.ports.m)
	}
}

func TestNodeConfig(t *testing.T) {
	conf := "port 6379\ndir /data\ncluster-enabled yes\ncluster-port 16379\nmaxmemory 2gb\nsave 900 1\nsave 300 10\n"
	n := &redisNode{name: "shop-redis-0", port: 7001, bus: 17001, dir: "/tmp/x"}
	got := nodeConfig(conf, n, "s3cret")
	var directives []string
	for line := range strings.Lines(got) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		directives = append(directives, line)
	}
	want := []string{
		"port 7001",
		"dir /tmp/x",
		"cluster-enabled yes",
		"cluster-port 17001",
		"maxmemory 2gb",
		"save 900 1",
		"save 300 10",
		"bind 127.0.0.1",
		"cluster-announce-hostname 127.0.0.1",
		"daemonize no",
		`logfile ""`,
		"requirepass s3cret",
		"masterauth s3cret",
	}
	if diff := cmp.Diff(want, directives); diff != "" {
		t.Errorf("nodeConfig directives (-want +got):\n%s", diff)
	}
}

func TestNodeConfigAddsMissingPorts(t *testing.T) {
	n := &redisNode{name: "n", port: 7001, bus: 17001, dir: "/d"}
	got := nodeConfig("cluster-enabled yes", n, "p")
	for _, want := range []string{"\nport 7001\n", "\ncluster-port 17001\n", "\ndir /d\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("nodeConfig without port lines lacks %q:\n%s", want, got)
		}
	}
}

func TestFormatMapIsDownwardAPIFormat(t *testing.T) {
	got := formatMap(map[string]string{"tier": "web", "app": "storefront", "q": `a "b"`})
	want := "app=\"storefront\"\nq=\"a \\\"b\\\"\"\ntier=\"web\""
	if got != want {
		t.Errorf("formatMap = %q, want %q", got, want)
	}
	for line := range strings.Lines(got) {
		_, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if _, err := strconv.Unquote(v); err != nil {
			t.Errorf("value %s is not a Go string literal: %v", v, err)
		}
	}
}

// TestPublishSwapsLikeTheKubelet checks the on-disk layout the sidecar's
// directory watch relies on: files are symlinks through ..data, each update
// lands in a new timestamped directory and the old one is removed.
func TestPublishSwapsLikeTheKubelet(t *testing.T) {
	dir := t.TempDir()
	s := &volumeSync{written: map[string]map[string][]byte{}}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if err := s.publish(dir, map[string][]byte{"config.json": []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	if err != nil {
		t.Fatalf("..data is not a symlink: %v", err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "config.json")); err != nil || link != "..data/config.json" {
		t.Fatalf("config.json links to %q (%v), want ..data/config.json", link, err)
	}
	if got := read(); got != "v1" {
		t.Fatalf("content %q, want v1", got)
	}

	if err := s.publish(dir, map[string][]byte{"config.json": []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	second, _ := os.Readlink(filepath.Join(dir, "..data"))
	if second == first {
		t.Fatalf("update reused the directory %s", first)
	}
	if got := read(); got != "v2" {
		t.Fatalf("content %q, want v2", got)
	}
	if _, err := os.Stat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Errorf("old directory %s still exists (%v)", first, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "..data_tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary link left behind (%v)", err)
	}

	// Unchanged content is not republished.
	if err := s.publish(dir, map[string][]byte{"config.json": []byte("v2")}); err != nil {
		t.Fatal(err)
	}
	if third, _ := os.Readlink(filepath.Join(dir, "..data")); third != second {
		t.Errorf("unchanged content moved ..data from %s to %s", second, third)
	}

	// A key that disappears (the optional ConfigMap deleted) loses its file.
	if err := s.publish(dir, map[string][]byte{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "config.json")); !os.IsNotExist(err) {
		t.Errorf("config.json still present after its key went away (%v)", err)
	}
}
