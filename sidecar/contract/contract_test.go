package contract

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// parse is what cmd/sidecar does with a command line.
func parse(t *testing.T, args []string, env map[string]string) Flags {
	t.Helper()
	var f Flags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := f.Bind(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return f
}

// The webhook injects Args of a Flags value; the sidecar must read back
// exactly that value, or an injected pod runs with settings nobody chose
// (or crash-loops on an unknown flag).
func TestArgsRoundTrip(t *testing.T) {
	for _, want := range []Flags{
		{
			Config: ConfigFile, PodLabels: LabelsFile, Listen: ":15080", Upstream: "http://127.0.0.1:8080",
			AdminListen: UnixPrefix + AdminSocket, StatusListen: ":9902", LogLevel: "debug",
			DrainTimeout: 45 * time.Second, UpstreamHeaderTimeout: 1500 * time.Millisecond,
			AllowEncodedSlash: true, AllowPathParameters: true,
		},
		{Config: "c.json", Listen: DefaultListen, Upstream: DefaultUpstream, AdminListen: LoopbackAdmin, LogLevel: "info", DrainTimeout: DefaultDrainTimeout},
	} {
		got := parse(t, want.Args(), nil)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Args %q parsed back (-want +got):\n%s", want.Args(), diff)
		}
	}
}

func TestArgsOmitUnset(t *testing.T) {
	got := Flags{Config: "/c.json", Listen: ":1"}.Args()
	if diff := cmp.Diff([]string{"--config=/c.json", "--listen=:1"}, got); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
}

func TestEnvFallbackAndPrecedence(t *testing.T) {
	env := map[string]string{"GATEHOUSE_ADMIN_LISTEN": "unix:/s", "GATEHOUSE_DRAIN_TIMEOUT": "5s", "GATEHOUSE_UPSTREAM_HEADER_TIMEOUT": "1m"}
	got := parse(t, []string{"--drain-timeout=2s"}, env)
	if got.AdminListen != "unix:/s" || got.DrainTimeout != 2*time.Second || got.UpstreamHeaderTimeout != time.Minute {
		t.Errorf("got %+v: want the env admin address and header timeout, and the flag's drain timeout", got)
	}
	var f Flags
	err := f.Bind(flag.NewFlagSet("test", flag.ContinueOnError), func(k string) string {
		return map[string]string{"GATEHOUSE_DRAIN_TIMEOUT": "soon"}[k]
	})
	if err == nil {
		t.Error("Bind accepted GATEHOUSE_DRAIN_TIMEOUT=soon")
	}
}

func TestEnv(t *testing.T) {
	if got := Env(FlagUpstreamHeaderTimeout); got != "GATEHOUSE_UPSTREAM_HEADER_TIMEOUT" {
		t.Errorf("Env = %q", got)
	}
}

func TestListen(t *testing.T) {
	for _, tt := range []struct{ addr, network, address string }{
		{"unix:/var/run/gatehouse/admin.sock", "unix", "/var/run/gatehouse/admin.sock"},
		{"127.0.0.1:9901", "tcp", "127.0.0.1:9901"},
		{":8080", "tcp", ":8080"},
		// Only the exact lower-case prefix names a socket; anything else is
		// left to net.Listen to refuse as a TCP address.
		{"UNIX:/x", "tcp", "UNIX:/x"},
	} {
		n, a := Listen(tt.addr)
		if n != tt.network || a != tt.address {
			t.Errorf("Listen(%q) = %q, %q; want %q, %q", tt.addr, n, a, tt.network, tt.address)
		}
	}
}
