package authz_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/keygate/keygate/authz"
)

// TestCacheStats: the key and decision caches count hits, misses and the
// entries they evict to stay within their bounds, for the metrics.
func TestCacheStats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const keys = 200
	c, _ := newTestCache(newLookupStore(keys), authz.KeyCacheOptions{MaxEntries: 32})
	for i := range keys {
		if _, err := c.KeyByHash(ctx, hx(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.KeyByHash(ctx, hx(keys-1)); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Misses != keys || st.Hits != 1 || st.Evictions != int64(keys-st.Entries) || st.Entries > 32+16 {
		t.Fatalf("key cache %+v: want %d misses, 1 hit, and an eviction for every key it no longer holds", st, keys)
	}

	e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{DecisionCacheSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.DecisionCacheStats(); st != (authz.DecisionCacheStats{}) {
		t.Fatalf("a new cache: %+v", st)
	}
	p := testPrincipal()
	for i := range keys {
		if _, err := e.Decide(ctx, p, authz.Resource{Type: authz.ResourceFlow, ID: fmt.Sprintf("f%d", i)}, "read", authz.DecisionContext{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Decide(ctx, p, authz.Resource{Type: authz.ResourceFlow, ID: fmt.Sprintf("f%d", keys-1)}, "read", authz.DecisionContext{}); err != nil {
		t.Fatal(err)
	}
	ds := e.DecisionCacheStats()
	if ds.Misses != keys || ds.Hits != 1 || ds.Evictions != int64(keys-ds.Entries) || ds.Entries > 32+16 {
		t.Fatalf("decision cache %+v: want %d misses, 1 hit, and an eviction for every answer it no longer holds", ds, keys)
	}
	off := newEngine(t, embeddedModules(t))
	if st := off.DecisionCacheStats(); st != (authz.DecisionCacheStats{}) {
		t.Fatalf("no cache: %+v", st)
	}
}
