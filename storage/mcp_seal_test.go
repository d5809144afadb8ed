package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func mustKeyring(t *testing.T, text string) *storage.Keyring {
	t.Helper()
	k, err := storage.ParseKeyring(text)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	entry, err := storage.GenerateKeyEntry("k2")
	if err != nil {
		t.Fatal(err)
	}
	k := mustKeyring(t, entry+",\n "+storagetest.KeyringText+"\n")
	if k.CurrentID() != "k2" {
		t.Fatalf("current key %q, want the first", k.CurrentID())
	}
	secret := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for _, bad := range []string{"", "nocolon", "k1:c2hvcnQ=", "bad id:" + secret, "k1:" + secret + ",k1:" + secret, "k1:!!!"} {
		_, err := storage.ParseKeyring(bad)
		if err == nil || !strings.Contains(err.Error(), "KEYGATE_ENCRYPTION_KEY") || strings.Contains(err.Error(), secret) {
			t.Errorf("ParseKeyring(%q): %v", bad, err)
		}
	}
}

// TestMCPHeaders_SealedAtRest: headers are AES-256-GCM ciphertext in the
// database, bound to their row; rows from before are sealed at start; keys
// rotate.
func TestMCPHeaders_SealedAtRest(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		const secret = "Bearer hdr-canary-7f3a"
		ms := storage.NewMCPStore(db, storagetest.Keyring(t))
		a := newMCPServer(t, "acme", "root", "a", at(0))
		a.Headers = map[string]string{"Authorization": secret}
		mustCreateServer(t, ms, a)
		b := mustCreateServer(t, ms, newMCPServer(t, "acme", "root", "b", at(1)))

		type raw struct{ Headers, KeyID, Sealed string }
		read := func(id string) raw {
			t.Helper()
			var r raw
			if err := db.Bun().NewRaw("SELECT headers::text, headers_key_id, headers_sealed FROM mcp_servers WHERE id = ?", id).
				Scan(ctx, &r.Headers, &r.KeyID, &r.Sealed); err != nil {
				if err := db.Bun().NewRaw("SELECT headers, headers_key_id, headers_sealed FROM mcp_servers WHERE id = ?", id).
					Scan(ctx, &r.Headers, &r.KeyID, &r.Sealed); err != nil {
					t.Fatal(err)
				}
			}
			return r
		}
		r := read(a.ID)
		if r.KeyID != "test1" || r.Sealed == "" || strings.Contains(r.Headers+r.Sealed, "hdr-canary") {
			t.Fatalf("stored row %+v: want sealed headers", r)
		}
		got, err := ms.FindMCPServerByID(ctx, "acme", a.ID)
		if err != nil || got.Headers["Authorization"] != secret {
			t.Fatalf("read back %+v, %v", got, err)
		}

		// A sealed value copied to another row does not open there.
		if _, err := db.Bun().NewRaw("UPDATE mcp_servers SET headers_sealed = ? WHERE id = ?", r.Sealed, b.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := ms.FindMCPServerByID(ctx, "acme", b.ID); err == nil {
			t.Fatal("headers moved to another row opened")
		}
		if _, err := db.Bun().NewRaw("DELETE FROM mcp_servers WHERE id = ?", b.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}

		// A row from before headers were sealed is read, then sealed.
		legacy := newMCPServer(t, "acme", "root", "legacy", at(2))
		mustCreateServer(t, ms, legacy)
		if _, err := db.Bun().NewRaw("UPDATE mcp_servers SET headers = ?, headers_key_id = '', headers_sealed = '' WHERE id = ?",
			`{"X-Token":"legacy-canary"}`, legacy.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := ms.FindMCPServerByID(ctx, "acme", legacy.ID); err != nil || got.Headers["X-Token"] != "legacy-canary" {
			t.Fatalf("legacy row %+v, %v", got, err)
		}
		if n, err := ms.SealHeaders(ctx, true); err != nil || n != 1 {
			t.Fatalf("SealHeaders(plain) = %d, %v; want 1", n, err)
		}
		if r := read(legacy.ID); r.KeyID != "test1" || strings.Contains(r.Headers+r.Sealed, "legacy-canary") {
			t.Fatalf("legacy row after sealing %+v", r)
		}

		// Rotation: a new key first, the old one kept to open.
		entry, _ := storage.GenerateKeyEntry("k2")
		rotated := storage.NewMCPStore(db, mustKeyring(t, entry+","+storagetest.KeyringText))
		if n, err := rotated.SealHeaders(ctx, false); err != nil || n != 2 {
			t.Fatalf("rotate = %d, %v; want 2", n, err)
		}
		onlyNew := storage.NewMCPStore(db, mustKeyring(t, entry))
		if got, err := onlyNew.FindMCPServerByID(ctx, "acme", a.ID); err != nil || got.Headers["Authorization"] != secret {
			t.Fatalf("after rotation, with the new key alone: %+v, %v", got, err)
		}
		_, err = ms.FindMCPServerByID(ctx, "acme", a.ID)
		if err == nil || !strings.Contains(err.Error(), `"k2"`) || strings.Contains(err.Error(), "canary") {
			t.Fatalf("the old key alone: %v; want an error naming key k2", err)
		}
		if code := authz.ErrorCode(err); code != authz.EINTERNAL {
			t.Fatalf("code %s", code)
		}
	})
}
