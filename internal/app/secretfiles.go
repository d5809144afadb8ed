package app

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/keygate/keygate/storage"
)

const devKeyringFile = "encryption-key"

// ReadSecretFiles fills each secret setting from its _FILE twin
// (KEYGATE_JWT_SECRET_FILE, KEYGATE_ENCRYPTION_KEY_FILE,
// KEYGATE_DATABASE_URL_FILE, KEYGATE_POLICY_BUNDLE_TOKEN_FILE, and the
// bundle's public key, KEYGATE_POLICY_BUNDLE_PUBLIC_KEY_FILE), so a secret need not sit in the environment
// or on the command line. Setting both a secret and its file is an error.
// A file read is forgotten, so calling it again changes nothing.
func (c *Config) ReadSecretFiles() error {
	var errs []error
	for _, s := range []struct {
		name        string
		value, file *string
	}{
		{"KEYGATE_JWT_SECRET", &c.JWTSecret, &c.JWTSecretFile},
		{"KEYGATE_ENCRYPTION_KEY", &c.EncryptionKey, &c.EncryptionKeyFile},
		{"KEYGATE_DATABASE_URL", &c.DatabaseURL, &c.DatabaseURLFile},
		{"KEYGATE_REDIS_URL", &c.RedisURL, &c.RedisURLFile},
		{"KEYGATE_POLICY_BUNDLE_TOKEN", &c.PolicyBundleToken, &c.PolicyBundleTokenFile},
		{"KEYGATE_POLICY_BUNDLE_PUBLIC_KEY", &c.PolicyBundlePublicKey, &c.PolicyBundlePublicKeyFile},
	} {
		if *s.file == "" {
			continue
		}
		if *s.value != "" {
			errs = append(errs, fmt.Errorf("%s and %s_FILE are both set; set one", s.name, s.name))
			continue
		}
		data, err := os.ReadFile(*s.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_FILE: %w", s.name, err))
			continue
		}
		*s.value, *s.file = strings.TrimRight(string(data), "\r\n"), ""
		if *s.value == "" {
			errs = append(errs, fmt.Errorf("%s_FILE names an empty file", s.name))
		}
	}
	return errors.Join(errs...)
}

// Keyring returns the keys upstream secrets are sealed with: the
// configured KEYGATE_ENCRYPTION_KEY or, on SQLite under the data folder, a
// development key generated there (0600) on first use. Postgres serves
// several instances, which must share one key: there it must be set.
func (c *Config) Keyring() (*storage.Keyring, error) {
	if c.EncryptionKey != "" {
		return storage.ParseKeyring(c.EncryptionKey)
	}
	if c.DB != nil {
		return nil, errors.New("an encryption key (EncryptionKey) is required when the database is given (DB)")
	}
	if strings.HasPrefix(c.DatabaseURLOrDefault(), "postgres") {
		return nil, errors.New("KEYGATE_ENCRYPTION_KEY (or KEYGATE_ENCRYPTION_KEY_FILE) is required with Postgres: every instance must seal upstream secrets with the same key; `keygate secrets generate-key` prints one")
	}
	text, err := devSecret(c.DataDir, devKeyringFile, "development encryption key", func(raw []byte) string {
		return "dev:" + base64.StdEncoding.EncodeToString(raw)
	})
	if err != nil {
		return nil, err
	}
	return storage.ParseKeyring(text)
}
