package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

var _ authz.CreditStore = (*KeyStore)(nil)

// SpendCredits loads the credits of the key with id inside a transaction,
// its row locked on Postgres (a SQLite write transaction excludes every
// other writer), passes them to spend (nil for a key without credits) with
// the key's version, its updated_at, and saves the remaining credits and
// the last refill when spend changed them. Concurrent spends of one key,
// from any instance, thus take turns: no credit is spent twice. Only those
// two columns change, which the change feed ignores. Returns ENOTFOUND for
// an absent key.
func (s *KeyStore) SpendCredits(ctx context.Context, id string, spend func(c *authz.Credits, version time.Time)) (err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return errKeyNotFound()
	}
	return s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var cols struct {
			creditColumns
			UpdatedAt time.Time `bun:"updated_at"`
		}
		err := s.db.lockingSelect(tx).Model((*apiKeyRow)(nil)).
			Column("credits_remaining", "credits_refill_amount", "credits_refill_interval_ms", "credits_refilled_at", "updated_at").
			Where("k.id = ?", id).Limit(1).Scan(ctx, &cols)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errKeyNotFound()
		case err != nil:
			return fmt.Errorf("read credits: %w", err)
		}
		version := utc(cols.UpdatedAt)
		c := cols.credits()
		if c == nil {
			spend(nil, version)
			return nil
		}
		before := *c
		spend(c, version)
		if c.Remaining == before.Remaining && sameTime(c.RefilledAt, before.RefilledAt) {
			return nil
		}
		_, err = tx.NewUpdate().Model((*apiKeyRow)(nil)).
			Set("credits_remaining = ?", c.Remaining).
			Set("credits_refilled_at = ?", utcPtr(c.RefilledAt)).
			Where("id = ?", id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("spend credits: %w", err)
		}
		return nil
	})
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// ReturnCredits adds n credits back to the key with id unless the key
// changed since version (its updated_at): a management change may have set
// its credits anew, which what was reserved before must not add to. It
// reports whether the credits went back.
func (s *KeyStore) ReturnCredits(ctx context.Context, id string, n int64, version time.Time) (_ bool, err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) || n <= 0 {
		return false, nil
	}
	res, err := s.db.bun.NewUpdate().Model((*apiKeyRow)(nil)).
		Set("credits_remaining = credits_remaining + ?", n).
		Where("id = ?", id).Where("updated_at = ?", utc(version)).Where("credits_remaining IS NOT NULL").
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("return credits: %w", err)
	}
	rows, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("return credits: %w", err)
	}
	return rows == 1, nil
}
