package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
)

var _ authz.AuditPruner = (*AuditStore)(nil)

// DeleteAuditEventsBefore deletes at most limit of the oldest events that
// occurred before before and returns how many it deleted. Event ids are
// UUIDv7s of their time, so the oldest are found on the primary key,
// without an index of their own; the time is checked as well.
func (s *AuditStore) DeleteAuditEventsBefore(ctx context.Context, before time.Time, limit int) (_ int, err error) {
	defer mapDBError(&err)
	if limit <= 0 {
		limit = maxRowsPerStatement
	}
	oldest := s.db.bun.NewSelect().Model((*auditEventRow)(nil)).Column("e.id").
		Where("e.id < ?", idBefore(before)).Where("e.occurred_at < ?", utc(before)).
		OrderExpr("e.id").Limit(int64(limit))
	res, err := s.db.bun.NewDelete().TableExpr("audit_events").Where("id IN (?)", oldest).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete old audit events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete old audit events: %w", err)
	}
	return int(n), nil
}

// idBefore is the smallest UUIDv7 of t's millisecond: every id made for an
// earlier millisecond sorts before it.
func idBefore(t time.Time) string {
	ms := max(t.UnixMilli(), 0)
	return fmt.Sprintf("%08x-%04x-0000-0000-000000000000", uint64(ms)>>16, uint64(ms)&0xffff)
}
