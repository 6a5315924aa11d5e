package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/clitest"
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

// TestHelpExitsZeroAndEveryFlagIsDocumented runs the real manager's --help:
// it prints the usage and exits 0 before touching any cluster (there is
// none), and every flag it lists is a row of docs/operator.md's
// command-line table with the default the binary prints, and the reverse.
func TestHelpExitsZeroAndEveryFlagIsDocumented(t *testing.T) {
	bin := buildManager(t)
	code, stdout, stderr := clitest.Run(t, bin, nil, "--help")
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

	documented := clitest.CommandLineTable(t, "../../docs/operator.md")
	for name, text := range help {
		cell, ok := documented[name]
		if !ok {
			t.Errorf("--%s is in --help but not in docs/operator.md", name)
			continue
		}
		if def, ok := clitest.Default(text); ok && (len(cell) == 0 || !strings.HasPrefix(cell[0], "`"+def+"`")) {
			t.Errorf("--%s: docs/operator.md says default %v, --help says %q", name, cell, def)
		}
	}
	for name := range documented {
		if _, ok := help[name]; !ok {
			t.Errorf("docs/operator.md documents --%s, which the manager does not have", name)
		}
	}

	// A flag that does not parse is a usage error: exit 2, as flag.ExitOnError.
	if code, _, stderr := clitest.Run(t, bin, nil, "--no-such-flag"); code != 2 || !strings.Contains(stderr, "flag provided but not defined") {
		t.Errorf("--no-such-flag: exit %d, stderr %q; want 2", code, stderr)
	}
}
