package contract

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
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
			Config: ConfigFile, PodLabels: LabelsFile, Listen: ":15080", Upstream: "http://127.0.0.1:8080", UpstreamProtocol: UpstreamH2C,
			AdminListen: UnixPrefix + AdminSocket, StatusListen: ":9902", LogLevel: "debug",
			DrainTimeout: 45 * time.Second, UpstreamHeaderTimeout: 1500 * time.Millisecond,
			AllowEncodedSlash: true, AllowPathParameters: true,
			TrustedProxies: []string{"10.0.0.0/8", "192.168.1.10"}, WriteTimeout: time.Minute, BodyReadTimeout: 2 * time.Minute,
		},
		{Config: "c.json", Listen: DefaultListen, Upstream: DefaultUpstream, UpstreamProtocol: UpstreamHTTP1, AdminListen: LoopbackAdmin, LogLevel: "info", DrainTimeout: DefaultDrainTimeout},
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

// A sidecar given no protocol speaks HTTP/1.1 to the app, as every sidecar
// did before h2c existed: pods injected by an older webhook keep working.
func TestUpstreamProtocolDefaultsToHTTP1(t *testing.T) {
	if got := parse(t, nil, nil).UpstreamProtocol; got != UpstreamHTTP1 {
		t.Errorf("default upstream protocol %q, want %q", got, UpstreamHTTP1)
	}
	if got := parse(t, nil, map[string]string{"GATEHOUSE_UPSTREAM_PROTOCOL": "h2c"}).UpstreamProtocol; got != UpstreamH2C {
		t.Errorf("GATEHOUSE_UPSTREAM_PROTOCOL=h2c gave %q", got)
	}
	for p, want := range map[string]bool{"http1": true, "h2c": true, "": false, "H2C": false, "http2": false, "grpc": false} {
		if got := ValidUpstreamProtocol(p); got != want {
			t.Errorf("ValidUpstreamProtocol(%q) = %v", p, got)
		}
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

// A list flag is comma-separated wherever it comes from; spaces around the
// items (as an annotation may carry them) do not count, and a later use
// replaces an earlier one rather than adding to it.
func TestTrustedProxiesList(t *testing.T) {
	got := parse(t, []string{"--trusted-proxies= 10.0.0.0/8 , fd00::/8,"}, nil)
	if diff := cmp.Diff([]string{"10.0.0.0/8", "fd00::/8"}, got.TrustedProxies); diff != "" {
		t.Errorf("flag (-want +got):\n%s", diff)
	}
	got = parse(t, nil, map[string]string{"GATEHOUSE_TRUSTED_PROXIES": "192.168.0.0/16"})
	if diff := cmp.Diff([]string{"192.168.0.0/16"}, got.TrustedProxies); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	got = parse(t, []string{"--trusted-proxies=10.0.0.1"}, map[string]string{"GATEHOUSE_TRUSTED_PROXIES": "192.168.0.0/16"})
	if diff := cmp.Diff([]string{"10.0.0.1"}, got.TrustedProxies); diff != "" {
		t.Errorf("flag over env (-want +got):\n%s", diff)
	}
	if got := parse(t, nil, nil); got.TrustedProxies != nil {
		t.Errorf("unset = %q, want nil (the document's list stays)", got.TrustedProxies)
	}
}

func TestParse(t *testing.T) {
	f, err := Parse([]string{"--write-timeout=90s", "--allow-encoded-slash=true"})
	if err != nil {
		t.Fatal(err)
	}
	if f.WriteTimeout != 90*time.Second || !f.AllowEncodedSlash || f.Listen != DefaultListen {
		t.Errorf("Parse = %+v", f)
	}
	for _, bad := range [][]string{{"--write-timeout=soon"}, {"--allow-path-parameters=maybe"}, {"--no-such-flag"}, {"stray"}} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestProxySettings(t *testing.T) {
	f := Flags{TrustedProxies: []string{"10.0.0.0/8"}, BodyReadTimeout: time.Minute}
	want := config.Proxy{TrustedProxies: []string{"10.0.0.0/8"}, BodyReadTimeout: config.Duration(time.Minute)}
	if diff := cmp.Diff(want, f.Proxy()); diff != "" {
		t.Errorf("Proxy (-want +got):\n%s", diff)
	}
}
