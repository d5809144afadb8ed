package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

// maxRowsPerStatement bounds multi-row statements (TouchKeys, audit
// inserts), keeping each statement's text and lock footprint moderate.
const maxRowsPerStatement = 1000

// Ensure KeyStore implements authz.KeyStore.
var (
	_ authz.KeyStore  = (*KeyStore)(nil)
	_ authz.KeyLookup = (*KeyStore)(nil)
)

// KeyStore keeps API keys, and the tenants and users they belong to, in a
// DB. Every change writes the audit events it is given in the same
// transaction.
type KeyStore struct {
	db *DB
}

// NewKeyStore returns a KeyStore over db.
func NewKeyStore(db *DB) *KeyStore {
	return &KeyStore{db: db}
}

type tenantRow struct {
	bun.BaseModel `bun:"table:tenants,alias:t"`

	ID        string    `bun:"id,pk"`
	CreatedAt time.Time `bun:"created_at,notnull"`
}

type userRow struct {
	bun.BaseModel `bun:"table:users,alias:u"`

	TenantID  string    `bun:"tenant_id,pk"`
	ID        string    `bun:"id,pk"`
	CreatedAt time.Time `bun:"created_at,notnull"`
}

func errKeyNotFound() error {
	return authz.Errorf(authz.ENOTFOUND, "api key not found")
}

// keyConflict maps a unique violation on api_keys to ECONFLICT; any other
// error passes through wrapped. Only the name is named: the hash is secret.
func keyConflict(err error, name string) error {
	return nameConflict(err, "api_keys", "a key", name)
}

// nameConflict maps a unique violation on table to ECONFLICT, naming the
// name when it is the name that clashed; any other error passes through
// wrapped.
func nameConflict(err error, table, what, name string) error {
	constraint, ok := uniqueViolation(err)
	switch {
	case !ok:
		return fmt.Errorf("write %s: %w", table, err)
	case constraint == table+"_tenant_id_name_key" || strings.Contains(constraint, table+".name"):
		return authz.Errorf(authz.ECONFLICT, "%s named %q already exists in this tenant", what, name)
	default:
		return authz.Errorf(authz.ECONFLICT, "%s conflicts with an existing one", what)
	}
}

// CreateKey inserts key, creating its tenant and user on first use, and
// writes events, all in one transaction. Returns ECONFLICT when the tenant
// has a key of that name or the id or hash exists. On success key's times
// and scope are set to their stored form (UTC, microseconds).
func (s *KeyStore) CreateKey(ctx context.Context, key *authz.APIKey, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	row, err := newAPIKeyRow(key)
	if err != nil {
		return err
	}
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	if err := s.db.insertOwned(ctx, row, row.TenantID, row.UserID, row.CreatedAt, audit,
		func(err error) error { return keyConflict(err, row.Name) }); err != nil {
		return err
	}
	storedForm(key)
	return nil
}

// insertOwned inserts row, which belongs to a tenant's user, creating both
// on first use, and the audit rows, in one transaction; conflict maps the
// insert's error.
func (db *DB) insertOwned(ctx context.Context, row any, tenantID, userID string, at time.Time, audit []auditEventRow, conflict func(error) error) error {
	return db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := ensureUser(ctx, tx, tenantID, userID, at); err != nil {
			return err
		}
		if _, err := tx.NewInsert().Model(row).Exec(ctx); err != nil {
			return conflict(err)
		}
		return insertAuditEventRows(ctx, tx, audit)
	})
}

// ensureUser creates a tenant and a user unless they exist. The identity
// provider owns both; keygate learns of them on first use.
func ensureUser(ctx context.Context, tx bun.Tx, tenantID, userID string, at time.Time) error {
	tenant := &tenantRow{ID: tenantID, CreatedAt: at}
	if _, err := tx.NewInsert().Model(tenant).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("create tenant: %w", err)
	}
	user := &userRow{TenantID: tenantID, ID: userID, CreatedAt: at}
	if _, err := tx.NewInsert().Model(user).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// FindKeyByID returns a key of a tenant; ENOTFOUND when it is absent, in
// another tenant, or id is not a UUID at all.
func (s *KeyStore) FindKeyByID(ctx context.Context, tenantID, id string) (_ *authz.APIKey, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return nil, errKeyNotFound()
	}
	return findKey(ctx, s.db.bun.NewSelect(), func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.Where("k.tenant_id = ?", tenantID).Where("k.id = ?", id)
	})
}

// KeyByHash is FindKeyByHash under the name authentication looks keys up
// by, so a KeyCache can stand in front of the store.
func (s *KeyStore) KeyByHash(ctx context.Context, hash string) (*authz.APIKey, error) {
	return s.FindKeyByHash(ctx, hash)
}

// FindKeyByHash returns the key whose token, or previous token (replaced
// by a rotation, in its grace period or not), has this SHA-256; ENOTFOUND
// when none has. The caller tells which of the two matched.
func (s *KeyStore) FindKeyByHash(ctx context.Context, hash string) (_ *authz.APIKey, err error) {
	defer mapDBError(&err)
	if hash == "" {
		return nil, errKeyNotFound()
	}
	return findKey(ctx, s.db.bun.NewSelect(), func(q *bun.SelectQuery) *bun.SelectQuery {
		return q.WhereOr("k.key_hash = ?", hash).WhereOr("k.previous_key_hash = ?", hash)
	})
}

// findKey runs a one-key select, q narrowed by where.
func findKey(ctx context.Context, q *bun.SelectQuery, where func(*bun.SelectQuery) *bun.SelectQuery) (*authz.APIKey, error) {
	row := new(apiKeyRow)
	if err := where(q.Model(row)).Limit(1).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errKeyNotFound()
		}
		return nil, fmt.Errorf("find api key: %w", err)
	}
	return row.key()
}

var keyPages = ownedPage[apiKeyRow, *authz.APIKey]{
	kind: cursorKeys, alias: "k", id: func(r *apiKeyRow) string { return r.ID }, convert: (*apiKeyRow).key}

// FindKeys returns a page of a tenant's keys, newest first. Pages are cut
// by id (UUIDv7, so by creation time): keys created while a client pages
// sort before its cursor, so it sees no key twice and skips none that
// existed when it began.
func (s *KeyStore) FindKeys(ctx context.Context, filter authz.APIKeyFilter) (_ *authz.APIKeyPage, err error) {
	defer mapDBError(&err)
	keys, next, err := keyPages.read(ctx, s.db.bun, filter.TenantID, filter.UserID, filter.Cursor, filter.Limit,
		func(q *bun.SelectQuery) *bun.SelectQuery {
			if filter.Enabled != nil {
				q = q.Where("k.enabled = ?", *filter.Enabled)
			}
			if filter.Name != nil {
				q = q.Where("k.name = ?", *filter.Name)
			}
			if filter.ExternalID != nil {
				q = q.Where("k.external_id = ?", *filter.ExternalID)
			}
			return q
		})
	if err != nil {
		return nil, err
	}
	return &authz.APIKeyPage{Keys: keys, NextCursor: next}, nil
}

// UpdateKey loads a key, locking its row on Postgres, and passes it to fn;
// when fn reports changed fields it saves every field fn may change (name,
// enabled, expiry, scope, token and previous token, external id, meta,
// limits, who set what, updated_at) and writes fn's events, all in one
// transaction; the lock keeps a credit spend from slipping in between. fn's error rolls everything back and is returned as it is.
// fn runs inside the transaction and must not use the store itself (on
// SQLite, with one connection, that would wait forever).
func (s *KeyStore) UpdateKey(ctx context.Context, tenantID, id string, fn func(*authz.APIKey) (changed []string, events []authz.AuditEvent, err error)) (_ *authz.APIKey, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return nil, errKeyNotFound()
	}
	return updateLocked(ctx, s.db,
		func(ctx context.Context, q *bun.SelectQuery) (*authz.APIKey, error) {
			return findKey(ctx, q, func(q *bun.SelectQuery) *bun.SelectQuery {
				return q.Where("k.tenant_id = ?", tenantID).Where("k.id = ?", id)
			})
		},
		fn,
		func(ctx context.Context, tx bun.Tx, key *authz.APIKey, events []authz.AuditEvent) error {
			row, err := newAPIKeyRow(key)
			if err != nil {
				return err
			}
			// The row's identity is the one loaded, whatever fn did to the key.
			row.ID, row.TenantID = id, tenantID
			if err := updateOwned(ctx, tx, row, "k", tenantID, id, events,
				func(err error) error { return keyConflict(err, row.Name) },
				append([]string{"name", "enabled", "expires_at", "permission_scope", "updated_at",
					"disabled_by", "disabled_by_admin", "expires_at_set_by", "expires_at_set_by_admin"}, keyLifecycleColumns...)...); err != nil {
				return err
			}
			storedForm(key)
			return nil
		})
}

// updateLocked loads a row inside a transaction, locking it on Postgres (a
// SQLite write transaction already excludes every other writer), passes it
// to fn and, when fn reports changed fields, saves it with fn's events.
// fn's error rolls everything back and is returned as it is.
func updateLocked[T any](ctx context.Context, db *DB, load func(context.Context, *bun.SelectQuery) (T, error),
	fn func(T) ([]string, []authz.AuditEvent, error), save func(context.Context, bun.Tx, T, []authz.AuditEvent) error) (T, error) {
	var out T
	err := db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		v, err := load(ctx, db.lockingSelect(tx))
		if err != nil {
			return err
		}
		changed, events, err := fn(v)
		if err != nil {
			return err
		}
		if len(changed) > 0 {
			if err := save(ctx, tx, v, events); err != nil {
				return err
			}
		}
		out = v
		return nil
	})
	return out, err
}

// lockingSelect starts a select inside tx that locks the rows it reads on
// Postgres.
func (db *DB) lockingSelect(tx bun.Tx) *bun.SelectQuery {
	q := tx.NewSelect()
	if db.isPostgres() {
		q = q.For("UPDATE")
	}
	return q
}

// DeleteKey removes a key and writes events in one transaction. Returns
// ENOTFOUND like FindKeyByID.
func (s *KeyStore) DeleteKey(ctx context.Context, tenantID, id string, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return errKeyNotFound()
	}
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	return s.db.deleteOwned(ctx, (*apiKeyRow)(nil), "k", tenantID, id, audit, errKeyNotFound)
}

// updateOwned writes columns of row, the tenant's row with id (its table's
// alias is alias), and the audit rows of events, inside tx; conflict maps
// the update's error.
func updateOwned(ctx context.Context, tx bun.Tx, row any, alias, tenantID, id string, events []authz.AuditEvent, conflict func(error) error, columns ...string) error {
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	_, err = tx.NewUpdate().Model(row).Column(columns...).
		Where("?.tenant_id = ?", bun.Ident(alias), tenantID).Where("?.id = ?", bun.Ident(alias), id).
		Exec(ctx)
	if err != nil {
		return conflict(err)
	}
	return insertAuditEventRows(ctx, tx, audit)
}

// deleteOwned deletes the row of model (whose table alias is alias) with id
// in tenantID and writes the audit rows, in one transaction; notFound is
// the error when no row matched.
func (db *DB) deleteOwned(ctx context.Context, model any, alias, tenantID, id string, audit []auditEventRow, notFound func() error) error {
	return db.deleteWhere(ctx, model, func(q *bun.DeleteQuery) *bun.DeleteQuery {
		return q.Where("?.tenant_id = ?", bun.Ident(alias), tenantID).Where("?.id = ?", bun.Ident(alias), id)
	}, audit, notFound)
}

// deleteWhere deletes the rows of model where selects and writes the audit
// rows, in one transaction; notFound is the error when no row matched.
func (db *DB) deleteWhere(ctx context.Context, model any, where func(*bun.DeleteQuery) *bun.DeleteQuery, audit []auditEventRow, notFound func() error) error {
	return db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := where(tx.NewDelete().Model(model)).Exec(ctx)
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("delete: %w", err)
		} else if n == 0 {
			return notFound()
		}
		return insertAuditEventRows(ctx, tx, audit)
	})
}

// CountKeys returns the number of keys a tenant holds.
func (s *KeyStore) CountKeys(ctx context.Context, tenantID string) (_ int, err error) {
	defer mapDBError(&err)
	n, err := s.db.bun.NewSelect().Model((*apiKeyRow)(nil)).Where("k.tenant_id = ?", tenantID).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count api keys: %w", err)
	}
	return int(n), nil
}

// DeleteUser removes a user of a tenant and, by cascade, their keys, and
// writes events, in one transaction. It returns how many keys went;
// ENOTFOUND for a user keygate has not seen in that tenant.
func (s *KeyStore) DeleteUser(ctx context.Context, tenantID, userID string, events ...authz.AuditEvent) (_ int, err error) {
	defer mapDBError(&err)
	return s.deleteOwner(ctx, "user", (*userRow)(nil),
		func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("u.tenant_id = ?", tenantID).Where("u.id = ?", userID)
		},
		func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("k.tenant_id = ?", tenantID).Where("k.user_id = ?", userID)
		},
		func(q *bun.DeleteQuery) *bun.DeleteQuery {
			return q.Where("u.tenant_id = ?", tenantID).Where("u.id = ?", userID)
		},
		events)
}

// DeleteTenant removes a tenant and, by cascade, its users and keys, and
// writes events, in one transaction. It returns how many keys went;
// ENOTFOUND for a tenant keygate has not seen. The audit trail stays.
func (s *KeyStore) DeleteTenant(ctx context.Context, tenantID string, events ...authz.AuditEvent) (_ int, err error) {
	defer mapDBError(&err)
	return s.deleteOwner(ctx, "tenant", (*tenantRow)(nil),
		func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("t.id = ?", tenantID)
		},
		func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("k.tenant_id = ?", tenantID)
		},
		func(q *bun.DeleteQuery) *bun.DeleteQuery {
			return q.Where("t.id = ?", tenantID)
		},
		events)
}

// deleteOwner deletes the one row of model that owner selects and the keys
// that cascade from it, returning how many keys went. It locks the owner
// first (on Postgres; SQLite's write transaction excludes everyone), so no
// key can be added for it between the count and the delete.
func (s *KeyStore) deleteOwner(
	ctx context.Context,
	what string,
	model any,
	owner func(*bun.SelectQuery) *bun.SelectQuery,
	keys func(*bun.SelectQuery) *bun.SelectQuery,
	del func(*bun.DeleteQuery) *bun.DeleteQuery,
	events []authz.AuditEvent,
) (int, error) {
	audit, err := newAuditEventRows(events)
	if err != nil {
		return 0, err
	}
	var n int
	err = s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		q := owner(tx.NewSelect().Model(model).ColumnExpr("1"))
		if s.db.isPostgres() {
			q = q.For("UPDATE")
		}
		var one int
		if err := q.Scan(ctx, &one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return authz.Errorf(authz.ENOTFOUND, "%s not found", what)
			}
			return fmt.Errorf("find %s: %w", what, err)
		}
		count, err := keys(tx.NewSelect().Model((*apiKeyRow)(nil))).Count(ctx)
		if err != nil {
			return fmt.Errorf("count the %s's api keys: %w", what, err)
		}
		n = int(count)
		if _, err := del(tx.NewDelete().Model(model)).Exec(ctx); err != nil {
			return fmt.Errorf("delete %s: %w", what, err)
		}
		return insertAuditEventRows(ctx, tx, audit)
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// TouchKeys moves last_used_at forward for many keys with one UPDATE per
// thousand keys; an older time never overwrites a newer one, and ids that
// are unknown or not UUIDs are skipped.
func (s *KeyStore) TouchKeys(ctx context.Context, lastUsed map[string]time.Time) (err error) {
	defer mapDBError(&err)
	ids := make([]string, 0, len(lastUsed))
	for id := range lastUsed {
		if authz.ValidID(id) {
			ids = append(ids, id)
		}
	}
	// A fixed order makes concurrent flushes from several instances lock
	// rows in the same order.
	slices.Sort(ids)

	// Postgres types the VALUES list from its casts; SQLite needs none.
	idCast, tsCast := "", ""
	if s.db.isPostgres() {
		idCast, tsCast = "::uuid", "::timestamptz"
	}
	for start := 0; start < len(ids); start += maxRowsPerStatement {
		chunk := ids[start:min(start+maxRowsPerStatement, len(ids))]
		var b strings.Builder
		args := make([]any, 0, 2*len(chunk))
		b.WriteString("WITH v (id, ts) AS (VALUES ")
		for i, id := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?" + idCast + ", ?" + tsCast + ")")
			args = append(args, id, utc(lastUsed[id]))
		}
		b.WriteString(") UPDATE api_keys SET last_used_at = v.ts FROM v" +
			" WHERE api_keys.id = v.id" +
			" AND (api_keys.last_used_at IS NULL OR api_keys.last_used_at < v.ts)")
		if _, err := s.db.bun.NewRaw(b.String(), args...).Exec(ctx); err != nil {
			return fmt.Errorf("touch api keys: %w", err)
		}
	}
	return nil
}
