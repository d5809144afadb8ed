package authz_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// TestKeyCacheWithoutItsFeed: while the change feed is down, a cached key
// is trusted for Staleness after it was loaded or after the feed last heard
// the database, whichever is later; then it is looked up again, and fails
// closed when the store is down too. Once the feed listens again, the cache
// starts empty and keys live their TTL.
func TestKeyCacheWithoutItsFeed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(2)
	c, clk := newTestCache(store, authz.KeyCacheOptions{TTL: time.Minute, Staleness: time.Second})
	lookup := func(i int) (*authz.APIKey, error) { return c.KeyByHash(ctx, hx(i)) }
	queries := func() int64 { return store.calls.Load() }

	if c.FeedDown() {
		t.Fatal("a cache without a feed (one instance) needs none: it starts trusting")
	}
	if _, err := lookup(0); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	heard := clk.Now()
	clk.Advance(300 * time.Millisecond)
	c.FeedLost(heard)

	steps := []struct {
		note    string
		advance time.Duration
		down    bool
		enabled bool
		queries int64 // after the step
		wantErr bool
	}{
		{"loaded before the feed last heard: trusted until heard+1s", 600 * time.Millisecond, false, true, 1, false},
		{"past heard+1s: looked up again", 200 * time.Millisecond, false, true, 2, false},
		{"loaded again: trusted for 1s after the load", 900 * time.Millisecond, true, true, 2, false},
		{"past it with the store down: fails closed", 200 * time.Millisecond, true, true, 3, true},
		{"store back, key disabled elsewhere meanwhile: the change is seen", 0, false, false, 4, false},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		store.mu.Lock()
		store.down = st.down
		k := store.keys[hx(0)]
		k.Enabled = st.enabled
		store.keys[hx(0)] = k
		store.mu.Unlock()
		got, err := lookup(0)
		if (err != nil) != st.wantErr || queries() != st.queries {
			t.Fatalf("%s: err %v, %d queries; want error %v and %d queries", st.note, err, queries(), st.wantErr, st.queries)
		}
		if err == nil && got.Enabled != st.enabled {
			t.Fatalf("%s: served enabled=%v", st.note, got.Enabled)
		}
	}
	if c.Stats().Stale != 2 {
		t.Fatalf("stale reloads %d, want 2", c.Stats().Stale)
	}

	c.FeedListening()
	if c.FeedDown() || c.Stats().Entries != 0 {
		t.Fatal("a feed listening again empties the cache (changes were missed) and trusts again")
	}
	if _, err := lookup(1); err != nil || queries() != 5 {
		t.Fatalf("after the resync: %v, %d queries", err, queries())
	}
	clk.Advance(30 * time.Second)
	if _, err := lookup(1); err != nil || queries() != 5 {
		t.Fatalf("with the feed up a key lives its TTL: %v, %d queries", err, queries())
	}
}
