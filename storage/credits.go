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
// other writer), passes them to spend (nil for a key without credits) and
// saves the remaining credits and the last refill when spend changed them.
// Concurrent spends of one key, from any instance, thus take turns: no
// credit is spent twice. Only those two columns change, which the change
// feed ignores. Returns ENOTFOUND for an absent key.
func (s *KeyStore) SpendCredits(ctx context.Context, id string, spend func(*authz.Credits)) (err error) {
	defer mapDBError(&err)
	if !authz.ValidID(id) {
		return errKeyNotFound()
	}
	return s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var cols creditColumns
		err := s.db.lockingSelect(tx).Model((*apiKeyRow)(nil)).
			Column("credits_remaining", "credits_refill_amount", "credits_refill_interval_ms", "credits_refilled_at").
			Where("k.id = ?", id).Limit(1).Scan(ctx, &cols)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return errKeyNotFound()
		case err != nil:
			return fmt.Errorf("read credits: %w", err)
		}
		c := cols.credits()
		if c == nil {
			spend(nil)
			return nil
		}
		before := *c
		spend(c)
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
