package app

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certificate holds the serving certificate, replaced whole on reload so a
// handshake in flight keeps the one it started with.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

func newCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate (KEYGATE_TLS_CERT_FILE, KEYGATE_TLS_KEY_FILE): %w", err)
	}
	c.current.Store(&cert)
	return nil
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.current.Load(), nil
}

// tlsConfig serves the certificate with TLS 1.2 at least.
func (c *certificate) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}
}

// ReloadTLS reads the certificate and key files again (on SIGHUP), so a
// renewed certificate is served without a restart; on error the running
// one stays. A no-op without TLS.
func (a *App) ReloadTLS() error {
	if a.cert == nil {
		return nil
	}
	logger := a.Config.logger()
	if err := a.cert.load(); err != nil {
		logger.Error("TLS certificate reload failed; keeping the running one", "err", err)
		return err
	}
	logger.Info("TLS certificate reloaded", "cert_file", a.cert.certFile)
	return nil
}
