package storage

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/migrations"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// migrationLockID is the Postgres advisory lock that serializes migrations
// across instances starting at once ("keygate" in ASCII).
const migrationLockID int64 = 0x6b_65_79_67_61_74_65

// migrationLockPoll is how often a waiting instance retries the lock.
// Polling pg_try_advisory_lock, rather than blocking in pg_advisory_lock,
// keeps a long wait from running into the driver's read timeout.
const migrationLockPoll = 200 * time.Millisecond

// MigrationStatus is one migration and whether this database has it, for
// operators and health checks.
type MigrationStatus struct {
	Name    string // version and name, e.g. 20261125000001_core
	Applied bool
	GroupID int64 // the MigrateUp call that applied it; 0 when not applied
}

// MigrateUp applies every migration the database lacks, each in its own
// transaction, as one group that MigrateDown can undo. Instances starting
// together on one Postgres database take turns; the later ones find nothing
// to do.
func (db *DB) MigrateUp(ctx context.Context) error {
	return db.withMigrator(ctx, func(ctx context.Context, m *migrate.Migrator) error {
		if _, err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate %s up: %w", db.dialect, err)
		}
		return nil
	})
}

// MigrateDown rolls back the last group MigrateUp applied, newest migration
// first. With nothing applied it does nothing.
func (db *DB) MigrateDown(ctx context.Context) error {
	return db.withMigrator(ctx, func(ctx context.Context, m *migrate.Migrator) error {
		if _, err := m.Rollback(ctx); err != nil {
			return fmt.Errorf("migrate %s down: %w", db.dialect, err)
		}
		return nil
	})
}

// MigrationStatus lists every known migration, oldest first, with whether
// it is applied.
func (db *DB) MigrationStatus(ctx context.Context) ([]MigrationStatus, error) {
	var out []MigrationStatus
	err := db.withMigrator(ctx, func(ctx context.Context, m *migrate.Migrator) error {
		ms, err := m.MigrationsWithStatus(ctx)
		if err != nil {
			return fmt.Errorf("read %s migration status: %w", db.dialect, err)
		}
		out = make([]MigrationStatus, len(ms))
		for i, mig := range ms {
			out[i] = MigrationStatus{Name: mig.String(), Applied: mig.IsApplied(), GroupID: mig.GroupID}
		}
		return nil
	})
	return out, err
}

// withMigrator runs fn with a migrator over this dialect's migrations, its
// bookkeeping tables created, while holding the migration lock.
func (db *DB) withMigrator(ctx context.Context, fn func(context.Context, *migrate.Migrator) error) error {
	fsys := migrations.SQLite()
	if db.isPostgres() {
		fsys = migrations.Postgres()
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return fmt.Errorf("read %s migrations: %w", db.dialect, err)
	}
	// Mark a migration applied only once it succeeded, so a failed one is
	// retried on the next start instead of being skipped.
	m := migrate.NewMigrator(db.bun, ms, migrate.WithMarkAppliedOnSuccess(true))
	return db.withMigrationLock(ctx, func(ctx context.Context) error {
		if err := m.Init(ctx); err != nil {
			return fmt.Errorf("create %s migration tables: %w", db.dialect, err)
		}
		return fn(ctx, m)
	})
}

// withMigrationLock runs fn while holding the migration lock. On Postgres
// that is a session advisory lock on a connection set aside for it: it needs
// no table (so it works before the first migration), it is released if the
// process dies, and CREATE TABLE IF NOT EXISTS races between instances
// cannot happen inside it. bun's own Migrator.Lock fails at once instead of
// waiting and stays locked after a crash, so it is not used.
//
// SQLite needs no lock: a SQLite database belongs to one keygate process,
// whose single connection already serializes its statements.
func (db *DB) withMigrationLock(ctx context.Context, fn func(context.Context) error) (err error) {
	if !db.isPostgres() {
		return fn(ctx)
	}
	conn, err := db.bun.Conn(ctx)
	if err != nil {
		return fmt.Errorf("take a connection for the migration lock: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()

	if err := lockMigrations(ctx, conn); err != nil {
		return err
	}
	defer func() {
		// Unlock even when ctx is done: the connection goes back to the pool.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var released bool
		if uerr := conn.QueryRowContext(uctx, "SELECT pg_advisory_unlock(?)", migrationLockID).Scan(&released); uerr != nil || !released {
			// A pooled connection must not keep the lock: discard it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn(ctx)
}

// lockMigrations waits until conn holds the migration lock or ctx ends.
func lockMigrations(ctx context.Context, conn bun.Conn) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the migration lock: %w", ctx.Err())
		case <-timer.C:
		}
		var locked bool
		if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock(?)", migrationLockID).Scan(&locked); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if locked {
			return nil
		}
		timer.Reset(migrationLockPoll)
	}
}
