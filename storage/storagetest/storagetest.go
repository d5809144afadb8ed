// Package storagetest gives tests a fresh, migrated database of each kind,
// so the storage package and the packages above it can run the same tests
// against SQLite and Postgres.
//
// SQLite needs nothing. Postgres tests connect to KEYGATE_TEST_POSTGRES_URL
// (default DefaultPostgresURL), create a database of their own and drop it
// afterwards; when Postgres is unreachable they are skipped, unless CI=true,
// where a missing database is a failure rather than a silent skip.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/uptrace/bun/driver/pgdriver"
)

// DefaultPostgresURL is the server tests use when KEYGATE_TEST_POSTGRES_URL
// is unset: a local Postgres with trust authentication.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresURLEnv names the variable that points tests at a Postgres server.
const PostgresURLEnv = "KEYGATE_TEST_POSTGRES_URL"

// setupTimeout bounds creating, migrating and dropping a test database.
const setupTimeout = 30 * time.Second

// MustOpenSQLite returns a migrated, private in-memory SQLite database,
// closed when the test ends.
func MustOpenSQLite(tb testing.TB) *storage.DB {
	tb.Helper()
	return mustOpen(tb, "sqlite::memory:")
}

// MustOpenPostgres returns a migrated database of its own on the test
// Postgres server, dropped when the test ends. See PostgresURL for when it
// skips.
func MustOpenPostgres(tb testing.TB) *storage.DB {
	tb.Helper()
	return mustOpen(tb, PostgresURL(tb))
}

func mustOpen(tb testing.TB, dbURL string) *storage.DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		tb.Fatalf("open test database: %v", err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close test database: %v", err)
		}
	})
	if err := db.MigrateUp(ctx); err != nil {
		tb.Fatalf("migrate test database: %v", err)
	}
	return db
}

// PostgresURL creates an empty database keygate_test_<random> on the test
// Postgres server and returns its URL; the database is dropped, with any
// connections still open to it, when the test ends. When the server is
// unreachable the test is skipped, or fails if CI=true.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(PostgresURLEnv)
	if base == "" {
		base = DefaultPostgresURL
	}
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("%s is not a URL", PostgresURLEnv) // the error would echo a password
	}

	admin, err := openAdmin(base)
	if err != nil {
		tb.Fatalf("%s: %v", PostgresURLEnv, err)
	}
	tb.Cleanup(func() { _ = admin.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	pingCtx, cancelPing := context.WithTimeout(ctx, 3*time.Second)
	defer cancelPing()
	if err := admin.PingContext(pingCtx); err != nil {
		msg := "postgres not reachable at " + u.Redacted() + ": " + err.Error() + "; set " + PostgresURLEnv
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}

	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "keygate_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create test database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", name, err)
		}
	})

	u.Path = "/" + name
	return u.String()
}

// openAdmin opens the server's maintenance connection. pgdriver panics on a
// DSN it cannot parse; that becomes an error.
func openAdmin(dsn string) (db *sql.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, errInvalidURL{}
		}
	}()
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn))), nil
}

type errInvalidURL struct{}

func (errInvalidURL) Error() string { return "not a postgres URL pgdriver accepts" }

// ForEachDB runs fn as the subtests "sqlite" and "postgres", each with a
// fresh migrated database, so one test proves both dialects behave alike.
// The postgres subtest skips as PostgresURL does.
func ForEachDB(t *testing.T, fn func(t *testing.T, db *storage.DB)) {
	t.Helper()
	t.Run(storage.DialectSQLite, func(t *testing.T) {
		fn(t, MustOpenSQLite(t))
	})
	t.Run(storage.DialectPostgres, func(t *testing.T) {
		fn(t, MustOpenPostgres(t))
	})
}

// KeyringText is the fixed keyring tests seal secrets with.
const KeyringText = "test1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// Keyring returns the test keyring (KeyringText).
func Keyring(tb testing.TB) *storage.Keyring {
	tb.Helper()
	k, err := storage.ParseKeyring(KeyringText)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
