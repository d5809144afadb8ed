package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

type scopeCeilingRow struct {
	bun.BaseModel `bun:"table:scope_ceilings,alias:c"`

	TenantID        string    `bun:"tenant_id,pk"`
	UserID          string    `bun:"user_id,pk"`
	PermissionScope string    `bun:"permission_scope,notnull"` // JSON, encoded here
	UpdatedBy       string    `bun:"updated_by,notnull"`
	CreatedAt       time.Time `bun:"created_at,notnull"`
	UpdatedAt       time.Time `bun:"updated_at,notnull"`
}

func errCeilingNotFound() error {
	return authz.Errorf(authz.ENOTFOUND, "the user has no scope ceiling; their keys are unrestricted")
}

// FindScopeCeiling returns a user's scope ceiling; ENOTFOUND when none is
// set.
func (s *KeyStore) FindScopeCeiling(ctx context.Context, tenantID, userID string) (_ *authz.ScopeCeiling, err error) {
	defer mapDBError(&err)
	row := new(scopeCeilingRow)
	if err := s.db.bun.NewSelect().Model(row).Where("c.tenant_id = ?", tenantID).Where("c.user_id = ?", userID).
		Limit(1).Scan(ctx); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errCeilingNotFound()
		}
		return nil, fmt.Errorf("find scope ceiling: %w", err)
	}
	var scope authz.Scope
	if err := json.Unmarshal([]byte(row.PermissionScope), &scope); err != nil {
		return nil, fmt.Errorf("decode the scope ceiling of %s/%s: %w", tenantID, userID, err)
	}
	return &authz.ScopeCeiling{
		TenantID: row.TenantID, UserID: row.UserID, Scope: nonNilScope(scope), UpdatedBy: row.UpdatedBy,
		CreatedAt: utc(row.CreatedAt), UpdatedAt: utc(row.UpdatedAt),
	}, nil
}

// SetScopeCeiling creates or replaces a user's scope ceiling, creating the
// tenant and user on first use, and writes events, in one transaction. A
// replaced ceiling keeps its created_at; c's times are set to their stored
// form.
func (s *KeyStore) SetScopeCeiling(ctx context.Context, c *authz.ScopeCeiling, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	scope, err := json.Marshal(nonNilScope(c.Scope))
	if err != nil {
		return fmt.Errorf("encode scope ceiling: %w", err)
	}
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	row := &scopeCeilingRow{TenantID: c.TenantID, UserID: c.UserID, PermissionScope: string(scope), UpdatedBy: c.UpdatedBy,
		CreatedAt: utc(c.CreatedAt), UpdatedAt: utc(c.UpdatedAt)}
	err = s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := ensureUser(ctx, tx, c.TenantID, c.UserID, row.CreatedAt); err != nil {
			return err
		}
		if _, err := tx.NewInsert().Model(row).
			On("CONFLICT (tenant_id, user_id) DO UPDATE").
			Set("permission_scope = EXCLUDED.permission_scope").
			Set("updated_by = EXCLUDED.updated_by").
			Set("updated_at = EXCLUDED.updated_at").
			Returning("created_at").Exec(ctx, &row.CreatedAt); err != nil {
			return fmt.Errorf("set scope ceiling: %w", err)
		}
		return insertAuditEventRows(ctx, tx, audit)
	})
	if err != nil {
		return err
	}
	c.Scope = nonNilScope(c.Scope)
	c.CreatedAt, c.UpdatedAt = utc(row.CreatedAt), row.UpdatedAt
	return nil
}

// DeleteScopeCeiling removes a user's scope ceiling and writes events, in
// one transaction; ENOTFOUND when none is set.
func (s *KeyStore) DeleteScopeCeiling(ctx context.Context, tenantID, userID string, events ...authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	audit, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	return s.db.deleteWhere(ctx, (*scopeCeilingRow)(nil), func(q *bun.DeleteQuery) *bun.DeleteQuery {
		return q.Where("c.tenant_id = ?", tenantID).Where("c.user_id = ?", userID)
	}, audit, errCeilingNotFound)
}
