package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/server"
)

const devSecretFile = "jwt-secret"

// jwtSecret returns the configured secret, or the development secret kept in
// the data folder (created on first use), and whether it is the latter.
func jwtSecret(cfg *Config) ([]byte, bool, error) {
	if cfg.JWTSecret != "" {
		return []byte(cfg.JWTSecret), false, nil
	}
	if cfg.JWKSURL != "" {
		return nil, false, nil
	}
	path := filepath.Join(cfg.DataDir, devSecretFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		secret := strings.TrimSpace(string(data))
		if len(secret) < 32 {
			return nil, false, fmt.Errorf("%s holds a secret shorter than 32 bytes; delete it to make a new one", path)
		}
		return []byte(secret), true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("read development secret: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data folder: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, false, err
	}
	secret := hex.EncodeToString(raw[:])
	// O_EXCL: when two processes start at once, one writes and the other reads.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return jwtSecret(cfg)
	}
	if err != nil {
		return nil, false, fmt.Errorf("write development secret: %w", err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		_ = f.Close()
		return nil, false, fmt.Errorf("write development secret: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	return []byte(secret), true, nil
}

// JWT returns how management JWTs are checked and signed: the configured
// secret or JWKS, or the development secret in the data folder (created on
// first use), and whether it is the latter.
func (c *Config) JWT() (server.JWTConfig, bool, error) {
	secret, dev, err := jwtSecret(c)
	if err != nil {
		return server.JWTConfig{}, false, err
	}
	return server.JWTConfig{
		Secret:      secret,
		JWKSURL:     c.JWKSURL,
		Issuer:      c.JWTIssuer,
		Audience:    c.JWTAudience,
		UserClaim:   c.JWTUserClaim,
		TenantClaim: c.JWTTenantClaim,
		RolesClaim:  c.JWTRolesClaim,
		Now:         c.Now,
	}, dev, nil
}
