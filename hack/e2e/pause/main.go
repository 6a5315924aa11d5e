// Command pause is the e2e cluster's pod sandbox image (the "pause"
// container): it holds the pod's namespaces, reaps the zombies of a shared
// PID namespace, and exits on SIGINT or SIGTERM. The usual image comes from a
// registry this cluster cannot reach.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
