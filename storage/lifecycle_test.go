package storage_test

// Conformance of the key lifecycle: rotation, external ids, meta, rate
// limits, credits and usage history, on SQLite and Postgres alike.

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// limitedKey is newKey with every lifecycle field set.
func limitedKey(tb testing.TB, name string, t time.Time) *authz.APIKey {
	k := newKey(tb, "acme", "alice", name, t)
	k.ExternalID = ptr("cus_42")
	k.Meta = json.RawMessage(`{"plan":"pro","seats":3,"tags":["eu","ünïcode"]}`)
	k.RateLimit = &authz.RateLimit{Limit: 100, WindowMS: 60_000}
	k.Credits = &authz.Credits{Remaining: 7, Refill: &authz.CreditRefill{Amount: 10, IntervalMS: 3_600_000}, RefilledAt: ptr(t.Add(123456789))}
	k.RateLimitSetBy = &authz.Setter{UserID: "root", Admin: true}
	k.CreditsSetBy = &authz.Setter{UserID: "alice"}
	k.RotatedAt, k.PreviousExpiresAt = ptr(t.Add(time.Minute)), ptr(t.Add(time.Hour))
	k.PreviousHash = newKey(tb, "acme", "alice", "other", t).Hash
	return k
}

func TestKeyLifecycle_RoundTrip(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		full := limitedKey(t, "full", at(0))
		mustCreate(t, ks, full)
		want := *full // in its stored form
		plain := mustCreate(t, ks, newKey(t, "acme", "alice", "plain", at(time.Minute)))

		for _, tt := range []struct {
			note string
			find func() (*authz.APIKey, error)
			want *authz.APIKey
		}{
			{"by id", func() (*authz.APIKey, error) { return ks.FindKeyByID(ctx, "acme", full.ID) }, &want},
			{"by hash", func() (*authz.APIKey, error) { return ks.FindKeyByHash(ctx, full.Hash) }, &want},
			{"by the previous token's hash", func() (*authz.APIKey, error) { return ks.FindKeyByHash(ctx, full.PreviousHash) }, &want},
			{"a key without them reads back nils", func() (*authz.APIKey, error) { return ks.FindKeyByID(ctx, "acme", plain.ID) }, plain},
		} {
			got, err := tt.find()
			if err != nil {
				t.Fatalf("%s: %v", tt.note, err)
			}
			sameKey(t, got, tt.want)
			if tt.want == plain && (got.Meta != nil || got.ExternalID != nil || got.RateLimit != nil || got.Credits != nil || got.RotatedAt != nil || got.PreviousHash != "") {
				t.Fatalf("%s: %+v", tt.note, got)
			}
		}
		if string(want.Meta) != `{"plan":"pro","seats":3,"tags":["eu","ünïcode"]}` {
			t.Fatalf("meta reads back as %s", want.Meta)
		}
		// An empty hash is no key's previous hash.
		_, err := ks.FindKeyByHash(ctx, "")
		wantCode(t, err, authz.ENOTFOUND)
	})
}

func TestUpdateKey_LifecycleFields(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		k := mustCreate(t, ks, newKey(t, "acme", "alice", "k", at(0)))
		oldHash := k.Hash
		set := func(note string, edit func(*authz.APIKey)) *authz.APIKey {
			t.Helper()
			got, err := ks.UpdateKey(ctx, "acme", k.ID, func(k *authz.APIKey) ([]string, []authz.AuditEvent, error) {
				edit(k)
				return []string{note}, nil, nil
			})
			if err != nil {
				t.Fatalf("%s: %v", note, err)
			}
			back, err := ks.FindKeyByID(ctx, "acme", k.ID)
			if err != nil {
				t.Fatal(err)
			}
			sameKey(t, back, got)
			return back
		}
		rotated := limitedKey(t, "x", at(time.Hour))
		got := set("every field", func(k *authz.APIKey) {
			k.ExternalID, k.Meta, k.RateLimit, k.Credits = rotated.ExternalID, rotated.Meta, rotated.RateLimit, rotated.Credits
			k.RateLimitSetBy, k.CreditsSetBy = rotated.RateLimitSetBy, rotated.CreditsSetBy
			k.PreviousHash, k.Hash, k.Start = k.Hash, rotated.Hash, "pk_new00"
			k.RotatedAt, k.PreviousExpiresAt = rotated.RotatedAt, rotated.PreviousExpiresAt
		})
		if got.Start != "pk_new00" || got.PreviousHash != oldHash || got.Credits.Remaining != 7 {
			t.Fatalf("rotated key %+v", got)
		}
		for _, h := range []string{oldHash, rotated.Hash} {
			if byHash, err := ks.FindKeyByHash(ctx, h); err != nil || byHash.ID != k.ID {
				t.Fatalf("FindKeyByHash after rotation: %v, %v", byHash, err)
			}
		}
		got = set("every field cleared", func(k *authz.APIKey) {
			k.ExternalID, k.Meta, k.RateLimit, k.Credits, k.RateLimitSetBy, k.CreditsSetBy = nil, nil, nil, nil, nil, nil
			k.PreviousHash = ""
		})
		if got.Meta != nil || got.Credits != nil || got.RateLimit != nil || got.ExternalID != nil {
			t.Fatalf("cleared key %+v", got)
		}
		_, err := ks.FindKeyByHash(ctx, oldHash)
		wantCode(t, err, authz.ENOTFOUND)
	})
}

func TestFindKeys_ExternalID(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		var ids []string
		for i, ext := range []string{"cus_1", "cus_2", "cus_1", ""} {
			k := newKey(t, "acme", "alice", "k"+string(rune('a'+i)), at(time.Duration(i)*time.Minute))
			if ext != "" {
				k.ExternalID = ptr(ext)
			}
			mustCreate(t, ks, k)
			ids = append(ids, k.ID)
		}
		mustCreate(t, ks, func() *authz.APIKey {
			k := newKey(t, "other", "bob", "elsewhere", at(time.Hour))
			k.ExternalID = ptr("cus_1")
			return k
		}())
		page, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "acme", ExternalID: ptr("cus_1"), Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Keys) != 2 || page.Keys[0].ID != ids[2] || page.Keys[1].ID != ids[0] {
			t.Fatalf("keys of cus_1 in acme: %v", page.Keys)
		}
	})
}

func TestSpendCredits(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		k := newKey(t, "acme", "alice", "credited", at(0))
		k.Credits = &authz.Credits{Remaining: 10, Refill: &authz.CreditRefill{Amount: 10, IntervalMS: 60_000}, RefilledAt: ptr(at(0))}
		mustCreate(t, ks, k)
		plain := mustCreate(t, ks, newKey(t, "acme", "alice", "plain", at(0)))

		t.Run("what spend does is saved", func(t *testing.T) {
			var version time.Time
			if err := ks.SpendCredits(ctx, k.ID, func(c *authz.Credits, v time.Time) {
				c.Remaining -= 3
				c.RefilledAt = ptr(at(time.Minute))
				version = v
			}); err != nil {
				t.Fatal(err)
			}
			back, err := ks.FindKeyByID(ctx, "acme", k.ID)
			if err != nil {
				t.Fatal(err)
			}
			if back.Credits.Remaining != 7 || !back.Credits.RefilledAt.Equal(at(time.Minute)) || back.Credits.Refill.Amount != 10 {
				t.Fatalf("credits %+v", back.Credits)
			}
			if !version.Equal(k.UpdatedAt) {
				t.Fatalf("version %v, want the key's updated_at %v", version, k.UpdatedAt)
			}
		})
		t.Run("credits go back unless the key changed", func(t *testing.T) {
			ok, err := ks.ReturnCredits(ctx, k.ID, 2, k.UpdatedAt)
			if err != nil || !ok {
				t.Fatalf("return: %v, %v", ok, err)
			}
			if ok, err := ks.ReturnCredits(ctx, k.ID, 2, k.UpdatedAt.Add(time.Microsecond)); err != nil || ok {
				t.Fatalf("return to a changed key: %v, %v", ok, err)
			}
			if ok, err := ks.ReturnCredits(ctx, plain.ID, 2, plain.UpdatedAt); err != nil || ok {
				t.Fatalf("return to a key without credits: %v, %v", ok, err)
			}
			back, _ := ks.FindKeyByID(ctx, "acme", k.ID)
			if back.Credits.Remaining != 9 {
				t.Fatalf("remaining %d after giving 2 back, want 9", back.Credits.Remaining)
			}
			if err := ks.SpendCredits(ctx, k.ID, func(c *authz.Credits, _ time.Time) { c.Remaining = 7 }); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("a key without credits gives spend nil", func(t *testing.T) {
			called := false
			if err := ks.SpendCredits(ctx, plain.ID, func(c *authz.Credits, _ time.Time) { called = c == nil }); err != nil || !called {
				t.Fatalf("err %v, called with nil %v", err, called)
			}
		})
		t.Run("an absent key is not found", func(t *testing.T) {
			other := newKey(t, "acme", "alice", "never", at(0))
			wantCode(t, ks.SpendCredits(ctx, other.ID, func(*authz.Credits, time.Time) { t.Error("spend called") }), authz.ENOTFOUND)
			wantCode(t, ks.SpendCredits(ctx, "not-a-uuid", func(*authz.Credits, time.Time) { t.Error("spend called") }), authz.ENOTFOUND)
		})
		t.Run("concurrent spends never spend a credit twice", func(t *testing.T) {
			var won atomic.Int64
			var wg sync.WaitGroup
			for range 25 {
				wg.Go(func() {
					err := ks.SpendCredits(ctx, k.ID, func(c *authz.Credits, _ time.Time) {
						if c.Remaining >= 1 {
							c.Remaining--
							won.Add(1)
						}
					})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if won.Load() != 7 {
				t.Fatalf("%d spends won 7 credits", won.Load())
			}
		})
	})
}

func TestKeyUsage(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		us := storage.NewUsageStore(db)
		k1, k2 := newKey(t, "acme", "alice", "a", at(0)).ID, newKey(t, "acme", "alice", "b", at(0)).ID
		hour := at(0).Truncate(time.Hour)
		add := func(rollups ...authz.UsageRollup) {
			t.Helper()
			if err := us.AddUsage(ctx, rollups); err != nil {
				t.Fatal(err)
			}
		}
		add(authz.UsageRollup{KeyID: k1, TenantID: "acme", Hour: hour, UsageCounts: authz.UsageCounts{Allowed: 2, Denied: 1}},
			authz.UsageRollup{KeyID: k1, TenantID: "acme", Hour: hour.Add(time.Hour), UsageCounts: authz.UsageCounts{RateLimited: 4}},
			authz.UsageRollup{KeyID: k2, TenantID: "acme", Hour: hour, UsageCounts: authz.UsageCounts{Refused: 1}},
			authz.UsageRollup{KeyID: "not-a-uuid", TenantID: "acme", Hour: hour, UsageCounts: authz.UsageCounts{Refused: 1}})
		// Counts add up, within one batch and across batches.
		add(authz.UsageRollup{KeyID: k1, TenantID: "acme", Hour: hour.Add(5 * time.Minute), UsageCounts: authz.UsageCounts{Allowed: 1, UsageExceeded: 2}},
			authz.UsageRollup{KeyID: k1, TenantID: "acme", Hour: hour, UsageCounts: authz.UsageCounts{Allowed: 10}})

		got, err := us.FindUsage(ctx, k1, hour, hour.Add(2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []authz.UsageRollup{
			{KeyID: k1, TenantID: "acme", Hour: hour, UsageCounts: authz.UsageCounts{Allowed: 13, Denied: 1, UsageExceeded: 2}},
			{KeyID: k1, TenantID: "acme", Hour: hour.Add(time.Hour), UsageCounts: authz.UsageCounts{RateLimited: 4}},
		}
		if len(got) != len(want) {
			t.Fatalf("usage %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i].UsageCounts != want[i].UsageCounts || !got[i].Hour.Equal(want[i].Hour) || got[i].Hour.Location() != time.UTC || got[i].TenantID != "acme" {
				t.Fatalf("usage[%d] %+v, want %+v", i, got[i], want[i])
			}
		}
		if got, _ := us.FindUsage(ctx, k1, hour.Add(time.Hour), hour.Add(2*time.Hour)); len(got) != 1 {
			t.Fatalf("since is inclusive, until exclusive: %+v", got)
		}

		n, err := us.DeleteUsageBefore(ctx, hour.Add(time.Hour), 1)
		if err != nil || n != 1 {
			t.Fatalf("deleted %d, %v; want 1", n, err)
		}
		n, err = us.DeleteUsageBefore(ctx, hour.Add(time.Hour), 10)
		if err != nil || n != 1 {
			t.Fatalf("deleted %d, %v; want the other 1", n, err)
		}
		if got, _ := us.FindUsage(ctx, k1, hour, hour.Add(2*time.Hour)); len(got) != 1 || !got[0].Hour.Equal(hour.Add(time.Hour)) {
			t.Fatalf("left %+v", got)
		}
	})
}
