// Package sidecarbin builds the gatehouse-sidecar binary for the suites
// that run it as a real process (test/reliability, test/grpc): signals,
// file descriptors and the config watcher are exercised as they ship.
package sidecarbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles cmd/sidecar into dir, as the image builds it (CGO off,
// trimmed paths), with the go command on PATH, and returns its path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "gatehouse-sidecar")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/gatehouse-dev/gatehouse/cmd/sidecar")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build gatehouse-sidecar: %w\n%s", err, out)
	}
	return bin, nil
}

// Main is a suite's TestMain: it builds the binary into a temporary
// directory, points *bin at it, runs the tests and exits with their code.
func Main(m *testing.M, bin *string) {
	dir, err := os.MkdirTemp("", "gatehouse-sidecar-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		os.Exit(1)
	}
	if *bin, err = Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
