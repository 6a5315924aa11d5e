package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"

	"github.com/gatehouse-dev/gatehouse/sidecar/contract"
)

// listenAdmin opens the admin listener for a contract listen address:
// "unix:/path/to.sock" for a Unix socket (the injected default: in a volume
// only the pod's containers share), or host:port for TCP, which should be
// loopback.
//
// The socket is made usable by every user (0666): the app container may run
// as any UID, and the directory it lives in is what confines it to the pod
// (docs/security.md). A socket file left behind by a sidecar that died is
// replaced; a socket some live process still answers on is not, and neither
// is any other kind of file. Closing the listener removes the file.
func listenAdmin(addr string) (net.Listener, error) {
	network, path := contract.Listen(addr)
	if network != "unix" {
		return net.Listen(network, path)
	}
	if path == "" {
		return nil, errors.New("unix socket path is empty")
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("make %s usable by the app container: %w", path, err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a socket nobody accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
