package storage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestOpen_InvalidURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note, url string
		wantMsg   string // a part of the message
	}{
		{note: "empty", url: "", wantMsg: "empty"},
		{note: "another database", url: "mysql://root:hunter2@db/keygate", wantMsg: `"mysql" is not supported`},
		{note: "a bare path", url: "data/keygate.db", wantMsg: "no known scheme"},
		{note: "a bare sqlite path", url: ":memory:", wantMsg: "no known scheme"},
		{note: "sqlite without a path", url: "sqlite:", wantMsg: "names no file"},
		{note: "sqlite with slashes, which tools read differently", url: "sqlite://data/keygate.db", wantMsg: "without //"},
		{note: "sqlite with a query", url: "sqlite:data/keygate.db?mode=ro", wantMsg: "may not contain"},
		{note: "postgres with a bad sslmode", url: "postgres://u:hunter2@127.0.0.1:1/db?sslmode=bogus", wantMsg: "sslmode"},
		{note: "postgres that is no URL", url: "postgres://u:hunter2@[::1/db", wantMsg: "not a valid URL"},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			t.Parallel()
			db, err := storage.Open(context.Background(), tt.url)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded")
			}
			wantCode(t, err, authz.EINVALID)
			msg := authz.ErrorMessage(err)
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not say %q", msg, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestOpen_SQLiteFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "missing", "folder", "keygate.db")
	db, err := storage.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if db.Dialect() != storage.DialectSQLite {
		t.Fatalf("dialect %q", db.Dialect())
	}
	for _, tt := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"synchronous", "1"}, // NORMAL
	} {
		var got string
		if err := db.Bun().QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %s, want %s", tt.pragma, got, tt.want)
		}
	}
	if err := db.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	k := mustCreate(t, storage.NewKeyStore(db), newKey(t, "acme", "alice", "ci", at(0)))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// The file keeps the key.
	db, err = storage.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.NewKeyStore(db).FindKeyByID(ctx, "acme", k.ID); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
}

func TestOpen_SQLiteMemoryIsPrivate(t *testing.T) {
	t.Parallel()
	a, b := storagetest.MustOpenSQLite(t), storagetest.MustOpenSQLite(t)
	mustCreate(t, storage.NewKeyStore(a), newKey(t, "acme", "alice", "ci", at(0)))
	if n, err := storage.NewKeyStore(b).CountKeys(context.Background(), "acme"); err != nil || n != 0 {
		t.Fatalf("the second in-memory database sees %d keys (%v)", n, err)
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// SQLite keeps times as text and compares them as text, so the stored form
// must sort like the times: UTC, fixed layout, fraction trimmed (and '+'
// sorts before any digit, so 12:00:00+00:00 < 12:00:00.5+00:00).
func TestSQLite_TimesAreSortableUTCText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storagetest.MustOpenSQLite(t)
	ks := storage.NewKeyStore(db)
	k := newKey(t, "acme", "alice", "ci", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	k.ExpiresAt = ptr(time.Date(2027, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600)))
	mustCreate(t, ks, k)

	var typ, expires, created string
	err := db.Bun().QueryRowContext(ctx,
		"SELECT typeof(expires_at), CAST(expires_at AS TEXT), CAST(created_at AS TEXT) FROM api_keys WHERE id = ?", k.ID).
		Scan(&typ, &expires, &created)
	if err != nil {
		t.Fatal(err)
	}
	if typ != "text" || expires != "2027-03-04 04:06:07.123456+00:00" || created != "2026-01-02 03:04:05+00:00" {
		t.Fatalf("stored %s %q and %q", typ, expires, created)
	}
}

// Fifty writers on one SQLite file: the single pooled connection and the
// busy timeout keep every one of them from failing with SQLITE_BUSY.
func TestSQLite_ConcurrentWritersOnFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := storage.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	ks := storage.NewKeyStore(db)
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Go(func() {
			k := newKey(t, "acme", fmt.Sprintf("user-%d", i%7), fmt.Sprintf("key-%d", i), at(time.Duration(i)*time.Millisecond))
			if errs[i] = ks.CreateKey(ctx, k); errs[i] == nil {
				errs[i] = ks.TouchKeys(ctx, map[string]time.Time{k.ID: at(time.Hour)})
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if n, err := ks.CountKeys(ctx, "acme"); err != nil || n != 50 {
		t.Fatalf("CountKeys = %d, %v", n, err)
	}
}

// Instances starting together on one Postgres database take turns: every
// MigrateUp succeeds and the schema is applied once.
func TestMigrateUp_ConcurrentPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storagetest.PostgresURL(t)
	dbs := make([]*storage.DB, 4)
	for i := range dbs {
		db, err := storage.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		dbs[i] = db
	}
	var wg sync.WaitGroup
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Go(func() { errs[i] = db.MigrateUp(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	st, err := dbs[0].MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if !m.Applied || m.GroupID != 1 {
			t.Fatalf("status %+v, want applied in group 1", m)
		}
	}
}

// TestOpen_SQLiteFilesArePrivate: the folder keygate makes is 0700 and the
// database, its write-ahead log and shared-memory files are 0600 from their
// creation, whatever the umask lets through.
func TestOpen_SQLiteFilesArePrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "keygate.db")
	db, err := storage.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, storage.NewKeyStore(db), newKey(t, "acme", "alice", "ci", at(0)))
	for name, want := range map[string]os.FileMode{dir: 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", filepath.Base(name), got, want)
		}
	}
}
