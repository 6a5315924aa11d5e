package contract

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/config"
)

// Flags is the sidecar's command line. Every flag also reads an environment
// variable (Env of its name) when not given, so a container can be
// configured either way; a flag given on the command line wins.
type Flags struct {
	// Config is the configuration document (JSON).
	Config string
	// Listen is the proxy listen address.
	Listen string
	// Upstream is the app's base URL.
	Upstream string
	// UpstreamProtocol is how the sidecar speaks to the app:
	// UpstreamHTTP1 or UpstreamH2C.
	UpstreamProtocol string
	// AdminListen is the admin API's address: loopback TCP, or a Unix
	// socket written UnixPrefix+path.
	AdminListen string
	// StatusListen serves /healthz, /readyz and /metrics alone; empty
	// disables it.
	StatusListen string
	// PodLabels is the downward-API labels file; empty means no labels.
	PodLabels string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// DrainTimeout bounds how long in-flight requests may finish on SIGTERM.
	DrainTimeout time.Duration
	// UpstreamHeaderTimeout bounds the wait for the app's response
	// headers; zero means no limit.
	UpstreamHeaderTimeout time.Duration
	// AllowEncodedSlash keeps %2F inside path segments instead of refusing
	// the request (sidecar/request.Options).
	AllowEncodedSlash bool
	// AllowPathParameters keeps ";" path parameters instead of refusing the
	// request (sidecar/request.Options).
	AllowPathParameters bool
	// TrustedProxies, WriteTimeout and BodyReadTimeout are the proxy
	// settings of the command line: each one set overrides the document's
	// proxy section field (config.Proxy; see Proxy).
	TrustedProxies  []string
	WriteTimeout    time.Duration
	BodyReadTimeout time.Duration
}

// Flag names.
const (
	FlagConfig                = "config"
	FlagListen                = "listen"
	FlagUpstream              = "upstream"
	FlagUpstreamProtocol      = "upstream-protocol"
	FlagAdminListen           = "admin-listen"
	FlagStatusListen          = "status-listen"
	FlagPodLabels             = "pod-labels"
	FlagLogLevel              = "log-level"
	FlagDrainTimeout          = "drain-timeout"
	FlagUpstreamHeaderTimeout = "upstream-header-timeout"
	FlagAllowEncodedSlash     = "allow-encoded-slash"
	FlagAllowPathParameters   = "allow-path-parameters"
	FlagTrustedProxies        = "trusted-proxies"
	FlagWriteTimeout          = "write-timeout"
	FlagBodyReadTimeout       = "body-read-timeout"
)

// Env is the environment variable a flag falls back to: GATEHOUSE_ and the
// flag name in upper case with dashes as underscores.
func Env(flagName string) string {
	return "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Upstream protocols, the values of FlagUpstreamProtocol. The webhook
// derives one from the app's port (docs/injection.md).
const (
	// UpstreamHTTP1 is HTTP/1.1 to the app, the default.
	UpstreamHTTP1 = "http1"
	// UpstreamH2C is HTTP/2 over cleartext with prior knowledge (RFC 9113
	// §3.3), as gRPC servers and other h2c-only apps expect. Every request
	// goes to the app over HTTP/2, whichever protocol its client spoke.
	UpstreamH2C = "h2c"
)

// ValidUpstreamProtocol reports whether p is a value of
// FlagUpstreamProtocol.
func ValidUpstreamProtocol(p string) bool { return p == UpstreamHTTP1 || p == UpstreamH2C }

// DefaultDrainTimeout is the drain timeout when neither the flag nor its
// environment variable is set.
const DefaultDrainTimeout = 30 * time.Second

// flagSpec is one flag: its name, where its value lives, its default and
// its help. Bind and Args both walk the same list, so a flag cannot be
// parsed under one name and injected under another.
type flagSpec struct {
	name  string
	str   *string
	dur   *time.Duration
	bln   *bool
	list  *[]string
	def   string
	usage string
}

func (f *Flags) specs() []flagSpec {
	return []flagSpec{
		{name: FlagConfig, str: &f.Config, usage: "sidecar config file (JSON)"},
		{name: FlagPodLabels, str: &f.PodLabels, usage: "downward-API labels file; empty means no labels"},
		{name: FlagListen, str: &f.Listen, def: DefaultListen, usage: "data listen address"},
		{name: FlagUpstream, str: &f.Upstream, def: DefaultUpstream, usage: "app base URL"},
		{name: FlagUpstreamProtocol, str: &f.UpstreamProtocol, def: UpstreamHTTP1, usage: "protocol to the app: " + UpstreamHTTP1 + " (HTTP/1.1) or " + UpstreamH2C + " (HTTP/2 cleartext, for gRPC)"},
		{name: FlagAdminListen, str: &f.AdminListen, def: LoopbackAdmin, usage: "admin API listen address: loopback TCP, or a Unix socket as " + UnixPrefix + "/path"},
		{name: FlagStatusListen, str: &f.StatusListen, usage: fmt.Sprintf(
			"listen address of /healthz, /readyz and /metrics alone, for kubelet probes and Prometheus (e.g. :%d); empty disables", StatusPort)},
		{name: FlagLogLevel, str: &f.LogLevel, def: "info", usage: "debug, info, warn or error"},
		{name: FlagDrainTimeout, dur: &f.DrainTimeout, def: DefaultDrainTimeout.String(), usage: "how long in-flight requests may finish on SIGTERM"},
		{name: FlagUpstreamHeaderTimeout, dur: &f.UpstreamHeaderTimeout, def: "0s", usage: "max wait for the app's response headers, 0 = no limit"},
		{name: FlagAllowEncodedSlash, bln: &f.AllowEncodedSlash, def: "false", usage: "keep %2F inside path segments instead of refusing it (apps such as RabbitMQ's management API)"},
		{name: FlagAllowPathParameters, bln: &f.AllowPathParameters, def: "false", usage: "keep ';' path parameters instead of refusing them (Java apps with ;jsessionid URLs)"},
		{name: FlagTrustedProxies, list: &f.TrustedProxies, usage: "comma-separated `list` of CIDRs or addresses whose X-Forwarded-For is believed; replaces the config's proxy.trustedProxies"},
		{name: FlagWriteTimeout, dur: &f.WriteTimeout, def: "0s", usage: "bound on each write to the client; replaces the config's proxy.writeTimeout (0 = the config's, default 30s)"},
		{name: FlagBodyReadTimeout, dur: &f.BodyReadTimeout, def: "0s", usage: "bound on reading each 1 KiB of a request body; replaces the config's proxy.bodyReadTimeout (0 = the config's, default 30s)"},
	}
}

// Bind registers every flag on fs, with its environment variable (read
// through getenv) taking the place of the default. It fails only on an
// environment value that does not parse.
func (f *Flags) Bind(fs *flag.FlagSet, getenv func(string) string) error {
	for _, s := range f.specs() {
		env := Env(s.name)
		def := s.def
		if v := getenv(env); v != "" {
			def = v
		}
		usage := s.usage + "; env " + env
		if s.list != nil {
			*s.list = splitList(def)
			fs.Var((*listValue)(s.list), s.name, usage)
			continue
		}
		if s.str != nil {
			fs.StringVar(s.str, s.name, def, usage)
			continue
		}
		if s.bln != nil {
			b, err := strconv.ParseBool(def)
			if err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			fs.BoolVar(s.bln, s.name, b, usage)
			continue
		}
		d, err := time.ParseDuration(def)
		if err != nil {
			return fmt.Errorf("%s: %w", env, err)
		}
		fs.DurationVar(s.dur, s.name, d, usage)
	}
	return nil
}

// Args renders the set (non-zero) fields as --name=value arguments, in a
// fixed order, for a container's command line.
func (f Flags) Args() []string {
	var args []string
	for _, s := range f.specs() {
		switch {
		case s.str != nil && *s.str != "":
			args = append(args, "--"+s.name+"="+*s.str)
		case s.dur != nil && *s.dur != 0:
			args = append(args, "--"+s.name+"="+s.dur.String())
		case s.bln != nil && *s.bln:
			args = append(args, "--"+s.name+"=true")
		case s.list != nil && len(*s.list) > 0:
			args = append(args, "--"+s.name+"="+strings.Join(*s.list, ","))
		}
	}
	return args
}

// Parse parses args as the sidecar does, without its environment. The
// injection webhook parses the settings it takes from a pod's annotations
// with it, so that a value the sidecar would not parse denies the pod
// instead of crash-looping its sidecar.
func Parse(args []string) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("gatehouse-sidecar", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := f.Bind(fs, func(string) string { return "" }); err != nil {
		return f, err
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return f, nil
}

// Proxy is the proxy section the command line sets: each field it leaves
// zero keeps the document's value (config.Proxy.Overlay).
func (f Flags) Proxy() config.Proxy {
	return config.Proxy{
		TrustedProxies:  f.TrustedProxies,
		WriteTimeout:    config.Duration(f.WriteTimeout),
		BodyReadTimeout: config.Duration(f.BodyReadTimeout),
	}
}

// listValue is a comma-separated flag; each use replaces the list.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = splitList(s)
	return nil
}

// splitList splits a comma-separated list, trimming spaces; empty items are
// dropped, so "" is no list at all.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
