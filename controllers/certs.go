package controllers

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// keyPairLoader serves the webhook's certificate from files that appear
// after the manager has started: cert-controller writes the key pair into a
// Secret, and the kubelet projects that Secret into the pod only later.
// controller-runtime's own watcher fails at start when the files are missing,
// which would stop the manager before cert-controller ever ran. Until the
// files exist, handshakes fail, so the manager's readiness check (a TLS dial)
// keeps the pod out of the webhook Service.
type keyPairLoader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
}

// GetCertificate is a tls.Config.GetCertificate that reloads the pair when
// either file changed (the kubelet swaps Secret volumes atomically, so a
// rotation shows up as new modification times).
func (l *keyPairLoader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs, err := os.Stat(l.certFile)
	if err != nil {
		return nil, fmt.Errorf("webhook serving certificate not mounted yet: %w", err)
	}
	ks, err := os.Stat(l.keyFile)
	if err != nil {
		return nil, fmt.Errorf("webhook serving key not mounted yet: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cert != nil && cs.ModTime().Equal(l.certMod) && ks.ModTime().Equal(l.keyMod) {
		return l.cert, nil
	}
	pair, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		if l.cert != nil {
			// Mid-swap: keep serving the previous pair until both files agree.
			return l.cert, nil
		}
		return nil, fmt.Errorf("load webhook serving certificate: %w", err)
	}
	l.cert, l.certMod, l.keyMod = &pair, cs.ModTime(), ks.ModTime()
	return l.cert, nil
}
