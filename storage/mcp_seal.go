package storage

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// SealHeaders seals with the keyring's current key the headers of every
// server not sealed with it: with plainOnly, only the rows written before
// headers were sealed (keygate does this at start); otherwise every row
// sealed with an older key too (`keygate secrets rotate`). It returns how
// many rows it sealed. Each row is read and written in one transaction, so
// a concurrent change is never lost.
func (s *MCPStore) SealHeaders(ctx context.Context, plainOnly bool) (n int, err error) {
	defer mapDBError(&err)
	if s.keyring == nil {
		return 0, fmt.Errorf("no encryption key (%s)", EncryptionKeySetting)
	}
	current := s.keyring.CurrentID()
	err = s.db.bun.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var rows []mcpServerRow
		q := s.db.lockingSelect(tx).Model(&rows)
		if plainOnly {
			q = q.Where("s.headers_key_id = ''")
		} else {
			q = q.Where("s.headers_key_id <> ?", current)
		}
		if err := q.Scan(ctx); err != nil {
			return fmt.Errorf("find mcp servers to seal: %w", err)
		}
		for i := range rows {
			r := &rows[i]
			headers, err := s.headers(r)
			if err != nil {
				return err
			}
			if r.HeadersKeyID, r.HeadersSeal, err = s.sealHeaders(r.TenantID, r.ID, headers); err != nil {
				return err
			}
			r.Headers = "{}"
			if _, err := tx.NewUpdate().Model(r).Column("headers", "headers_key_id", "headers_sealed").
				Where("s.tenant_id = ?", r.TenantID).Where("s.id = ?", r.ID).Exec(ctx); err != nil {
				return fmt.Errorf("seal mcp server headers: %w", err)
			}
		}
		n = len(rows)
		return nil
	})
	return n, err
}
