package storage_test

import (
	"context"
	"sync"
	"testing"

	"github.com/keygate/keygate/storage/storagetest"
)

// TestPoolAfterABlink: every connection the pool held died with the cut;
// once the database is back, no query fails on one of them.
func TestPoolAfterABlink(t *testing.T) {
	t.Parallel()
	db, proxy := storagetest.MustOpenPostgresBehindProxy(t)
	ctx := context.Background()
	query := func() error {
		var n int
		return db.Bun().NewRaw("SELECT 1 FROM pg_sleep(0.02)").Scan(ctx, &n)
	}
	var wg sync.WaitGroup
	for range 6 { // several connections in the pool
		wg.Go(func() {
			if err := query(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if open := db.Bun().Stats().OpenConnections; open < 2 {
		t.Fatalf("%d pooled connections; the test needs several", open)
	}

	proxy.Cut()
	proxy.Restore()
	for i := range 20 {
		if err := query(); err != nil {
			t.Fatalf("query %d after the database came back: %v", i, err)
		}
	}
}
