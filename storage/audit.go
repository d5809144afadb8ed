package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

// Ensure AuditStore implements authz.AuditStore.
var _ authz.AuditStore = (*AuditStore)(nil)

// AuditStore keeps the audit trail in a DB. The trail has no foreign keys,
// so it outlives the tenants, users and keys it describes.
type AuditStore struct {
	db *DB
}

// NewAuditStore returns an AuditStore over db.
func NewAuditStore(db *DB) *AuditStore {
	return &AuditStore{db: db}
}

type auditEventRow struct {
	bun.BaseModel `bun:"table:audit_events,alias:e"`

	ID         string    `bun:"id,pk"`
	OccurredAt time.Time `bun:"occurred_at,notnull"`
	TenantID   string    `bun:"tenant_id,notnull"`
	ActorType  string    `bun:"actor_type,notnull"`
	ActorID    string    `bun:"actor_id,notnull"`
	Action     string    `bun:"action,notnull"`
	TargetType string    `bun:"target_type,notnull"`
	TargetID   string    `bun:"target_id,notnull"`
	Outcome    string    `bun:"outcome,notnull"`
	Reason     string    `bun:"reason,notnull"`
	IP         string    `bun:"ip,notnull"`
	UserAgent  string    `bun:"user_agent,notnull"`
	RequestID  string    `bun:"request_id,notnull"`
	TraceID    string    `bun:"trace_id,notnull"`
	Details    string    `bun:"details,notnull"` // JSON object, encoded here
}

// newAuditEventRows converts events for storage, within the bounds of
// authz.CapAuditEvent, giving an id to each that has none (a UUIDv7 of its
// time, so ids sort like the events).
func newAuditEventRows(events []authz.AuditEvent) ([]auditEventRow, error) {
	rows := make([]auditEventRow, len(events))
	for i := range events {
		capped := authz.CapAuditEvent(events[i])
		ev := &capped
		id := ev.ID
		if id == "" {
			var err error
			if id, err = authz.NewID(ev.OccurredAt, nil); err != nil {
				return nil, err
			}
		} else if !authz.ValidID(id) {
			return nil, fmt.Errorf("store audit event: id %q is not a canonical UUID", id)
		}
		details := []byte("{}")
		if ev.Details != nil {
			var err error
			if details, err = json.Marshal(ev.Details); err != nil {
				return nil, fmt.Errorf("encode the details of audit event %s: %w", id, err)
			}
		}
		rows[i] = auditEventRow{
			ID:         id,
			OccurredAt: utc(ev.OccurredAt),
			TenantID:   ev.TenantID,
			ActorType:  ev.ActorType,
			ActorID:    ev.ActorID,
			Action:     ev.Action,
			TargetType: ev.TargetType,
			TargetID:   ev.TargetID,
			Outcome:    ev.Outcome,
			Reason:     ev.Reason,
			IP:         ev.IP,
			UserAgent:  ev.UserAgent,
			RequestID:  ev.RequestID,
			TraceID:    ev.TraceID,
			Details:    string(details),
		}
	}
	return rows, nil
}

// event converts a stored row back into the domain type. Details is never
// nil, so it reads as {} rather than null.
func (r *auditEventRow) event() (*authz.AuditEvent, error) {
	details := map[string]any{}
	if err := json.Unmarshal([]byte(r.Details), &details); err != nil {
		return nil, fmt.Errorf("decode the details of audit event %s: %w", r.ID, err)
	}
	if details == nil { // the JSON was null
		details = map[string]any{}
	}
	return &authz.AuditEvent{
		ID:         r.ID,
		OccurredAt: utc(r.OccurredAt),
		TenantID:   r.TenantID,
		ActorType:  r.ActorType,
		ActorID:    r.ActorID,
		Action:     r.Action,
		TargetType: r.TargetType,
		TargetID:   r.TargetID,
		Outcome:    r.Outcome,
		Reason:     r.Reason,
		IP:         r.IP,
		UserAgent:  r.UserAgent,
		RequestID:  r.RequestID,
		TraceID:    r.TraceID,
		Details:    details,
	}, nil
}

// insertAuditEventRows writes rows with one multi-row INSERT per thousand.
// An event whose id is already stored is skipped, so a batch retried after
// an unclear failure does not write its events twice.
func insertAuditEventRows(ctx context.Context, db bun.IDB, rows []auditEventRow) error {
	for start := 0; start < len(rows); start += maxRowsPerStatement {
		chunk := rows[start:min(start+maxRowsPerStatement, len(rows))]
		if _, err := db.NewInsert().Model(&chunk).On("CONFLICT (id) DO NOTHING").Exec(ctx); err != nil {
			return fmt.Errorf("insert audit events: %w", err)
		}
	}
	return nil
}

// InsertAuditEvents writes events in one batch: one statement per thousand
// events, in one transaction when there is more than one. Events without an
// id get one; an event whose id is already stored is skipped.
func (s *AuditStore) InsertAuditEvents(ctx context.Context, events []authz.AuditEvent) (err error) {
	defer mapDBError(&err)
	rows, err := newAuditEventRows(events)
	if err != nil {
		return err
	}
	if len(rows) <= maxRowsPerStatement {
		return insertAuditEventRows(ctx, s.db.bun, rows)
	}
	return s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return insertAuditEventRows(ctx, tx, rows)
	})
}

// FindAuditEvents returns a page of a tenant's events, newest first, cut by
// id like FindKeys. Action matches exactly; KeyID matches events whose actor
// or target is that key; Since is inclusive and Until exclusive.
func (s *AuditStore) FindAuditEvents(ctx context.Context, filter authz.AuditFilter) (_ *authz.AuditPage, err error) {
	defer mapDBError(&err)
	after, err := decodeCursor(cursorAudit, filter.Cursor)
	if err != nil {
		return nil, err
	}
	limit := pageLimit(filter.Limit)

	var rows []auditEventRow
	q := s.db.bun.NewSelect().Model(&rows).Where("e.tenant_id = ?", filter.TenantID)
	if filter.Action != "" {
		q = q.Where("e.action = ?", filter.Action)
	}
	if filter.KeyID != "" {
		q = q.Where("(e.actor_id = ? OR e.target_id = ?)", filter.KeyID, filter.KeyID)
	}
	if filter.Since != nil {
		q = q.Where("e.occurred_at >= ?", utc(*filter.Since))
	}
	if filter.Until != nil {
		q = q.Where("e.occurred_at < ?", utc(*filter.Until))
	}
	if after != "" {
		q = q.Where("e.id < ?", after)
	}
	if err := q.OrderExpr("e.id DESC").Limit(int64(limit) + 1).Scan(ctx); err != nil {
		return nil, fmt.Errorf("find audit events: %w", err)
	}

	events, next, err := cutPage(rows, limit, idCursor(cursorAudit, func(r *auditEventRow) string { return r.ID }), (*auditEventRow).event)
	if err != nil {
		return nil, err
	}
	return &authz.AuditPage{Events: events, NextCursor: next}, nil
}
