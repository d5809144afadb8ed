package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/storage/storagetest"
)

func TestReadSecretFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := Defaults()
	cfg.JWTSecretFile = write("jwt", "a-secret-of-at-least-32-bytes-long!!\n")
	cfg.EncryptionKeyFile = write("key", storagetest.KeyringText+"\n")
	cfg.DatabaseURLFile = write("db", "postgres://keygate:pw@db:5432/keygate\n")
	if err := cfg.ReadSecretFiles(); err != nil {
		t.Fatal(err)
	}
	if cfg.JWTSecret != "a-secret-of-at-least-32-bytes-long!!" || cfg.EncryptionKey != storagetest.KeyringText ||
		cfg.DatabaseURL != "postgres://keygate:pw@db:5432/keygate" {
		t.Fatalf("read %q %q %q", cfg.JWTSecret, cfg.EncryptionKey, cfg.DatabaseURL)
	}
	if err := cfg.ReadSecretFiles(); err != nil {
		t.Fatalf("reading again: %v", err)
	}
	both := Defaults()
	both.JWTSecret, both.JWTSecretFile = "x", write("jwt2", "y")
	if err := both.ReadSecretFiles(); err == nil || !strings.Contains(err.Error(), "KEYGATE_JWT_SECRET and KEYGATE_JWT_SECRET_FILE") {
		t.Fatalf("both set: %v", err)
	}
	missing := Defaults()
	missing.EncryptionKeyFile = filepath.Join(dir, "nope")
	if err := missing.ReadSecretFiles(); err == nil || !strings.Contains(err.Error(), "KEYGATE_ENCRYPTION_KEY_FILE") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestKeyring_DevelopmentKey(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	k, err := cfg.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{cfg.DataDir: 0o700, filepath.Join(cfg.DataDir, devKeyringFile): 0o600} {
		fi, err := os.Stat(name)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %o", name, fi.Mode(), err, want)
		}
	}
	again, err := cfg.Keyring()
	if err != nil || again.CurrentID() != k.CurrentID() {
		t.Fatalf("second read %v, %v", again, err)
	}
	pg := Defaults()
	pg.DatabaseURL = "postgres://db/keygate"
	if _, err := pg.Keyring(); err == nil || !strings.Contains(err.Error(), "KEYGATE_ENCRYPTION_KEY") {
		t.Fatalf("postgres without a key: %v", err)
	}
}
