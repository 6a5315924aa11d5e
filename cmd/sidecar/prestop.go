package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// preStopTimeout bounds the call: the kubelet counts the hook's time against
// the sidecar's grace period, and a sidecar that does not answer in this
// long is not serving anyone.
const preStopTimeout = 5 * time.Second

// preStop is `gatehouse-sidecar prestop`, the injected sidecar's preStop
// hook (contract.PreStopExec): it tells the sidecar serving the admin API at
// --admin-listen that its pod is terminating, and exits. It reads
// --admin-listen, and its environment fallback, as the sidecar itself does,
// so a container configured either way calls the address it serves.
func preStop(args []string, getenv func(string) string) error {
	fs := newFlagSet()
	admin := contract.LoopbackAdmin
	if v := getenv(contract.Env(contract.FlagAdminListen)); v != "" {
		admin = v
	}
	fs.StringVar(&admin, contract.FlagAdminListen, admin, "the running sidecar's admin API address, as given to it; env "+contract.Env(contract.FlagAdminListen))
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{fmt.Errorf("%s: %w", contract.PreStopCommand, err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected arguments: %q", contract.PreStopCommand, fs.Args())}
	}
	network, address := contract.Listen(admin)
	client := &http.Client{
		Timeout: preStopTimeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, address)
		}},
	}
	// The host is a placeholder: the dialer decides where the call goes.
	resp, err := client.Post("http://gatehouse"+contract.PreStopPath, "", nil)
	if err != nil {
		return fmt.Errorf("%s: tell the sidecar at %s: %w", contract.PreStopCommand, admin, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s: the sidecar at %s answered %s: %s", contract.PreStopCommand, admin, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
