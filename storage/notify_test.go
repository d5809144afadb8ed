package storage_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// feedRecorder collects what a KeyChangeFeed delivers.
type feedRecorder struct {
	mu      sync.Mutex
	changes []authz.KeyChange
	resyncs int
}

func (r *feedRecorder) snapshot() ([]authz.KeyChange, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes), r.resyncs
}

func (r *feedRecorder) reset() {
	r.mu.Lock()
	r.changes = nil
	r.mu.Unlock()
}

// waitFor polls cond; the feed is asynchronous by nature.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startFeed(t *testing.T, db *storage.DB) (*storage.KeyChangeFeed, *feedRecorder) {
	t.Helper()
	rec := &feedRecorder{}
	feed := storage.NewKeyChangeFeed(db, storage.KeyChangeFeedOptions{
		Heartbeat: 200 * time.Millisecond,
		OnChange: func(ch authz.KeyChange) {
			rec.mu.Lock()
			rec.changes = append(rec.changes, ch)
			rec.mu.Unlock()
		},
		OnResync: func() {
			rec.mu.Lock()
			rec.resyncs++
			rec.mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the feed to listen", feed.Connected)
	return feed, rec
}

func TestKeyChangeFeed(t *testing.T) {
	t.Parallel()
	if storage.NewKeyChangeFeed(storagetest.MustOpenSQLite(t), storage.KeyChangeFeedOptions{}) != nil {
		t.Fatal("SQLite has no feed")
	}
	db := storagetest.MustOpenPostgres(t)
	ks := storage.NewKeyStore(db)
	ctx := context.Background()
	_, rec := startFeed(t, db)

	a := mustCreate(t, ks, newKey(t, "t1", "u1", "a", at(0)))
	b := mustCreate(t, ks, newKey(t, "t1", "u2", "b", at(0)))
	c := mustCreate(t, ks, newKey(t, "t2", "u1", "c", at(0)))
	ids := func() []string {
		changes, _ := rec.snapshot()
		var out []string
		for _, ch := range changes {
			out = append(out, ch.KeyID)
		}
		slices.Sort(out)
		return out
	}

	// last_used_at alone is not a change anyone must hear of.
	if err := ks.TouchKeys(ctx, map[string]time.Time{a.ID: at(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.UpdateKey(ctx, "t1", a.ID, func(k *authz.APIKey) ([]string, []authz.AuditEvent, error) {
		return []string{"enabled"}, nil, func() error { k.Disable(); return nil }()
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update", func() bool { return len(ids()) == 1 })
	if got := ids(); got[0] != a.ID {
		t.Fatalf("update: %v, want only %s (a touch is not a change)", got, a.ID)
	}

	rec.reset()
	if err := ks.DeleteKey(ctx, "t1", b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete", func() bool { return len(ids()) == 1 })
	if got := ids(); got[0] != b.ID {
		t.Fatalf("delete: %v", got)
	}

	rec.reset()
	if _, err := ks.DeleteTenant(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cascade", func() bool { return len(ids()) == 1 })
	if got := ids(); got[0] != a.ID {
		t.Fatalf("tenant cascade: %v, want %s", got, a.ID)
	}
	_ = c

	// Past 1000 keys in one statement, one message asks for a purge.
	rec.reset()
	for i := range 1001 {
		mustCreate(t, ks, newKey(t, "big", fmt.Sprintf("u%d", i%3), fmt.Sprintf("k%d", i), at(0)))
	}
	if _, err := ks.DeleteTenant(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the purge message", func() bool {
		changes, _ := rec.snapshot()
		return slices.Contains(changes, authz.KeyChange{})
	})
}

// TestKeyChangeFeedReconnects kills the listening connection: the feed must
// come back and ask for a resync, and then deliver changes again.
func TestKeyChangeFeedReconnects(t *testing.T) {
	t.Parallel()
	db := storagetest.MustOpenPostgres(t)
	ks := storage.NewKeyStore(db)
	ctx := context.Background()
	feed, rec := startFeed(t, db)
	if _, n := rec.snapshot(); n != 1 {
		t.Fatalf("%d resyncs at start, want 1", n)
	}
	// A machine this busy may already have had the feed reconnect on its
	// own (a heartbeat late); what counts is a resync after the kill.
	_, before := rec.snapshot()
	// The listener's connection is the one whose last statement was
	// LISTEN; the pool's, which the test goes on using, are spared.
	waitFor(t, "the listening connection to be terminated", func() bool {
		var n int
		err := db.Bun().NewRaw("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "+
			"WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'").Scan(ctx, &n)
		return err == nil && n > 0
	})
	waitFor(t, "the feed to reconnect", func() bool {
		_, n := rec.snapshot()
		return n > before && feed.Connected()
	})
	// A change made now is delivered, unless the feed reconnects once more
	// meanwhile: the resync then stands for it, and the test tries again.
	for attempt := 1; ; attempt++ {
		_, resyncs := rec.snapshot()
		k := mustCreate(t, ks, newKey(t, "t1", "u1", fmt.Sprintf("a%d", attempt), at(0)))
		if err := ks.DeleteKey(ctx, "t1", k.ID); err != nil {
			t.Fatal(err)
		}
		delivered := false
		waitFor(t, "a change, or a resync standing for it, after reconnecting", func() bool {
			changes, n := rec.snapshot()
			delivered = slices.Contains(changes, authz.KeyChange{KeyID: k.ID})
			return delivered || n > resyncs
		})
		if delivered {
			return
		}
		if attempt == 5 {
			t.Fatal("five changes in a row were each overtaken by a reconnect")
		}
	}
}

// TestKeyChangeFeedOutage cuts the feed off from Postgres: it reports the
// loss with when it last heard the database, and once the database is back
// the feed is back at once, however long its backoff.
func TestKeyChangeFeedOutage(t *testing.T) {
	t.Parallel()
	db, proxy := storagetest.MustOpenPostgresBehindProxy(t)
	ctx := context.Background()
	var mu sync.Mutex
	var lost []time.Time
	feed := storage.NewKeyChangeFeed(db, storage.KeyChangeFeedOptions{
		Heartbeat:  50 * time.Millisecond,
		MinBackoff: time.Hour, MaxBackoff: time.Hour, // only the database answering brings it back in time
		OnLost: func(heard time.Time) {
			mu.Lock()
			lost = append(lost, heard)
			mu.Unlock()
		},
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); feed.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the feed to listen", feed.Connected)
	first := feed.LastHeard()
	waitFor(t, "a heartbeat to come back", func() bool { return feed.LastHeard().After(first) })

	proxy.Cut()
	cut := time.Now()
	waitFor(t, "the loss to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lost) == 1
	})
	if heard := lost[0]; heard.Before(first) || heard.After(cut) {
		t.Fatalf("lost having heard the database at %v; want between the first listen (%v) and the cut (%v)", heard, first, cut)
	}
	if feed.Connected() {
		t.Fatal("a feed cut off must not say it is connected")
	}
	proxy.Restore()
	waitFor(t, "the feed to listen again", func() bool { return feed.Connected() && feed.Resyncs() >= 2 })
}
