package main_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// TestRevocationReachesEveryInstance runs two instances on one Postgres
// database, disables a key on one and measures how long the other keeps
// allowing it, over 100 revocations.
func TestRevocationReachesEveryInstance(t *testing.T) {
	t.Parallel()
	dbURL := storagetest.PostgresURL(t)
	secret := "KEYGATE_JWT_SECRET=revocation-test-secret-of-32-bytes!!"
	// B is asked about the disabled key as fast as it answers, 100 times
	// over: no failed-authentication budget, which would answer 429.
	a := start(t, t.TempDir(), dbURL, secret, "KEYGATE_AUTH_FAILURE_BURST=0")
	b := start(t, t.TempDir(), dbURL, secret, "KEYGATE_AUTH_FAILURE_BURST=0")
	admin := a.cli("token", "--tenant", "t1", "--user", "ops", "--role", "admin", "--jwt-secret", "revocation-test-secret-of-32-bytes!!")
	admin = admin[:len(admin)-1]
	key := a.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "revoked", "permission_scope": map[string]any{"flow_ids": []string{"f1"}}})
	want(t, "create", key, 201, "")
	id, token := key.body["id"].(string), key.body["token"].(string)

	const rounds = 100
	lags := make([]time.Duration, 0, rounds)
	for range rounds {
		// B holds the key, enabled, in its cache.
		waitFor(t, "B to allow the key", 5*time.Second, func() bool {
			return b.check(token, "flow", "f1", "read").body["code"] == "ALLOWED"
		})
		want(t, "disable on A", a.call("PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{"enabled": false}), 200, "")
		disabled := time.Now()
		for b.check(token, "flow", "f1", "read").body["code"] == "ALLOWED" {
			if time.Since(disabled) > 5*time.Second {
				t.Fatal("B still allows the key 5s after it was disabled on A")
			}
		}
		lags = append(lags, time.Since(disabled))
		want(t, "enable on A", a.call("PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{"enabled": true}), 200, "")
	}
	slices.Sort(lags)
	p50, p99, worst := lags[rounds/2], lags[rounds*99/100-1], lags[rounds-1]
	t.Logf("revocation reached the other instance: p50 %s, p99 %s, max %s over %d revocations", p50, p99, worst, rounds)
	if worst >= time.Second {
		t.Fatalf("a revocation took %s to reach the other instance; the bound is 1s", worst)
	}
	a.stop()
	b.stop()
}

// TestNoWritesOnTheRequestPath: with the flush interval far away, N allowed
// and N refused decisions leave the database untouched until a graceful
// stop writes every audit event and the newest last_used_at.
func TestNoWritesOnTheRequestPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note  string
		dbURL func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return storagetest.PostgresURL(t) }},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			const n = 200
			dataDir := t.TempDir()
			k := start(t, dataDir, tc.dbURL(t), "KEYGATE_FLUSH_INTERVAL=1h")
			admin := k.devToken()
			key := k.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "busy", "permission_scope": map[string]any{"flow_ids": []string{"f1"}}})
			want(t, "create", key, 201, "")
			id, token := key.body["id"].(string), key.body["token"].(string)

			// A refused decision is a use of the key too: the last use is
			// the last request.
			var lastBefore, lastAfter time.Time
			for i := range n {
				want(t, "allowed", k.check(token, "flow", "f1", "read"), 200, "ALLOWED")
				if i == n-1 {
					lastBefore = time.Now()
				}
				want(t, "refused", k.check(token, "flow", "f2", "read"), 200, "DENIED")
			}
			lastAfter = time.Now()

			db := openInstanceDB(t, k)
			ctx := context.Background()
			store := storage.NewKeyStore(db)
			got, err := store.FindKeyByID(ctx, "default", id)
			if err != nil {
				t.Fatal(err)
			}
			denied := countAudit(t, db, authz.AuditAuthzDenied)
			if got.LastUsedAt != nil || denied != 0 {
				t.Fatalf("the request path wrote to the database: last_used_at %v, %d denial events", got.LastUsedAt, denied)
			}

			k.stop()
			got, err = store.FindKeyByID(ctx, "default", id)
			if err != nil {
				t.Fatal(err)
			}
			if denied := countAudit(t, db, authz.AuditAuthzDenied); denied != n {
				t.Fatalf("%d denial events after a graceful stop, want %d", denied, n)
			}
			if got.LastUsedAt == nil || got.LastUsedAt.Before(lastBefore.Truncate(time.Microsecond)) || got.LastUsedAt.After(lastAfter) {
				t.Fatalf("last_used_at %v, want the last request's time, between %v and %v", got.LastUsedAt, lastBefore, lastAfter)
			}
		})
	}
}

func openInstanceDB(t *testing.T, k *instance) *storage.DB {
	t.Helper()
	dbURL := k.dbURL
	if dbURL == "" {
		dbURL = "sqlite:" + filepath.Join(k.dataDir, "keygate.db")
	}
	db, err := storage.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func countAudit(t *testing.T, db *storage.DB, action string) int {
	t.Helper()
	n, err := db.Bun().NewSelect().Table("audit_events").Where("action = ?", action).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}
