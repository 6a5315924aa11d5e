package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/clitest"
	"github.com/gatehouse-dev/gatehouse/internal/sidecarbin"
	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// sidecarBinary builds gatehouse-sidecar once per test run, as it ships.
func sidecarBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-sidecar-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath, buildErr = sidecarbin.Build(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runBinary runs the real binary with args, as clitest.Run does.
func runBinary(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return clitest.Run(t, sidecarBinary(t), nil, args...)
}

// TestHelpExitsZero: asking for help is not an error. Like every Go tool
// (the flag package's ExitOnError), -h and --help print the usage and exit
// 0; a command line that does not parse exits 2 with the error and the
// usage on stderr. Before, --help exited 1.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-help", "-h", "--h"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runBinary(t, arg)
			if code != 0 {
				t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: gatehouse-sidecar") {
				t.Errorf("stdout does not start with the usage:\n%s", stdout)
			}
			for _, name := range helpFlags(t, stdout) {
				if !strings.Contains(stdout, contract.Env(name)) {
					t.Errorf("help of --%s does not name its environment variable %s", name, contract.Env(name))
				}
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
		})
	}
	// Help wins over a missing --config, which is otherwise required.
	if code, _, _ := runBinary(t, "--listen", ":1", "--help"); code != 0 {
		t.Errorf("--listen :1 --help: exit status %d, want 0", code)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{nil, "--config (or GATEHOUSE_CONFIG) is required"},
		{[]string{"--config", "c.json", "extra"}, "unexpected arguments"},
		{[]string{"--config", "c.json", "--drain-timeout", "soon"}, "invalid value"},
	} {
		code, stdout, stderr := runBinary(t, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "Usage: gatehouse-sidecar") || stdout != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and %q with the usage on stderr", tt.args, code, stderr, stdout, tt.want)
		}
	}
}

// helpFlags lists the flag names the usage text shows.
func helpFlags(t *testing.T, usage string) []string {
	t.Helper()
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(usage, -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("no flags in the usage:\n%s", usage)
	}
	return names
}

// TestEveryFlagIsDocumented reads the command-line table of
// docs/sidecar-config.md and the real binary's --help: every flag the
// binary has is a row with its environment variable and its default, and
// every row is a flag the binary has.
func TestEveryFlagIsDocumented(t *testing.T) {
	_, usage, _ := runBinary(t, "--help")
	documented := clitest.CommandLineTable(t, "../../docs/sidecar-config.md")
	var f contract.Flags
	fs := newFlagSet()
	_ = f.Bind(fs, func(string) string { return "" })
	for _, name := range helpFlags(t, usage) {
		d, ok := documented[name]
		if !ok {
			t.Errorf("--%s is in --help but not in docs/sidecar-config.md's command-line table", name)
			continue
		}
		delete(documented, name)
		if len(d) < 2 {
			t.Errorf("--%s: its row in docs/sidecar-config.md lacks the environment variable or the default", name)
			continue
		}
		if d[0] != "`"+contract.Env(name)+"`" {
			t.Errorf("--%s: documented env %s, the binary reads %s", name, d[0], contract.Env(name))
		}
		want := fs.Lookup(name).DefValue
		if shown, ok := clitest.Default(helpLine(usage, name)); ok && shown != want {
			t.Errorf("--%s: --help shows default %q, the flag has %q", name, shown, want)
		}
		if !defaultMatches(d[1], want) {
			t.Errorf("--%s: documented default %q, the binary's is %q", name, d[1], want)
		}
	}
	for name := range documented {
		t.Errorf("docs/sidecar-config.md documents --%s, which the binary does not have", name)
	}
}

// helpLine is the usage text of one flag (its two lines joined).
func helpLine(usage, name string) string {
	_, rest, _ := strings.Cut(usage, "  -"+name+" ")
	if rest == "" {
		_, rest, _ = strings.Cut(usage, "  -"+name+"\n")
	}
	first, second, _ := strings.Cut(rest, "\n")
	second, _, _ = strings.Cut(second, "\n")
	return first + " " + second
}

// defaultMatches compares a documented default cell with a flag's default:
// the cell starts with the value in backquotes, or says there is none.
func defaultMatches(cell, def string) bool {
	switch def {
	case "", "false", "0s":
		if strings.HasPrefix(cell, "required") || strings.HasPrefix(cell, "none") || strings.HasPrefix(cell, "(off)") {
			return true
		}
	}
	return strings.HasPrefix(cell, "`"+def+"`")
}
