package storage

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

// Cursor kinds. A cursor is base64url (unpadded) of one kind byte and the 16
// bytes of the last id on the page. The kind byte doubles as the format's
// version and keeps a cursor of one listing from being used on another.
const (
	cursorKeys  byte = 0x01
	cursorAudit byte = 0x02
)

// encodeCursor returns the cursor of a page that ends at id, a canonical
// UUID.
func encodeCursor(kind byte, id string) (string, error) {
	var b [17]byte
	b[0] = kind
	if !authz.ValidID(id) {
		return "", fmt.Errorf("make a cursor: id %q is not a canonical UUID", id)
	}
	if _, err := hex.Decode(b[1:], []byte(strings.ReplaceAll(id, "-", ""))); err != nil {
		return "", fmt.Errorf("make a cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// decodeCursor returns the id a cursor of kind points after, "" for the
// empty cursor (the first page), or EINVALID for anything it did not issue.
func decodeCursor(kind byte, cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	// Strict: one spelling per cursor, no stray trailing bits, and no line
	// breaks, which Go's base64 skips even in strict mode.
	b, err := decodeCursorBytes(cursor)
	if err != nil || len(b) != 17 || b[0] != kind {
		return "", authz.Invalid(authz.FieldError{Field: "cursor", Message: "is not a cursor this service issued"})
	}
	var out [36]byte
	hex.Encode(out[0:8], b[1:5])
	out[8] = '-'
	hex.Encode(out[9:13], b[5:7])
	out[13] = '-'
	hex.Encode(out[14:18], b[7:9])
	out[18] = '-'
	hex.Encode(out[19:23], b[9:11])
	out[23] = '-'
	hex.Encode(out[24:], b[11:17])
	return string(out[:]), nil
}

// decodeCursorBytes decodes unpadded base64url strictly, refusing the CR
// and LF that encoding/base64 would skip.
func decodeCursorBytes(cursor string) ([]byte, error) {
	if strings.ContainsAny(cursor, "\r\n") {
		return nil, base64.CorruptInputError(strings.IndexAny(cursor, "\r\n"))
	}
	return base64.RawURLEncoding.Strict().DecodeString(cursor)
}

// cutPage turns rows read with one more than limit into a page: the rows
// as domain values, and when the extra row shows another page follows, the
// cursor after the last row kept ("" when none).
func cutPage[R, T any](rows []R, limit int, cursor func(last *R) (string, error), convert func(*R) (T, error)) ([]T, string, error) {
	var next string
	if len(rows) > limit {
		rows = rows[:limit]
		var err error
		if next, err = cursor(&rows[limit-1]); err != nil {
			return nil, "", err
		}
	}
	out := make([]T, 0, len(rows))
	for i := range rows {
		v, err := convert(&rows[i])
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

// idCursor is the cursor function of a listing cut by id.
func idCursor[R any](kind byte, id func(*R) string) func(*R) (string, error) {
	return func(last *R) (string, error) { return encodeCursor(kind, id(last)) }
}

// pageLimit applies the listing bounds: 0 (or less) means the default, and
// no page exceeds the maximum.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return authz.DefaultLimit
	case n > authz.MaxLimit:
		return authz.MaxLimit
	}
	return n
}

// ownedPage is a listing of a tenant's rows (keys, MCP servers) cut by id,
// newest first: the rows of tenantID, of userID when set, narrowed further
// by where, after cursor; limit rows at most and the next cursor. alias is
// the model's table alias.
type ownedPage[R, T any] struct {
	kind    byte
	alias   string
	id      func(*R) string
	convert func(*R) (T, error)
}

func (p ownedPage[R, T]) read(ctx context.Context, db bun.IDB, tenantID string, userID *string, cursor string, limit int,
	where func(*bun.SelectQuery) *bun.SelectQuery) ([]T, string, error) {
	after, err := decodeCursor(p.kind, cursor)
	if err != nil {
		return nil, "", err
	}
	limit = pageLimit(limit)
	var rows []R
	q := db.NewSelect().Model(&rows).Where(p.alias+".tenant_id = ?", tenantID)
	if userID != nil {
		q = q.Where(p.alias+".user_id = ?", *userID)
	}
	if where != nil {
		q = where(q)
	}
	if after != "" {
		q = q.Where(p.alias+".id < ?", after)
	}
	// One more than the page, to learn whether another page follows.
	if err := q.OrderExpr(p.alias + ".id DESC").Limit(int64(limit) + 1).Scan(ctx); err != nil {
		return nil, "", fmt.Errorf("list %s: %w", p.alias, err)
	}
	return cutPage(rows, limit, idCursor(p.kind, p.id), p.convert)
}
