package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/storage/storagetest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn.
func writeCert(t *testing.T, dir, cn string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestServeTLS_ReloadsTheCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "first")
	cfg := Defaults()
	cfg.DB, cfg.Migrate = storagetest.MustOpenSQLite(t), false
	cfg.JWTSecret = "tls-test-secret-of-at-least-32-bytes"
	cfg.EncryptionKey = storagetest.KeyringText
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	cfg.DataDir = dir
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := a.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		_ = a.Close(context.Background())
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the test reads the certificate served
	get := func() (*http.Response, string) {
		t.Helper()
		res, err := client.Get("https://" + ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res, res.TLS.PeerCertificates[0].Subject.CommonName
	}
	res, cn := get()
	if cn != "first" || res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("served %q, HSTS %q", cn, res.Header.Get("Strict-Transport-Security"))
	}
	writeCert(t, dir, "second")
	if err := a.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	if _, cn := get(); cn != "second" {
		t.Fatalf("after reload served %q", cn)
	}
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.ReloadTLS(); err == nil {
		t.Fatal("a broken certificate was loaded")
	}
	client.CloseIdleConnections()
	if _, cn := get(); cn != "second" {
		t.Fatalf("after a failed reload served %q", cn)
	}
}

func TestValidate_JWKSNeedsIssuerAndAudience(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.JWKSURL = "https://idp.example.com/jwks"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "KEYGATE_JWT_ISSUER") || !strings.Contains(err.Error(), "KEYGATE_JWT_AUDIENCE") {
		t.Fatalf("Validate: %v", err)
	}
	cfg.JWTIssuer, cfg.JWTAudience = "https://idp.example.com", "keygate"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TLSCertFile = "cert.pem"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "KEYGATE_TLS_KEY_FILE") {
		t.Fatalf("a certificate without a key: %v", err)
	}
}
