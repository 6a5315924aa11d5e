package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned returns a PEM certificate and key for commonName.
func selfSigned(t *testing.T, commonName string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func TestKeyPairLoader(t *testing.T) {
	dir := t.TempDir()
	l := &keyPairLoader{certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
	served := func() string {
		t.Helper()
		c, err := l.GetCertificate(nil)
		if err != nil {
			t.Fatalf("GetCertificate: %v", err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName
	}
	write := func(cn string, mod time.Time) {
		t.Helper()
		cert, key := selfSigned(t, cn)
		for name, data := range map[string][]byte{l.certFile: cert, l.keyFile: key} {
			if err := os.WriteFile(name, data, 0o600); err != nil {
				t.Fatal(err)
			}
			// Explicit times: the reload must not depend on the file
			// system's timestamp resolution.
			if err := os.Chtimes(name, mod, mod); err != nil {
				t.Fatal(err)
			}
		}
	}

	if _, err := l.GetCertificate(nil); err == nil {
		t.Fatal("GetCertificate succeeded before any certificate was mounted")
	}

	base := time.Now().Add(-time.Minute)
	write("first", base)
	if got := served(); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	write("second", base.Add(time.Second))
	if got := served(); got != "second" {
		t.Fatalf("after rotation served %q, want second", got)
	}

	// A half-written pair (new cert, old key) keeps the last good one.
	cert, _ := selfSigned(t, "third")
	if err := os.WriteFile(l.certFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(l.certFile, base.Add(2*time.Second), base.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := served(); got != "second" {
		t.Fatalf("mid-swap served %q, want the previous pair", got)
	}
}
