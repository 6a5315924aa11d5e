package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildManager builds the real manager binary.
func buildManager(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "manager")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runManager runs bin with args and an environment of PATH alone (no
// kubeconfig, no POD_NAMESPACE).
func runManager(t *testing.T, bin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("run manager %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// TestHelpExitsZeroAndEveryFlagIsDocumented runs the real manager's --help:
// it prints the usage and exits 0 before touching any cluster (there is
// none), and every flag it lists is a row of docs/operator.md's
// command-line table with the default the binary prints, and the reverse.
func TestHelpExitsZeroAndEveryFlagIsDocumented(t *testing.T) {
	bin := buildManager(t)
	code, stdout, stderr := runManager(t, bin, "--help")
	if code != 0 {
		t.Fatalf("--help: exit status %d, want 0\n%s%s", code, stdout, stderr)
	}
	usage := stdout + stderr
	if !strings.HasPrefix(usage, "Usage: manager") {
		t.Errorf("--help does not start with the usage:\n%s", usage)
	}
	help := map[string]string{}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)[^\n]*\n\s+([^\n]*)$`)
	for _, m := range flagLine.FindAllStringSubmatch(usage, -1) {
		help[m[1]] = m[2]
	}
	if len(help) < 10 {
		t.Fatalf("only %d flags in --help:\n%s", len(help), usage)
	}

	doc, err := os.ReadFile("../../docs/operator.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Command line")
	if !ok {
		t.Fatal("docs/operator.md has no Command line section")
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| ([^|]+) \\|").FindAllStringSubmatch(table, -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	deflt := regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
	for name, text := range help {
		cell, ok := documented[name]
		if !ok {
			t.Errorf("--%s is in --help but not in docs/operator.md", name)
			continue
		}
		if m := deflt.FindStringSubmatch(text); m != nil && !strings.HasPrefix(cell, "`"+m[1]+"`") {
			t.Errorf("--%s: docs/operator.md says default %s, --help says %q", name, cell, m[1])
		}
	}
	for name := range documented {
		if _, ok := help[name]; !ok {
			t.Errorf("docs/operator.md documents --%s, which the manager does not have", name)
		}
	}

	// A flag that does not parse is a usage error: exit 2, as flag.ExitOnError.
	if code, _, stderr := runManager(t, bin, "--no-such-flag"); code != 2 || !strings.Contains(stderr, "flag provided but not defined") {
		t.Errorf("--no-such-flag: exit %d, stderr %q; want 2", code, stderr)
	}
}
