// Package contract is the interface between the operator and the sidecar
// outside the configuration document (sidecar/config): the sidecar's
// command line, the paths the injection webhook mounts, the ports the
// sidecar listens on and the request headers it reserves.
//
// The webhook builds the injected container from these definitions and
// cmd/sidecar parses the same ones, so neither side spells a flag, a path, a
// port or a header on its own: renaming one here renames it on both sides,
// and a test that round-trips Args through Bind holds them together. It
// imports nothing from Kubernetes, so the sidecar binary stays small.
package contract

import (
	"strconv"
	"strings"
)

// Ports. They are part of the documented behaviour (docs/injection.md):
// Services target ProxyPort when no named port is rewired, and kubelet
// probes and Prometheus reach StatusPort.
const (
	// ProxyPort is the injected sidecar's proxy listener. 15080 sits next to
	// the ports service meshes reserve, far from common app ports.
	ProxyPort = 15080
	// AdminPort is the admin API's loopback TCP port: the default of a
	// sidecar started by hand, and the injected one when a pod opts into TCP
	// (docs/injection.md). Injected sidecars otherwise serve the admin API on
	// AdminSocket.
	AdminPort = 9901
	// StatusPort serves /healthz, /readyz and /metrics alone, on the pod IP.
	StatusPort = 9902
)

// Listen addresses.
const (
	// DefaultListen is the proxy listener of a sidecar started by hand.
	DefaultListen = ":8080"
	// DefaultUpstream is the app of a sidecar started by hand.
	DefaultUpstream = "http://127.0.0.1:8081"
	// UnixPrefix marks a listen address as a Unix socket path
	// ("unix:/var/run/gatehouse/admin.sock").
	UnixPrefix = "unix:"
)

// LoopbackAdmin is the admin API on loopback TCP.
var LoopbackAdmin = "127.0.0.1:" + strconv.Itoa(AdminPort)

// Listen splits a listen address into the network and address net.Listen
// takes: a UnixPrefix address is a Unix socket, anything else TCP.
func Listen(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return "unix", path
	}
	return "tcp", addr
}

// Paths inside the injected sidecar (and, for the admin socket, inside every
// app container of the pod).
const (
	// ConfigDir is where the namespace's configuration ConfigMap is mounted.
	ConfigDir = "/etc/gatehouse/config"
	// ConfigFileName is the configuration document's file name, and its key
	// in the ConfigMap.
	ConfigFileName = "config.json"
	// ConfigFile is the configuration document the sidecar loads.
	ConfigFile = ConfigDir + "/" + ConfigFileName

	// PodInfoDir is where the downward API projects the pod's labels.
	PodInfoDir = "/etc/gatehouse/podinfo"
	// LabelsFileName is the labels file's name in PodInfoDir.
	LabelsFileName = "labels"
	// LabelsFile is the downward-API labels file policies are selected by.
	LabelsFile = PodInfoDir + "/" + LabelsFileName

	// AdminDir is the directory, shared by the sidecar and every app
	// container, that holds the admin API socket.
	AdminDir = "/var/run/gatehouse"
	// AdminSocketName is the admin socket's name in AdminDir.
	AdminSocketName = "admin.sock"
	// AdminSocket is the admin API's Unix socket.
	AdminSocket = AdminDir + "/" + AdminSocketName
)

// Reserved request headers. The sidecar removes every incoming header whose
// name starts with HeaderPrefix once folded to lower case with "_" read as
// "-" (request.IsReserved) before any feature runs, so the app may trust the
// ones it finds.
const (
	// HeaderPrefix is the namespace of the headers the sidecar sends the app.
	HeaderPrefix = "X-Gatehouse-"
	// ClientIPHeader carries the client address as the sidecar determined it.
	ClientIPHeader = HeaderPrefix + "Client-Ip"
	// SubjectHeader carries a valid session's subject.
	SubjectHeader = HeaderPrefix + "Subject"
	// ClaimHeaderPrefix, followed by the claim name, carries each forwarded
	// session claim.
	ClaimHeaderPrefix = HeaderPrefix + "Claim-"
)
