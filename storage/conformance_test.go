package storage_test

// The conformance suite: every test runs against SQLite and Postgres through
// storagetest.ForEachDB, so both dialects are held to the same contract, the
// one authz.KeyStore and authz.AuditStore state. Times are fixed; nothing
// sleeps.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// base is the suite's clock: every time is an offset from it.
var base = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ptr[T any](v T) *T { return &v }

// newKey returns a valid key of tenant and user named name, created at t,
// with a random token hash and an id of t.
func newKey(tb testing.TB, tenant, user, name string, t time.Time) *authz.APIKey {
	tb.Helper()
	id, err := authz.NewID(t, nil)
	if err != nil {
		tb.Fatal(err)
	}
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	sum := sha256.Sum256(secret[:])
	return &authz.APIKey{
		ID:        id,
		Name:      name,
		Start:     "pk_" + hex.EncodeToString(secret[:3])[:5],
		TenantID:  tenant,
		UserID:    user,
		Scope:     authz.Scope{AgentIDs: []string{"agent-1"}, MCPToolIDs: []string{"github__*"}},
		Enabled:   true,
		CreatedAt: t,
		UpdatedAt: t,
		Hash:      hex.EncodeToString(sum[:]),
	}
}

func mustCreate(tb testing.TB, ks *storage.KeyStore, k *authz.APIKey, events ...authz.AuditEvent) *authz.APIKey {
	tb.Helper()
	if err := ks.CreateKey(context.Background(), k, events...); err != nil {
		tb.Fatalf("CreateKey(%s): %v", k.Name, err)
	}
	return k
}

// keyEvent is an audit event about key k at t.
func keyEvent(action string, k *authz.APIKey, t time.Time) authz.AuditEvent {
	return authz.AuditEvent{
		OccurredAt: t, TenantID: k.TenantID, ActorType: authz.ActorTypeUser, ActorID: k.UserID,
		Action: action, TargetType: "api_key", TargetID: k.ID, Outcome: authz.OutcomeSuccess,
	}
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := authz.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// sameKey fails unless got and want hold the same data, times compared as
// instants that must be in UTC.
func sameKey(tb testing.TB, got, want *authz.APIKey) {
	tb.Helper()
	norm := func(k *authz.APIKey) authz.APIKey {
		c := *k
		c.CreatedAt, c.UpdatedAt, c.ExpiresAt, c.LastUsedAt = time.Time{}, time.Time{}, nil, nil
		c.RotatedAt, c.PreviousExpiresAt = nil, nil
		if c.Credits != nil {
			credits := *c.Credits
			credits.RefilledAt = nil
			c.Credits = &credits
		}
		return c
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		tb.Fatalf("key =\n%+v\nwant\n%+v", g, w)
	}
	sameTime(tb, "created_at", &got.CreatedAt, &want.CreatedAt)
	sameTime(tb, "updated_at", &got.UpdatedAt, &want.UpdatedAt)
	sameTime(tb, "expires_at", got.ExpiresAt, want.ExpiresAt)
	sameTime(tb, "last_used_at", got.LastUsedAt, want.LastUsedAt)
	sameTime(tb, "rotated_at", got.RotatedAt, want.RotatedAt)
	sameTime(tb, "previous_expires_at", got.PreviousExpiresAt, want.PreviousExpiresAt)
	if got.Credits != nil && want.Credits != nil {
		sameTime(tb, "credits.refilled_at", got.Credits.RefilledAt, want.Credits.RefilledAt)
	}
}

func sameTime(tb testing.TB, field string, got, want *time.Time) {
	tb.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		tb.Fatalf("%s = %v, want %v", field, got, want)
	case !got.Equal(*want):
		tb.Fatalf("%s = %v, want %v", field, got, want)
	case got.Location() != time.UTC:
		tb.Fatalf("%s is in %v, want UTC", field, got.Location())
	}
}

// allEvents returns every event of a tenant, newest first.
func allEvents(tb testing.TB, as *storage.AuditStore, tenant string) []*authz.AuditEvent {
	tb.Helper()
	var out []*authz.AuditEvent
	f := authz.AuditFilter{TenantID: tenant, Limit: authz.MaxLimit}
	for {
		page, err := as.FindAuditEvents(context.Background(), f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.NextCursor == "" {
			return out
		}
		f.Cursor = page.NextCursor
	}
}

func actions(events []*authz.AuditEvent) []string {
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.Action
	}
	return out
}

func TestMigrations(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		status := func(wantApplied bool) {
			t.Helper()
			st, err := db.MigrationStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st) == 0 {
				t.Fatal("no migrations")
			}
			for _, m := range st {
				if m.Applied != wantApplied || (m.GroupID != 0) != wantApplied {
					t.Fatalf("status %+v, want applied=%v", m, wantApplied)
				}
			}
			if st[0].Name != "20261125000001_core" {
				t.Fatalf("first migration %q", st[0].Name)
			}
		}
		status(true)
		if err := db.MigrateUp(ctx); err != nil {
			t.Fatalf("MigrateUp again: %v", err)
		}
		status(true)

		mustCreate(t, ks, newKey(t, "acme", "alice", "ci", at(0)))
		if err := db.MigrateDown(ctx); err != nil {
			t.Fatalf("MigrateDown: %v", err)
		}
		status(false)
		if _, err := ks.CountKeys(ctx, "acme"); err == nil {
			t.Fatal("api_keys still exists after MigrateDown")
		}
		if err := db.MigrateDown(ctx); err != nil {
			t.Fatalf("MigrateDown with nothing applied: %v", err)
		}

		if err := db.MigrateUp(ctx); err != nil {
			t.Fatalf("MigrateUp after down: %v", err)
		}
		status(true)
		if n, err := ks.CountKeys(ctx, "acme"); err != nil || n != 0 {
			t.Fatalf("CountKeys after down and up = %d, %v; want 0", n, err)
		}
		mustCreate(t, ks, newKey(t, "acme", "alice", "ci", at(0)))
	})
}

func TestCreateKey_Conflicts(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		existing := mustCreate(t, ks, newKey(t, "acme", "alice", "deploy", at(0)))

		tests := []struct {
			note     string
			key      func() *authz.APIKey
			wantCode string
			wantMsg  string
		}{
			{
				note:     "the same name in the same tenant is taken",
				key:      func() *authz.APIKey { return newKey(t, "acme", "alice", "deploy", at(time.Second)) },
				wantCode: authz.ECONFLICT,
				wantMsg:  `a key named "deploy" already exists in this tenant`,
			},
			{
				note:     "names are per tenant, not per user",
				key:      func() *authz.APIKey { return newKey(t, "acme", "bob", "deploy", at(2*time.Second)) },
				wantCode: authz.ECONFLICT,
				wantMsg:  `a key named "deploy" already exists in this tenant`,
			},
			{
				note: "the same name in another tenant is fine",
				key:  func() *authz.APIKey { return newKey(t, "globex", "alice", "deploy", at(3*time.Second)) },
			},
			{
				note: "names differ by case",
				key:  func() *authz.APIKey { return newKey(t, "acme", "alice", "Deploy", at(4*time.Second)) },
			},
			{
				note: "a token hash is unique across tenants",
				key: func() *authz.APIKey {
					k := newKey(t, "initech", "carol", "other", at(5*time.Second))
					k.Hash = existing.Hash
					return k
				},
				wantCode: authz.ECONFLICT,
				wantMsg:  "a key conflicts with an existing one",
			},
			{
				note: "an id is unique",
				key: func() *authz.APIKey {
					k := newKey(t, "acme", "alice", "same-id", at(6*time.Second))
					k.ID = existing.ID
					return k
				},
				wantCode: authz.ECONFLICT,
			},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				k := tt.key()
				err := ks.CreateKey(ctx, k, keyEvent(authz.AuditKeyCreated, k, k.CreatedAt))
				wantCode(t, err, tt.wantCode)
				if tt.wantMsg != "" && authz.ErrorMessage(err) != tt.wantMsg {
					t.Errorf("message = %q, want %q", authz.ErrorMessage(err), tt.wantMsg)
				}
				if err != nil && strings.Contains(err.Error(), k.Hash) {
					t.Errorf("error %q reveals the token hash", err)
				}
				// The event is written with the key or not at all.
				found := false
				for _, ev := range allEvents(t, as, k.TenantID) {
					found = found || ev.TargetID == k.ID && ev.OccurredAt.Equal(k.CreatedAt)
				}
				if found != (err == nil) {
					t.Errorf("audit event written = %v, CreateKey error = %v", found, err)
				}
			})
		}
		// A failed create leaves no tenant behind.
		if _, err := ks.DeleteTenant(ctx, "initech"); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Errorf("DeleteTenant(initech) = %v, want ENOTFOUND: the failed create left its tenant", err)
		}
	})
}

func TestCreateKey_RoundTrip(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		paris := time.FixedZone("CET", 3600)
		nanos := time.Date(2027, 3, 4, 5, 6, 7, 123456789, paris)

		tests := []struct {
			note  string
			edit  func(k *authz.APIKey)
			scope authz.Scope // what reads back
		}{
			{
				note:  "an empty scope reads back as four empty lists, not nulls",
				edit:  func(k *authz.APIKey) { k.Scope = authz.Scope{} },
				scope: authz.Scope{AgentIDs: []string{}, FlowIDs: []string{}, MCPToolIDs: []string{}, VectorStoreIDs: []string{}},
			},
			{
				note: "globs and every list survive",
				edit: func(k *authz.APIKey) {
					k.Scope = authz.Scope{
						AgentIDs: []string{"*"}, FlowIDs: []string{"flow-1", "flow-2"},
						MCPToolIDs: []string{"github__*", "slack__post"}, VectorStoreIDs: []string{"vs:docs/eu@v2"},
					}
				},
				scope: authz.Scope{
					AgentIDs: []string{"*"}, FlowIDs: []string{"flow-1", "flow-2"},
					MCPToolIDs: []string{"github__*", "slack__post"}, VectorStoreIDs: []string{"vs:docs/eu@v2"},
				},
			},
			{
				note: "times come back in UTC, to the microsecond",
				edit: func(k *authz.APIKey) {
					k.ExpiresAt, k.LastUsedAt = ptr(nanos), ptr(nanos.Add(-time.Hour))
					k.CreatedAt, k.UpdatedAt = nanos.Add(-2*time.Hour), nanos.Add(-90*time.Minute)
					k.Scope = authz.Scope{AgentIDs: []string{"a"}}
				},
				scope: authz.Scope{AgentIDs: []string{"a"}, FlowIDs: []string{}, MCPToolIDs: []string{}, VectorStoreIDs: []string{}},
			},
			{
				note: "a disabled key stays disabled",
				edit: func(k *authz.APIKey) { k.Enabled = false },
				scope: authz.Scope{AgentIDs: []string{"agent-1"}, FlowIDs: []string{}, MCPToolIDs: []string{"github__*"},
					VectorStoreIDs: []string{}},
			},
		}
		for i, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				k := newKey(t, "acme", "alice", fmt.Sprintf("key-%d", i), at(time.Duration(i)*time.Minute))
				tt.edit(k)
				in := *k
				mustCreate(t, ks, k)

				// The caller's key now holds what was stored.
				want := in
				want.Scope = tt.scope
				trunc := func(t *time.Time) *time.Time {
					if t == nil {
						return nil
					}
					return ptr(t.UTC().Truncate(time.Microsecond))
				}
				want.CreatedAt, want.UpdatedAt = *trunc(&in.CreatedAt), *trunc(&in.UpdatedAt)
				want.ExpiresAt, want.LastUsedAt = trunc(in.ExpiresAt), trunc(in.LastUsedAt)
				sameKey(t, k, &want)

				byID, err := ks.FindKeyByID(ctx, "acme", k.ID)
				if err != nil {
					t.Fatal(err)
				}
				sameKey(t, byID, &want)
				byHash, err := ks.FindKeyByHash(ctx, k.Hash)
				if err != nil {
					t.Fatal(err)
				}
				sameKey(t, byHash, &want)
			})
		}
	})
}

func TestFindKey_NotFound(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		k := mustCreate(t, ks, newKey(t, "acme", "alice", "ci", at(0)))
		unknown, _ := authz.NewID(at(0), nil)

		tests := []struct {
			note, tenant, id string
		}{
			{note: "another tenant's key is not found", tenant: "globex", id: k.ID},
			{note: "an unknown id", tenant: "acme", id: unknown},
			{note: "an id that is no uuid is refused before the query", tenant: "acme", id: "1; DROP TABLE api_keys"},
			{note: "an upper-case uuid is not canonical", tenant: "acme", id: strings.ToUpper(k.ID)},
			{note: "the empty id", tenant: "acme", id: ""},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				_, err := ks.FindKeyByID(ctx, tt.tenant, tt.id)
				wantCode(t, err, authz.ENOTFOUND)
			})
		}
		t.Run("an unknown hash", func(t *testing.T) {
			_, err := ks.FindKeyByHash(ctx, strings.Repeat("0", 64))
			wantCode(t, err, authz.ENOTFOUND)
		})
	})
}

func TestFindKeys_PagingWhileInserting(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		users := []string{"alice", "bob", "carol"}
		var want []string // ids of the keys that exist before paging starts
		for i := range 250 {
			k := mustCreate(t, ks, newKey(t, "acme", users[i%3], fmt.Sprintf("key-%03d", i), at(time.Duration(i)*time.Millisecond)))
			want = append(want, k.ID)
			if i%25 == 0 { // noise in another tenant, interleaved in time
				mustCreate(t, ks, newKey(t, "globex", "alice", fmt.Sprintf("key-%03d", i), at(time.Duration(i)*time.Millisecond)))
			}
		}
		slices.Reverse(want) // newest first

		var got []string
		seen := map[string]bool{}
		f := authz.APIKeyFilter{TenantID: "acme", Limit: 7}
		for page := 0; ; page++ {
			p, err := ks.FindKeys(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Keys) > 7 {
				t.Fatalf("page %d has %d keys", page, len(p.Keys))
			}
			for _, k := range p.Keys {
				if seen[k.ID] {
					t.Fatalf("page %d repeats key %s", page, k.Name)
				}
				if k.TenantID != "acme" {
					t.Fatalf("page %d holds a key of tenant %s", page, k.TenantID)
				}
				seen[k.ID] = true
				got = append(got, k.ID)
			}
			if p.NextCursor == "" {
				break
			}
			// A key created between pages is newer than every key paged so far.
			mustCreate(t, ks, newKey(t, "acme", "dave", fmt.Sprintf("new-%03d", page), at(time.Hour+time.Duration(page)*time.Millisecond)))
			f.Cursor = p.NextCursor
		}
		if !slices.Equal(got, want) {
			t.Fatalf("paged %d keys, want the %d that existed, newest first, each once", len(got), len(want))
		}
		if n, err := ks.CountKeys(ctx, "acme"); err != nil || n != 250+len(want)/7 {
			t.Fatalf("CountKeys = %d, %v; want %d", n, err, 250+len(want)/7)
		}

		t.Run("limits", func(t *testing.T) {
			for _, tt := range []struct {
				note  string
				limit int
				want  int
			}{
				{note: "0 means the default", limit: 0, want: authz.DefaultLimit},
				{note: "a negative limit means the default", limit: -5, want: authz.DefaultLimit},
				{note: "above the maximum is clamped", limit: 1000, want: authz.MaxLimit},
				{note: "one", limit: 1, want: 1},
			} {
				t.Run(tt.note, func(t *testing.T) {
					p, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "acme", Limit: tt.limit})
					if err != nil {
						t.Fatal(err)
					}
					if len(p.Keys) != tt.want || p.NextCursor == "" {
						t.Fatalf("got %d keys, next %q; want %d and a cursor", len(p.Keys), p.NextCursor, tt.want)
					}
				})
			}
		})

		t.Run("an unknown tenant has an empty page, not nil", func(t *testing.T) {
			p, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "nobody"})
			if err != nil {
				t.Fatal(err)
			}
			if p.Keys == nil || len(p.Keys) != 0 || p.NextCursor != "" {
				t.Fatalf("page = %+v", p)
			}
		})
	})
}

func TestFindKeys_Filters(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		// name: user, enabled
		keys := map[string]*authz.APIKey{}
		for i, spec := range []struct {
			name, user string
			enabled    bool
		}{
			{"a1", "alice", true}, {"a2", "alice", false}, {"a3", "alice", true},
			{"b1", "bob", true}, {"b2", "bob", false},
		} {
			k := newKey(t, "acme", spec.user, spec.name, at(time.Duration(i)*time.Second))
			k.Enabled = spec.enabled
			keys[spec.name] = mustCreate(t, ks, k)
		}
		mustCreate(t, ks, newKey(t, "globex", "alice", "g1", at(0)))

		tests := []struct {
			note   string
			filter authz.APIKeyFilter
			want   []string // names, newest first
		}{
			{note: "all of a tenant", filter: authz.APIKeyFilter{TenantID: "acme"}, want: []string{"b2", "b1", "a3", "a2", "a1"}},
			{note: "one user", filter: authz.APIKeyFilter{TenantID: "acme", UserID: ptr("alice")}, want: []string{"a3", "a2", "a1"}},
			{note: "enabled", filter: authz.APIKeyFilter{TenantID: "acme", Enabled: ptr(true)}, want: []string{"b1", "a3", "a1"}},
			{note: "disabled", filter: authz.APIKeyFilter{TenantID: "acme", Enabled: ptr(false)}, want: []string{"b2", "a2"}},
			{note: "user and enabled", filter: authz.APIKeyFilter{TenantID: "acme", UserID: ptr("bob"), Enabled: ptr(false)}, want: []string{"b2"}},
			{note: "a user of another tenant", filter: authz.APIKeyFilter{TenantID: "globex", UserID: ptr("bob")}, want: []string{}},
			{note: "the same user id in another tenant", filter: authz.APIKeyFilter{TenantID: "globex", UserID: ptr("alice")}, want: []string{"g1"}},
			{note: "by name", filter: authz.APIKeyFilter{TenantID: "acme", Name: ptr("b1")}, want: []string{"b1"}},
			{note: "a name of another tenant", filter: authz.APIKeyFilter{TenantID: "acme", Name: ptr("g1")}, want: []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				p, err := ks.FindKeys(ctx, tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				got := []string{}
				for _, k := range p.Keys {
					got = append(got, k.Name)
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			})
		}
	})
}

func TestFindKeys_BadCursor(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		for i := range 3 {
			mustCreate(t, ks, newKey(t, "acme", "alice", fmt.Sprintf("k%d", i), at(time.Duration(i)*time.Second)),
				authz.AuditEvent{OccurredAt: at(time.Duration(i) * time.Second), TenantID: "acme", Action: "x"})
		}
		keyPage, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "acme", Limit: 1})
		if err != nil || keyPage.NextCursor == "" {
			t.Fatalf("FindKeys: %v, cursor %q", err, keyPage.NextCursor)
		}
		auditPage, err := as.FindAuditEvents(ctx, authz.AuditFilter{TenantID: "acme", Limit: 1})
		if err != nil || auditPage.NextCursor == "" {
			t.Fatalf("FindAuditEvents: %v, cursor %q", err, auditPage.NextCursor)
		}
		raw, _ := base64.RawURLEncoding.DecodeString(keyPage.NextCursor)

		tests := []struct{ note, cursor string }{
			{note: "not base64", cursor: "not a cursor!"},
			{note: "an id in plain text", cursor: keyPage.Keys[0].ID},
			{note: "too short", cursor: base64.RawURLEncoding.EncodeToString(raw[:10])},
			{note: "too long", cursor: base64.RawURLEncoding.EncodeToString(append(raw, 0))},
			{note: "padded", cursor: base64.URLEncoding.EncodeToString(raw)},
			{note: "an unknown version", cursor: base64.RawURLEncoding.EncodeToString(append([]byte{9}, raw[1:]...))},
			{note: "an audit cursor on keys", cursor: auditPage.NextCursor},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				_, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "acme", Cursor: tt.cursor})
				wantCode(t, err, authz.EINVALID)
				if f := authz.ErrorFields(err); len(f) != 1 || f[0].Field != "cursor" {
					t.Fatalf("fields = %+v, want cursor", f)
				}
			})
		}
		t.Run("a key cursor on audit events", func(t *testing.T) {
			_, err := as.FindAuditEvents(ctx, authz.AuditFilter{TenantID: "acme", Cursor: keyPage.NextCursor})
			wantCode(t, err, authz.EINVALID)
		})
	})
}

func TestUpdateKey(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		errBoom := errors.New("boom")
		now := at(time.Hour + 123456789*time.Nanosecond)

		tests := []struct {
			note      string
			update    authz.APIKeyUpdate
			fnErr     error
			tenant    string // default the key's
			id        string // default the key's
			wantCode  string
			wantErr   error
			wantSaved bool
		}{
			{
				note: "changed fields are saved with the events",
				update: authz.APIKeyUpdate{
					Name: ptr("renamed"), Enabled: ptr(false), SetExpiresAt: true, ExpiresAt: ptr(at(48 * time.Hour)),
					Scope: &authz.Scope{FlowIDs: []string{"f-*"}},
				},
				wantSaved: true,
			},
			{
				note:      "clearing the expiry",
				update:    authz.APIKeyUpdate{SetExpiresAt: true},
				wantSaved: true,
			},
			{
				note:   "no change writes nothing",
				update: authz.APIKeyUpdate{Name: ptr("key"), Enabled: ptr(true)},
			},
			{
				note:    "an error of fn rolls back and is returned as it is",
				update:  authz.APIKeyUpdate{Name: ptr("never")},
				fnErr:   errBoom,
				wantErr: errBoom,
			},
			{
				note:     "a name taken in the tenant",
				update:   authz.APIKeyUpdate{Name: ptr("taken")},
				wantCode: authz.ECONFLICT,
			},
			{note: "another tenant's key", tenant: "globex", wantCode: authz.ENOTFOUND},
			{note: "an id that is no uuid", id: "nope", wantCode: authz.ENOTFOUND},
		}
		for i, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				acme := fmt.Sprintf("acme-%d", i) // a tenant per case
				k := newKey(t, acme, "alice", "key", at(time.Duration(i)*time.Minute))
				k.ExpiresAt = ptr(at(72 * time.Hour))
				mustCreate(t, ks, k)
				taken := mustCreate(t, ks, newKey(t, acme, "bob", "taken", at(time.Duration(i)*time.Minute+time.Second)))
				before, _ := ks.FindKeyByID(ctx, acme, k.ID)
				tenant, id := cmpOr(tt.tenant, acme), cmpOr(tt.id, k.ID)

				var want *authz.APIKey
				called := false
				got, err := ks.UpdateKey(ctx, tenant, id, func(key *authz.APIKey) ([]string, []authz.AuditEvent, error) {
					called = true
					changed := key.Apply(tt.update, now)
					ev := keyEvent(authz.AuditKeyUpdated, key, now)
					ev.Details = map[string]any{"fields": changed}
					c := *key
					want = &c
					return changed, []authz.AuditEvent{ev}, tt.fnErr
				})
				switch {
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want fn's error itself", err)
					}
				default:
					wantCode(t, err, tt.wantCode)
				}
				if tt.wantCode == authz.ENOTFOUND && called {
					t.Fatal("fn was called for a key that is not found")
				}

				after, ferr := ks.FindKeyByID(ctx, acme, k.ID)
				if ferr != nil {
					t.Fatal(ferr)
				}
				updates := 0
				for _, ev := range allEvents(t, as, acme) {
					if ev.Action == authz.AuditKeyUpdated && ev.TargetID == k.ID {
						updates++
					}
				}
				if tt.wantSaved {
					sameKey(t, got, after)
					sameKey(t, after, func() *authz.APIKey {
						c := *want
						c.UpdatedAt = now.Truncate(time.Microsecond)
						return &c
					}())
					if updates != 1 {
						t.Fatalf("%d update events, want 1", updates)
					}
					return
				}
				sameKey(t, after, before)
				if updates != 0 {
					t.Fatalf("%d update events, want none", updates)
				}
				if err == nil {
					sameKey(t, got, before)
				}
				if other, _ := ks.FindKeyByID(ctx, acme, taken.ID); other.Name != "taken" {
					t.Fatalf("the other key was renamed to %q", other.Name)
				}
			})
		}
	})
}

// cmpOr is cmp.Or for two strings, spelled out for clarity in tables.
func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func TestDeleteKey(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		k := mustCreate(t, ks, newKey(t, "acme", "alice", "ci", at(0)))
		unknown, _ := authz.NewID(at(0), nil)

		for _, tt := range []struct{ note, tenant, id string }{
			{note: "another tenant's key", tenant: "globex", id: k.ID},
			{note: "an unknown id", tenant: "acme", id: unknown},
			{note: "an id that is no uuid", tenant: "acme", id: "nope"},
		} {
			t.Run(tt.note, func(t *testing.T) {
				err := ks.DeleteKey(ctx, tt.tenant, tt.id, authz.AuditEvent{OccurredAt: at(time.Second), TenantID: tt.tenant, Action: authz.AuditKeyDeleted})
				wantCode(t, err, authz.ENOTFOUND)
			})
		}
		if got := allEvents(t, as, "acme"); len(got) != 0 {
			t.Fatalf("failed deletes wrote %v", actions(got))
		}

		if err := ks.DeleteKey(ctx, "acme", k.ID, keyEvent(authz.AuditKeyDeleted, k, at(time.Minute))); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.FindKeyByID(ctx, "acme", k.ID); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("FindKeyByID after delete: %v", err)
		}
		if _, err := ks.FindKeyByHash(ctx, k.Hash); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("FindKeyByHash after delete: %v", err)
		}
		if got := actions(allEvents(t, as, "acme")); !slices.Equal(got, []string{authz.AuditKeyDeleted}) {
			t.Fatalf("events %v", got)
		}
		wantCode(t, ks.DeleteKey(ctx, "acme", k.ID), authz.ENOTFOUND)
		if n, err := ks.CountKeys(ctx, "acme"); err != nil || n != 0 {
			t.Fatalf("CountKeys = %d, %v", n, err)
		}
	})
}

func TestDeleteUserAndTenant_Cascade(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		create := func(tenant, user string, n int) []*authz.APIKey {
			var out []*authz.APIKey
			for i := range n {
				k := newKey(t, tenant, user, fmt.Sprintf("%s-%d", user, i), at(time.Duration(len(user)*10+i)*time.Second))
				out = append(out, mustCreate(t, ks, k, keyEvent(authz.AuditKeyCreated, k, k.CreatedAt)))
			}
			return out
		}
		aliceKeys := create("acme", "alice", 3)
		bobKeys := create("acme", "bob", 2)
		otherAlice := create("globex", "alice", 1) // the same sub in another tenant

		count := func(tenant string) int {
			t.Helper()
			n, err := ks.CountKeys(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if count("acme") != 5 || count("globex") != 1 {
			t.Fatalf("counts %d, %d", count("acme"), count("globex"))
		}

		tests := []struct {
			note     string
			del      func() (int, error)
			wantN    int
			wantCode string
			gone     []*authz.APIKey
			kept     []*authz.APIKey
		}{
			{
				note:     "an unknown user",
				del:      func() (int, error) { return ks.DeleteUser(ctx, "acme", "mallory") },
				wantCode: authz.ENOTFOUND,
			},
			{
				note:     "a user of another tenant",
				del:      func() (int, error) { return ks.DeleteUser(ctx, "globex", "bob") },
				wantCode: authz.ENOTFOUND,
			},
			{
				note: "a user's keys go, the same user id in another tenant keeps theirs",
				del: func() (int, error) {
					return ks.DeleteUser(ctx, "acme", "alice", authz.AuditEvent{OccurredAt: at(time.Hour), TenantID: "acme", Action: authz.AuditUserDeleted, TargetID: "alice"})
				},
				wantN: 3,
				gone:  aliceKeys,
				kept:  append(slices.Clone(bobKeys), otherAlice...),
			},
			{
				note:     "a deleted user",
				del:      func() (int, error) { return ks.DeleteUser(ctx, "acme", "alice") },
				wantCode: authz.ENOTFOUND,
			},
			{
				note:     "an unknown tenant",
				del:      func() (int, error) { return ks.DeleteTenant(ctx, "initech") },
				wantCode: authz.ENOTFOUND,
			},
			{
				note: "a tenant's users and keys go, other tenants stay",
				del: func() (int, error) {
					return ks.DeleteTenant(ctx, "acme", authz.AuditEvent{OccurredAt: at(2 * time.Hour), TenantID: "acme", Action: authz.AuditTenantDeleted, TargetID: "acme"})
				},
				wantN: 2,
				gone:  bobKeys,
				kept:  otherAlice,
			},
			{
				note:     "a deleted tenant",
				del:      func() (int, error) { return ks.DeleteTenant(ctx, "acme") },
				wantCode: authz.ENOTFOUND,
			},
			{
				note:     "a user of a deleted tenant",
				del:      func() (int, error) { return ks.DeleteUser(ctx, "acme", "bob") },
				wantCode: authz.ENOTFOUND,
			},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				n, err := tt.del()
				wantCode(t, err, tt.wantCode)
				if n != tt.wantN {
					t.Fatalf("deleted %d keys, want %d", n, tt.wantN)
				}
				for _, k := range tt.gone {
					if _, err := ks.FindKeyByHash(ctx, k.Hash); authz.ErrorCode(err) != authz.ENOTFOUND {
						t.Fatalf("key %s/%s survived: %v", k.TenantID, k.Name, err)
					}
				}
				for _, k := range tt.kept {
					if _, err := ks.FindKeyByID(ctx, k.TenantID, k.ID); err != nil {
						t.Fatalf("key %s/%s went: %v", k.TenantID, k.Name, err)
					}
				}
			})
		}

		// The audit trail outlives what it describes.
		got := actions(allEvents(t, as, "acme"))
		want := []string{authz.AuditTenantDeleted, authz.AuditUserDeleted}
		for range 5 {
			want = append(want, authz.AuditKeyCreated)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("acme's events after offboarding: %v, want %v", got, want)
		}
		if count("acme") != 0 || count("globex") != 1 {
			t.Fatalf("counts after offboarding %d, %d", count("acme"), count("globex"))
		}
		// A tenant that comes back starts afresh.
		create("acme", "alice", 1)
		if count("acme") != 1 {
			t.Fatalf("count after the tenant came back: %d", count("acme"))
		}
	})
}

func TestTouchKeys(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		never := mustCreate(t, ks, newKey(t, "acme", "alice", "never-used", at(0)))
		older := newKey(t, "acme", "alice", "used-recently", at(time.Second))
		older.LastUsedAt = ptr(at(time.Hour))
		mustCreate(t, ks, older)
		newer := newKey(t, "globex", "bob", "used-long-ago", at(2*time.Second))
		newer.LastUsedAt = ptr(at(time.Minute))
		mustCreate(t, ks, newer)
		unknown, _ := authz.NewID(at(0), nil)

		if err := ks.TouchKeys(ctx, nil); err != nil {
			t.Fatalf("TouchKeys(nil): %v", err)
		}
		touch := map[string]time.Time{
			never.ID:   at(30*time.Minute + 987654321),
			older.ID:   at(10 * time.Minute), // older than stored: ignored
			newer.ID:   at(2 * time.Hour),
			unknown:    at(time.Hour),
			"not-uuid": at(time.Hour),
		}
		// Enough unknown ids to need more than one statement.
		for i := range 1500 {
			id, _ := authz.NewID(at(time.Duration(i)*time.Millisecond), nil)
			touch[id] = at(time.Hour)
		}
		if err := ks.TouchKeys(ctx, touch); err != nil {
			t.Fatal(err)
		}

		for _, tt := range []struct {
			note string
			key  *authz.APIKey
			want time.Time
		}{
			{note: "the first use is recorded, to the microsecond", key: never, want: at(30*time.Minute + 987654000)},
			{note: "an older time never overwrites a newer one", key: older, want: at(time.Hour)},
			{note: "a newer time wins", key: newer, want: at(2 * time.Hour)},
		} {
			t.Run(tt.note, func(t *testing.T) {
				k, err := ks.FindKeyByID(ctx, tt.key.TenantID, tt.key.ID)
				if err != nil {
					t.Fatal(err)
				}
				sameTime(t, "last_used_at", k.LastUsedAt, &tt.want)
				sameTime(t, "updated_at", &k.UpdatedAt, &tt.key.UpdatedAt)
			})
		}
	})
}

func TestAuditEvents(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		as := storage.NewAuditStore(db)
		keyA, _ := authz.NewID(at(0), nil)
		keyB, _ := authz.NewID(at(0), nil)

		if err := as.InsertAuditEvents(ctx, nil); err != nil {
			t.Fatalf("InsertAuditEvents(nil): %v", err)
		}
		// 40 events of acme, one a second (with microseconds to test the
		// time filters' precision); every 4th is a denial by key A, every
		// 5th an update of key B; plus noise in globex.
		var events []authz.AuditEvent
		for i := range 40 {
			ev := authz.AuditEvent{
				OccurredAt: at(time.Duration(i)*time.Second + 250*time.Microsecond).In(time.FixedZone("X", -5*3600)),
				TenantID:   "acme", ActorType: authz.ActorTypeUser, ActorID: "alice", Action: authz.AuditAuthFailed,
				Outcome: authz.OutcomeFailure, IP: "10.0.0.1", UserAgent: "curl/8", RequestID: fmt.Sprintf("req-%d", i), TraceID: "trace",
			}
			switch {
			case i%4 == 0:
				ev.ActorType, ev.ActorID, ev.Action, ev.Outcome = authz.ActorTypeAPIKey, keyA, authz.AuditAuthzDenied, authz.OutcomeDenied
				ev.Reason = "scope"
				ev.Details = map[string]any{"resource": map[string]any{"type": "agent", "id": "a-1"}, "n": 3.0}
			case i%5 == 0:
				ev.Action, ev.TargetType, ev.TargetID = authz.AuditKeyUpdated, "api_key", keyB
			}
			events = append(events, ev)
			events = append(events, authz.AuditEvent{OccurredAt: ev.OccurredAt, TenantID: "globex", Action: ev.Action, ActorID: keyA})
		}
		withID := authz.AuditEvent{OccurredAt: at(time.Hour), TenantID: "acme", Action: "custom"}
		withID.ID, _ = authz.NewID(at(time.Hour), nil)
		events = append(events, withID)
		if err := as.InsertAuditEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
		// A retried batch does not write its events twice.
		if err := as.InsertAuditEvents(ctx, []authz.AuditEvent{withID}); err != nil {
			t.Fatal(err)
		}

		all := allEvents(t, as, "acme")
		if len(all) != 41 {
			t.Fatalf("%d events, want 41", len(all))
		}
		if all[0].ID != withID.ID {
			t.Fatalf("newest event %s, want the one with the given id", all[0].ID)
		}
		for i, ev := range all {
			if i > 0 && ev.ID >= all[i-1].ID {
				t.Fatalf("events not newest first at %d", i)
			}
			if ev.Details == nil {
				t.Fatalf("event %d has nil details", i)
			}
		}
		// One event, field by field.
		first := all[len(all)-1]
		want := events[0]
		want.ID = first.ID
		want.OccurredAt = want.OccurredAt.UTC()
		if !reflect.DeepEqual(*first, want) {
			t.Fatalf("event =\n%+v\nwant\n%+v", *first, want)
		}

		since, until := at(10*time.Second+250*time.Microsecond), at(20*time.Second+250*time.Microsecond)
		tests := []struct {
			note   string
			filter authz.AuditFilter
			want   int
		}{
			{note: "by action", filter: authz.AuditFilter{Action: authz.AuditAuthzDenied}, want: 10},
			{note: "an action matches exactly", filter: authz.AuditFilter{Action: "authorization"}, want: 0},
			{note: "by key, as actor", filter: authz.AuditFilter{KeyID: keyA}, want: 10},
			{note: "by key, as target", filter: authz.AuditFilter{KeyID: keyB}, want: 6},
			{note: "since is inclusive, to the microsecond", filter: authz.AuditFilter{Since: &since}, want: 31},
			{note: "a microsecond later excludes it", filter: authz.AuditFilter{Since: ptr(since.Add(time.Microsecond))}, want: 30},
			{note: "until is exclusive", filter: authz.AuditFilter{Until: &until}, want: 20},
			{note: "a range", filter: authz.AuditFilter{Since: &since, Until: &until}, want: 10},
			{note: "a range in another time zone", filter: authz.AuditFilter{Since: ptr(since.In(time.FixedZone("Y", 9*3600))), Until: &until}, want: 10},
			{note: "action, key and range", filter: authz.AuditFilter{Action: authz.AuditAuthzDenied, KeyID: keyA, Since: &since, Until: &until}, want: 2},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				f := tt.filter
				f.TenantID, f.Limit = "acme", 4
				var got []*authz.AuditEvent
				for pages := 0; ; pages++ {
					page, err := as.FindAuditEvents(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					if len(page.Events) > 4 || pages > 20 {
						t.Fatalf("page of %d events, page %d", len(page.Events), pages)
					}
					got = append(got, page.Events...)
					if page.NextCursor == "" {
						break
					}
					f.Cursor = page.NextCursor
				}
				if len(got) != tt.want {
					t.Fatalf("%d events, want %d", len(got), tt.want)
				}
				for i, ev := range got {
					if ev.TenantID != "acme" ||
						(f.Action != "" && ev.Action != f.Action) ||
						(f.KeyID != "" && ev.ActorID != f.KeyID && ev.TargetID != f.KeyID) ||
						(f.Since != nil && ev.OccurredAt.Before(*f.Since)) ||
						(f.Until != nil && !ev.OccurredAt.Before(*f.Until)) ||
						(i > 0 && ev.ID >= got[i-1].ID) {
						t.Fatalf("event %d does not match: %+v", i, ev)
					}
				}
			})
		}
	})
}

func TestInsertAuditEvents_ManyBatches(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		as := storage.NewAuditStore(db)
		events := make([]authz.AuditEvent, 2500)
		for i := range events {
			events[i] = authz.AuditEvent{OccurredAt: at(time.Duration(i) * time.Millisecond), TenantID: "acme", Action: "bulk"}
		}
		if err := as.InsertAuditEvents(context.Background(), events); err != nil {
			t.Fatal(err)
		}
		if got := len(allEvents(t, as, "acme")); got != 2500 {
			t.Fatalf("%d events, want 2500", got)
		}
	})
}

func TestCreateKey_ConcurrentSameName(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ks := storage.NewKeyStore(db)
		const n = 50
		keys := make([]*authz.APIKey, n)
		for i := range keys {
			// A tenant and users that do not exist yet: the racers also
			// race to create them.
			keys[i] = newKey(t, "newco", fmt.Sprintf("user-%d", i%5), "shared", at(time.Duration(i)*time.Millisecond))
		}
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range keys {
			wg.Go(func() {
				<-start
				errs[i] = ks.CreateKey(context.Background(), keys[i], keyEvent(authz.AuditKeyCreated, keys[i], keys[i].CreatedAt))
			})
		}
		close(start)
		wg.Wait()

		ok, conflicts := 0, 0
		for _, err := range errs {
			switch authz.ErrorCode(err) {
			case "":
				ok++
			case authz.ECONFLICT:
				conflicts++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}
		if ok != 1 || conflicts != n-1 {
			t.Fatalf("%d created, %d conflicts; want 1 and %d", ok, conflicts, n-1)
		}
		if c, err := ks.CountKeys(context.Background(), "newco"); err != nil || c != 1 {
			t.Fatalf("CountKeys = %d, %v", c, err)
		}
		if got := allEvents(t, storage.NewAuditStore(db), "newco"); len(got) != 1 {
			t.Fatalf("%d audit events, want 1", len(got))
		}
	})
}
