// Package storage implements authz's store interfaces with bun, over
// PostgreSQL (pgdialect + pgdriver) in production and SQLite (sqlitedialect +
// modernc, pure Go) for the embedded default, chosen by the database URL.
//
// Both databases run the same queries and pass the same conformance suite;
// where their SQL differs (row locks, casts, error codes) the difference is
// kept in this package, behind DB.Dialect.
package storage

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/extra/bunotel"
	"github.com/uptrace/bun/schema"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names, as DB.Dialect reports them.
const (
	DialectPostgres = "postgres"
	DialectSQLite   = "sqlite"
)

// acceptedURLs names the database URL forms Open understands, for error
// messages that tell the operator what to write instead.
const acceptedURLs = "postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=…, postgresql://… " +
	"or sqlite:PATH (for example sqlite:data/keygate.db or sqlite::memory:)"

// sqliteMemory is the SQLite path of a private in-memory database.
const sqliteMemory = ":memory:"

// DB is an open database: a bun handle and the dialect it speaks. It is safe
// for concurrent use; the stores share one DB.
type DB struct {
	bun     *bun.DB
	dialect string
}

// Open connects to the database dbURL names and checks that it answers:
// postgres://… or postgresql://… for PostgreSQL, sqlite:PATH for SQLite
// (sqlite::memory: for a private in-memory database). It does not migrate;
// call MigrateUp. Any other form is an EINVALID error. Open never puts the
// URL in an error, since it may carry a password.
func Open(ctx context.Context, dbURL string) (*DB, error) {
	if dbURL == "" {
		return nil, authz.Errorf(authz.EINVALID, "the database URL is empty; use %s", acceptedURLs)
	}
	scheme, _, _ := strings.Cut(dbURL, ":")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return openPostgres(ctx, dbURL)
	case "sqlite":
		return openSQLite(ctx, dbURL[len(scheme)+1:])
	}
	if !validScheme(scheme) {
		return nil, authz.Errorf(authz.EINVALID, "the database URL has no known scheme; use %s", acceptedURLs)
	}
	return nil, authz.Errorf(authz.EINVALID, "database URL scheme %q is not supported; use %s", scheme, acceptedURLs)
}

// validScheme reports whether s looks like a URL scheme (RFC 3986), so that
// only a real scheme, never part of a path or a secret, is echoed back.
func validScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

func openPostgres(ctx context.Context, dsn string) (*DB, error) {
	if _, err := url.Parse(dsn); err != nil {
		// url.Error quotes the URL, password included: say less.
		return nil, authz.Errorf(authz.EINVALID, "the postgres database URL is not a valid URL; use %s", acceptedURLs)
	}
	connector, err := pgConnector(dsn)
	if err != nil {
		return nil, err
	}
	sqldb := sql.OpenDB(connector)
	// bun's advice: a few connections per CPU; Postgres pays per connection.
	conns := 4 * runtime.GOMAXPROCS(0)
	sqldb.SetMaxOpenConns(conns)
	sqldb.SetMaxIdleConns(conns)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	return newDB(ctx, sqldb, pgdialect.New(), DialectPostgres)
}

// pgConnector builds pgdriver's connector. pgdriver.WithDSN panics on a DSN
// it cannot parse (a bad sslmode, an unreadable sslrootcert, a bad
// duration); the panic becomes an EINVALID error here.
func pgConnector(dsn string) (c *pgdriver.Connector, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg := "the postgres database URL is not valid"
			var uerr *url.Error
			if e, ok := r.(error); ok && !errors.As(e, &uerr) && !strings.Contains(e.Error(), dsn) {
				msg += ": " + e.Error()
			}
			c, err = nil, authz.Errorf(authz.EINVALID, "%s", msg)
		}
	}()
	return pgdriver.NewConnector(pgdriver.WithDSN(dsn), pgdriver.WithResetSessionFunc(checkPooledConn)), nil
}

// checkPooledConn runs before a pooled connection is used again: one the
// server closed meanwhile (the database restarted, a proxy cut it) is
// refused, and the pool dials a new one instead of failing the query.
func checkPooledConn(_ context.Context, cn *pgdriver.Conn) error {
	c := cn.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if connCheck(c) != nil {
		return driver.ErrBadConn
	}
	return nil
}

func openSQLite(ctx context.Context, path string) (*DB, error) {
	switch {
	case path == "":
		return nil, authz.Errorf(authz.EINVALID, "the sqlite database URL names no file; use %s", acceptedURLs)
	case strings.HasPrefix(path, "//"):
		// sqlite://x is read three ways by three tools; refuse to guess.
		return nil, authz.Errorf(authz.EINVALID, "write a sqlite database URL as sqlite:PATH, without //; use %s", acceptedURLs)
	case strings.ContainsAny(path, "?#\x00"):
		return nil, authz.Errorf(authz.EINVALID, "a sqlite database path may not contain ?, # or NUL; use %s", acceptedURLs)
	}
	memory := path == sqliteMemory
	if !memory {
		if err := createPrivate(path); err != nil {
			return nil, err
		}
	}
	// Every pooled connection gets these settings from the DSN: foreign
	// keys enforced, a writer waits up to 5s for a lock instead of failing,
	// and every transaction takes the write lock when it begins, so two
	// writers never deadlock upgrading from a read lock.
	params := url.Values{}
	params.Set("_foreign_keys", "1")
	params.Set("_busy_timeout", "5000")
	params.Set("_synchronous", "NORMAL")
	params.Set("_txlock", "immediate")
	if !memory {
		params.Set("_journal_mode", "WAL")
	}
	sqldb, err := sql.Open("sqlite", path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// One connection: SQLite has one writer anyway, so queuing in the pool
	// beats spinning on SQLITE_BUSY, and an in-memory database lives only
	// as long as its one connection, which must therefore never be closed.
	sqldb.SetMaxOpenConns(1)
	sqldb.SetMaxIdleConns(1)
	sqldb.SetConnMaxLifetime(0)
	sqldb.SetConnMaxIdleTime(0)
	return newDB(ctx, sqldb, sqlitedialect.New(), DialectSQLite)
}

// createPrivate makes the database's folder (0700) and file (0600) before
// SQLite opens it, so they are never readable by others, not even for a
// moment; SQLite gives its -wal and -shm files the database file's mode.
// Existing ones are left as they are.
func createPrivate(path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create the sqlite database folder: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case errors.Is(err, os.ErrExist):
		return nil
	case err != nil:
		return fmt.Errorf("create the sqlite database file: %w", err)
	}
	return f.Close()
}

func newDB(ctx context.Context, sqldb *sql.DB, d schema.Dialect, name string) (*DB, error) {
	// Spans and metrics for every query, through the global OpenTelemetry
	// providers (no-ops unless the binary configures them). Queries are
	// recorded unformatted, with ? for values, so no key hash reaches a trace.
	bdb := bun.NewDB(sqldb, d).WithQueryHook(bunotel.NewQueryHook(bunotel.WithDBName("keygate")))
	db := &DB{bun: bdb, dialect: name}
	if err := db.Ping(ctx); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	return db, nil
}

// Dialect reports which database this is: DialectPostgres or DialectSQLite.
func (db *DB) Dialect() string { return db.dialect }

// Bun returns the bun handle, for tests and tools that need raw access.
func (db *DB) Bun() *bun.DB { return db.bun }

// Ping checks that the database answers, for readiness probes.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.bun.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.dialect, err)
	}
	return nil
}

// Close closes every connection. Pending queries fail; a closed DB stays
// closed.
func (db *DB) Close() error {
	return db.bun.Close()
}

func (db *DB) isPostgres() bool { return db.dialect == DialectPostgres }

// utc is how every time is stored: in UTC, truncated to the microsecond both
// databases keep, so a value read back equals the value written.
func utc(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// utcPtr is utc for an optional time.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := utc(*t)
	return &u
}

// uniqueViolation reports whether err is a unique or primary key violation
// and what it violated: the constraint name on Postgres, SQLite's message
// (which names the table's columns, "api_keys.tenant_id, api_keys.name") on
// SQLite. Neither carries the offending value.
func uniqueViolation(err error) (string, bool) {
	var pgErr pgdriver.Error
	if errors.As(err, &pgErr) {
		return pgErr.Field('n'), pgErr.Field('C') == "23505"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return liteErr.Error(), true
		}
	}
	return "", false
}

// mapDBError turns a lost database connection into the domain's
// EUNAVAILABLE, so callers answer 503 and fail closed without knowing the
// driver: a network error, a connection the driver gave up on, or one that
// ended mid-answer (EOF). Every exported store method defers it.
func mapDBError(err *error) {
	if *err == nil || !lostConnection(*err) {
		return
	}
	var e *authz.Error
	if errors.As(*err, &e) {
		return
	}
	*err = fmt.Errorf("%w: %w", authz.Errorf(authz.EUNAVAILABLE, "the database is unavailable; try again"), *err)
}

func lostConnection(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
