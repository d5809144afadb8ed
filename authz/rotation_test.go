package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
)

// TestRotatedKeyInTheCache authenticates both tokens of a rotated key
// through the key cache: the previous one until its grace ends, then never,
// without a lookup, and both leave the cache when the key changes.
func TestRotatedKeyInTheCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := authztest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	oldToken, newToken := mustToken(t), mustToken(t)
	grace := clock.Now().Add(time.Hour)
	key := authz.APIKey{ID: "k1", TenantID: "t1", UserID: "u1", Enabled: true, Hash: authz.HashToken(newToken),
		PreviousHash: authz.HashToken(oldToken), PreviousExpiresAt: &grace,
		Meta: json.RawMessage(`{"plan":"pro"}`), RateLimit: &authz.RateLimit{Limit: 5, WindowMS: 1000}, Credits: &authz.Credits{}}
	store := &lookupStore{keys: map[string]authz.APIKey{key.Hash: key, key.PreviousHash: key}}
	cache := authz.NewKeyCache(store, authz.KeyCacheOptions{Now: clock.Now, TTL: 2 * time.Hour})
	svc := &authz.KeyService{Lookup: cache, Now: clock.Now}

	for _, tok := range []string{newToken, oldToken, newToken, oldToken} {
		p, err := svc.Authenticate(ctx, tok)
		if err != nil {
			t.Fatalf("within the grace: %v", err)
		}
		if p.KeyID != "k1" || string(p.Meta) != `{"plan":"pro"}` || p.RateLimit == nil || p.RateLimit.Limit != 5 || !p.Credits {
			t.Fatalf("principal %+v", p)
		}
	}
	if calls := store.calls.Load(); calls != 2 {
		t.Fatalf("%d lookups, want one per token", calls)
	}
	if !cache.HoldsLiveKey(key.PreviousHash, clock.Now()) || cache.HoldsLiveKey(key.PreviousHash, grace) {
		t.Fatal("HoldsLiveKey must follow the grace period")
	}

	clock.Advance(time.Hour)
	if _, err := svc.Authenticate(ctx, oldToken); authz.ErrorCode(err) != authz.KeyInvalid {
		t.Fatalf("after the grace: %v, want KEY_INVALID", err)
	}
	if _, err := svc.Authenticate(ctx, newToken); err != nil {
		t.Fatalf("the new token after the grace: %v", err)
	}
	if calls := store.calls.Load(); calls != 2 {
		t.Fatalf("%d lookups: the end of the grace needs none", calls)
	}

	// A change to the key, named by id, drops both entries.
	cache.KeysChanged(ctx, authz.KeyChange{KeyID: "k1"})
	if st := cache.Stats(); st.Entries != 0 {
		t.Fatalf("%d entries left after the key changed", st.Entries)
	}
}

// TestAPreviousHashOfAnotherKeyIsNotAKey: the store finds keys by either
// hash; the cache accepts a key only for the hash it holds.
func TestAPreviousHashOfAnotherKeyIsNotAKey(t *testing.T) {
	t.Parallel()
	tok := mustToken(t)
	other := authz.APIKey{ID: "k2", Enabled: true, Hash: authz.HashToken(mustToken(t))}
	store := &lookupStore{keys: map[string]authz.APIKey{authz.HashToken(tok): other}}
	svc := &authz.KeyService{Lookup: authz.NewKeyCache(store, authz.KeyCacheOptions{})}
	if _, err := svc.Authenticate(context.Background(), tok); authz.ErrorCode(err) != authz.KeyInvalid {
		t.Fatalf("a key whose hashes are not the token's: %v", err)
	}
}

// usageStore is an in-memory UsageRollupStore.
type usageStore struct {
	rows []authz.UsageRollup
	fail error
}

func (s *usageStore) AddUsage(_ context.Context, rows []authz.UsageRollup) error {
	if s.fail != nil {
		return s.fail
	}
	s.rows = append(s.rows, rows...)
	return nil
}

func (s *usageStore) FindUsage(context.Context, string, time.Time, time.Time) ([]authz.UsageRollup, error) {
	return s.rows, nil
}

func (s *usageStore) DeleteUsageBefore(context.Context, time.Time, int) (int, error) { return 0, nil }

func TestUsageRollupWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := &usageStore{}
	w := authz.NewUsageRollupWriter(store, authz.UsageRollupWriterOptions{Interval: time.Hour, MaxPending: 3})
	t.Cleanup(func() { _ = w.Close(ctx) })
	at := time.Date(2026, 1, 1, 10, 30, 0, 0, time.UTC)
	for _, c := range []struct {
		key  string
		at   time.Time
		code string
	}{
		{"k1", at, authz.CodeAllowed}, {"k1", at.Add(time.Minute), authz.CodeAllowed}, {"k1", at, authz.CodeDenied},
		{"k1", at, authz.CodeRateLimited}, {"k1", at, authz.CodeUsageExceeded}, {"k1", at, authz.KeyDisabled},
		{"k1", at.Add(time.Hour), authz.CodeAllowed}, {"k2", at, authz.CodeAllowed},
		{"k3", at, authz.CodeAllowed}, // a fourth key-hour: over MaxPending
	} {
		w.CountUsage(c.key, "t1", c.at, c.code)
	}
	if w.Dropped() != 1 {
		t.Fatalf("dropped %d, want 1", w.Dropped())
	}
	store.fail = errors.New("down")
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush hid the store's failure")
	}
	store.fail = nil
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(store.rows) != 3 {
		t.Fatalf("rows %+v, want one per key and hour", store.rows)
	}
	for _, r := range store.rows {
		if r.KeyID == "k1" && r.Hour.Equal(at.Truncate(time.Hour)) {
			want := authz.UsageCounts{Allowed: 2, Denied: 1, RateLimited: 1, UsageExceeded: 1, Refused: 1}
			if r.UsageCounts != want || r.TenantID != "t1" {
				t.Fatalf("k1 at 10:00: %+v, want %+v", r, want)
			}
			return
		}
	}
	t.Fatalf("no row of k1 at 10:00: %+v", store.rows)
}
