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
	secret, err := devSecret(cfg.DataDir, devSecretFile, "development JWT secret", func(raw []byte) string {
		return hex.EncodeToString(raw)
	})
	if err != nil {
		return nil, false, err
	}
	if len(secret) < 32 {
		return nil, false, fmt.Errorf("%s holds a secret shorter than 32 bytes; delete it to make a new one", filepath.Join(cfg.DataDir, devSecretFile))
	}
	return []byte(secret), true, nil
}

// devSecret returns the development secret kept in dir/name, trimmed,
// creating it on first use from 32 random bytes in the form format gives:
// the folder 0700 and the file 0600 from their creation. When two processes
// start at once, one writes (O_EXCL) and the other reads what it wrote.
func devSecret(dir, name, what string, format func(raw []byte) string) (string, error) {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return strings.TrimSpace(string(data)), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create data folder: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := format(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return devSecret(dir, name, what, format)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", what, err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("write %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return secret, nil
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
