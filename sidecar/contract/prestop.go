package contract

// The sidecar's part in a pod's termination. The kubelet runs every
// container's preStop hook when a pod starts terminating, but sends a
// native sidecar SIGTERM only after the app containers have exited
// (docs/injection.md, "Termination"). The injected sidecar's preStop hook
// therefore runs the sidecar binary itself in a client mode that tells the
// running sidecar, over its admin API, that the pod is terminating.
const (
	// SidecarBinary is the sidecar's path in its image: the ENTRYPOINT of
	// Dockerfile.sidecar and of the e2e image (hack/e2e/images).
	SidecarBinary = "/gatehouse-sidecar"
	// PreStopCommand is the subcommand the preStop hook runs:
	// `gatehouse-sidecar prestop --admin-listen=ADDR`.
	PreStopCommand = "prestop"
	// PreStopPath is the admin API route the subcommand calls (POST).
	PreStopPath = "/prestop"
)

// PreStopExec is the sidecar container's preStop exec command: the client
// mode of the sidecar binary, told the admin address the sidecar serves
// (the same value as its FlagAdminListen).
func PreStopExec(adminListen string) []string {
	return []string{SidecarBinary, PreStopCommand, "--" + FlagAdminListen + "=" + adminListen}
}
