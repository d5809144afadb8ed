package storage

import (
	"testing"

	"github.com/keygate/keygate/authz"
)

// FuzzDecodeCursor: a cursor from a client never panics, is refused as
// EINVALID unless this service could have issued it, and one accepted
// encodes back to itself (one spelling per cursor).
func FuzzDecodeCursor(f *testing.F) {
	c, err := encodeCursor(cursorKeys, "01939c6a-7c2e-7d4a-9f1e-2b3c4d5e6f70")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c)
	f.Add(encodeNameCursor(cursorMCPTools, "github__search"))
	f.Add("")
	f.Fuzz(func(t *testing.T, cursor string) {
		for _, kind := range []byte{cursorKeys, cursorAudit, cursorMCPServers} {
			id, err := decodeCursor(kind, cursor)
			switch {
			case err != nil:
				if authz.ErrorCode(err) != authz.EINVALID {
					t.Fatalf("decodeCursor(%q): %v", cursor, err)
				}
			case cursor == "":
				if id != "" {
					t.Fatalf("empty cursor gave %q", id)
				}
			default:
				if again, err := encodeCursor(kind, id); err != nil || again != cursor {
					t.Fatalf("cursor %q -> %q -> %q, %v", cursor, id, again, err)
				}
			}
		}
		name, err := decodeNameCursor(cursorMCPTools, cursor)
		switch {
		case err != nil:
			if authz.ErrorCode(err) != authz.EINVALID {
				t.Fatalf("decodeNameCursor(%q): %v", cursor, err)
			}
		case cursor != "" && encodeNameCursor(cursorMCPTools, name) != cursor:
			t.Fatalf("name cursor %q -> %q does not round-trip", cursor, name)
		}
	})
}
