// Package clitest runs the project's real binaries as a user at a shell
// does and reads the command-line tables of docs/, so that the tests of
// cmd/manager and cmd/sidecar check --help, exit statuses and the
// documented flags the same way.
package clitest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Run runs bin with args in env (nil: PATH and a fresh HOME only, so no
// kubeconfig or GATEHOUSE_* variable of the developer's leaks in) and
// returns its exit status and output. A binary that cannot be started
// fails t.
func Run(t testing.TB, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if env == nil {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return code, out.String(), errOut.String()
}

var flagRow = regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|(.*)\\|\\s*$")

// CommandLineTable reads the table under the "## Command line" heading of
// the Markdown file at path: each row whose first cell is `--flag` gives
// the flag's name and its other cells, trimmed.
func CommandLineTable(t testing.TB, path string) map[string][]string {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Command line")
	if !ok {
		t.Fatalf("%s has no Command line section", path)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next]
	}
	rows := map[string][]string{}
	for _, m := range flagRow.FindAllStringSubmatch(section, -1) {
		cells := strings.Split(m[2], "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[m[1]] = cells
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no `--flag` rows under Command line", path)
	}
	return rows
}

// Default is the default the flag package prints at the end of a flag's
// help line: (default ":8080"), (default 30s); ok is false without one.
func Default(helpLine string) (value string, ok bool) {
	m := defaultSuffix.FindStringSubmatch(helpLine)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var defaultSuffix = regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
