package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

var _ authz.UsageRollupStore = (*UsageStore)(nil)

// UsageStore keeps keys' usage history: one row per key and hour, whose
// counts writers add to.
type UsageStore struct {
	db *DB
}

// NewUsageStore returns a UsageStore over db.
func NewUsageStore(db *DB) *UsageStore {
	return &UsageStore{db: db}
}

type keyUsageRow struct {
	bun.BaseModel `bun:"table:key_usage,alias:u"`

	KeyID         string    `bun:"key_id,pk"`
	Hour          time.Time `bun:"hour,pk"`
	TenantID      string    `bun:"tenant_id,notnull"`
	Allowed       int64     `bun:"allowed,notnull"`
	Denied        int64     `bun:"denied,notnull"`
	RateLimited   int64     `bun:"rate_limited,notnull"`
	UsageExceeded int64     `bun:"usage_exceeded,notnull"`
	Refused       int64     `bun:"refused,notnull"`
}

// AddUsage adds each rollup's counts to its key's row of its hour, creating
// the row at first, with one statement per thousand rollups. Rollups of
// ids that are not UUIDs are skipped. Rollups are added in key order, so
// writers of several instances lock rows in the same order.
func (s *UsageStore) AddUsage(ctx context.Context, rollups []authz.UsageRollup) (err error) {
	defer mapDBError(&err)
	rows := make([]keyUsageRow, 0, len(rollups))
	seen := make(map[[2]any]int, len(rollups))
	for _, r := range rollups {
		if !authz.ValidID(r.KeyID) {
			continue
		}
		hour := utc(r.Hour.Truncate(time.Hour))
		k := [2]any{r.KeyID, hour.Unix()}
		if i, ok := seen[k]; ok { // one row per key and hour in a statement
			rows[i].add(r.UsageCounts)
			continue
		}
		seen[k] = len(rows)
		row := keyUsageRow{KeyID: r.KeyID, Hour: hour, TenantID: r.TenantID}
		row.add(r.UsageCounts)
		rows = append(rows, row)
	}
	sortUsageRows(rows)
	for start := 0; start < len(rows); start += maxRowsPerStatement {
		chunk := rows[start:min(start+maxRowsPerStatement, len(rows))]
		_, err := s.db.bun.NewInsert().Model(&chunk).
			On("CONFLICT (key_id, hour) DO UPDATE").
			Set("allowed = u.allowed + EXCLUDED.allowed").
			Set("denied = u.denied + EXCLUDED.denied").
			Set("rate_limited = u.rate_limited + EXCLUDED.rate_limited").
			Set("usage_exceeded = u.usage_exceeded + EXCLUDED.usage_exceeded").
			Set("refused = u.refused + EXCLUDED.refused").
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("add key usage: %w", err)
		}
	}
	return nil
}

func (r *keyUsageRow) add(c authz.UsageCounts) {
	r.Allowed += c.Allowed
	r.Denied += c.Denied
	r.RateLimited += c.RateLimited
	r.UsageExceeded += c.UsageExceeded
	r.Refused += c.Refused
}

func sortUsageRows(rows []keyUsageRow) {
	slices.SortFunc(rows, func(a, b keyUsageRow) int {
		if c := strings.Compare(a.KeyID, b.KeyID); c != 0 {
			return c
		}
		return a.Hour.Compare(b.Hour)
	})
}

// FindUsage returns the rollups of a key whose hour lies in [since, until),
// oldest first.
func (s *UsageStore) FindUsage(ctx context.Context, keyID string, since, until time.Time) (_ []authz.UsageRollup, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(keyID) {
		return nil, nil
	}
	var rows []keyUsageRow
	err = s.db.bun.NewSelect().Model(&rows).
		Where("u.key_id = ?", keyID).Where("u.hour >= ?", utc(since)).Where("u.hour < ?", utc(until)).
		OrderExpr("u.hour").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("find key usage: %w", err)
	}
	out := make([]authz.UsageRollup, len(rows))
	for i, r := range rows {
		out[i] = authz.UsageRollup{KeyID: r.KeyID, TenantID: r.TenantID, Hour: utc(r.Hour), UsageCounts: authz.UsageCounts{
			Allowed: r.Allowed, Denied: r.Denied, RateLimited: r.RateLimited, UsageExceeded: r.UsageExceeded, Refused: r.Refused}}
	}
	return out, nil
}

// DeleteUsageBefore deletes at most limit of the oldest rollups of hours
// before before and returns how many it deleted.
func (s *UsageStore) DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (_ int, err error) {
	defer mapDBError(&err)
	if limit <= 0 {
		limit = maxRowsPerStatement
	}
	oldest := s.db.bun.NewSelect().Model((*keyUsageRow)(nil)).Column("u.key_id", "u.hour").
		Where("u.hour < ?", utc(before)).OrderExpr("u.hour").Limit(int64(limit))
	res, err := s.db.bun.NewDelete().TableExpr("key_usage").Where("(key_id, hour) IN (?)", oldest).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete old key usage: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete old key usage: %w", err)
	}
	return int(n), nil
}
