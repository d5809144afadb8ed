package authz_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// lookupStore is a KeyLookup over a map, counting queries; gate, when set,
// holds every query until it is closed.
type lookupStore struct {
	mu    sync.Mutex
	keys  map[string]authz.APIKey // hash → key
	calls atomic.Int64
	gate  chan struct{}
	down  bool
}

func (s *lookupStore) KeyByHash(_ context.Context, hash string) (*authz.APIKey, error) {
	s.calls.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return nil, errors.New("connection refused")
	}
	k, ok := s.keys[hash]
	if !ok {
		return nil, authz.Errorf(authz.ENOTFOUND, "no key")
	}
	return &k, nil // a fresh copy, as a store returns
}

func (s *lookupStore) put(k authz.APIKey) {
	s.mu.Lock()
	s.keys[k.Hash] = k
	s.mu.Unlock()
}

func newLookupStore(n int) *lookupStore {
	s := &lookupStore{keys: map[string]authz.APIKey{}}
	for i := range n {
		s.put(authz.APIKey{ID: fmt.Sprintf("k%d", i), Hash: hx(i), TenantID: fmt.Sprintf("t%d", i%2), UserID: fmt.Sprintf("u%d", i%4), Enabled: true})
	}
	return s
}

type testClock struct{ now atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *testClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func newTestCache(store authz.KeyLookup, opts authz.KeyCacheOptions) (*authz.KeyCache, *testClock) {
	clk := &testClock{}
	clk.now.Store(fixedTime.UnixNano())
	opts.Now = clk.Now
	return authz.NewKeyCache(store, opts), clk
}

func TestKeyCacheHitsAndTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(1)
	c, clk := newTestCache(store, authz.KeyCacheOptions{TTL: time.Minute})
	first, err := c.KeyByHash(ctx, hx(0))
	if err != nil || first.ID != "k0" {
		t.Fatalf("first lookup: %v %v", first, err)
	}
	for range 10 {
		k, err := c.KeyByHash(ctx, hx(0))
		if err != nil || k.Principal() != first.Principal() || k.ID != "k0" || !k.Enabled || k.Hash != hx(0) {
			t.Fatalf("a hit must serve the cached snapshot and its one principal: %+v %v", k, err)
		}
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("%d queries, want 1", n)
	}
	clk.Advance(time.Minute)
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil || store.calls.Load() != 2 {
		t.Fatalf("after the TTL the key must be looked up again (queries %d)", store.calls.Load())
	}
	st := c.Stats()
	if st.Hits != 10 || st.Misses != 2 || st.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeyCacheNegative(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(0)
	c, clk := newTestCache(store, authz.KeyCacheOptions{NegativeTTL: 5 * time.Second})
	for range 100 {
		if _, err := c.KeyByHash(ctx, hx(424242)); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("unknown hash: %v", err)
		}
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("100 lookups of one unknown hash made %d queries, want 1", n)
	}
	clk.Advance(5 * time.Second)
	store.put(authz.APIKey{ID: "k", Hash: hx(424242), Enabled: true})
	if k, err := c.KeyByHash(ctx, hx(424242)); err != nil || k.ID != "k" {
		t.Fatalf("after the negative TTL: %v %v", k, err)
	}
}

func TestKeyCacheBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(2000)
	c, _ := newTestCache(store, authz.KeyCacheOptions{MaxEntries: 160, NegativeMaxEntries: 32})
	for i := range 2000 {
		if _, err := c.KeyByHash(ctx, hx(i)); err != nil {
			t.Fatal(err)
		}
		_, _ = c.KeyByHash(ctx, hx(1_000_000+i))
	}
	st := c.Stats()
	// Each of 16 shards holds MaxEntries/16+1.
	if st.Entries > 160+16 || st.Entries < 100 || st.NegativeEntries > 32+16 {
		t.Fatalf("sizes %+v exceed the bounds", st)
	}
	// The most recent key is still cached; the oldest is not.
	before := store.calls.Load()
	if _, err := c.KeyByHash(ctx, hx(1999)); err != nil || store.calls.Load() != before {
		t.Fatal("the most recently used key was evicted")
	}
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil || store.calls.Load() != before+1 {
		t.Fatal("the least recently used key was kept")
	}
}

func TestKeyCacheConcurrentMissesShareOneQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(1)
	store.gate = make(chan struct{})
	c, _ := newTestCache(store, authz.KeyCacheOptions{})
	var wg sync.WaitGroup
	results := make(chan *authz.APIKey, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := c.KeyByHash(ctx, hx(0))
			if err != nil {
				t.Error(err)
			}
			results <- k
		}()
	}
	// Let the waiters pile up behind the first query, then release it.
	for c.Stats().Misses < 50 {
		time.Sleep(time.Millisecond)
	}
	close(store.gate)
	wg.Wait()
	close(results)
	var first *authz.Principal
	for k := range results {
		if first == nil {
			first = k.Principal()
		}
		if k.Principal() != first {
			t.Fatal("waiters got different snapshots")
		}
	}
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("50 concurrent misses made %d queries, want 1", n)
	}
}

func TestKeyCacheInvalidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		note   string
		change authz.KeyChange
		gone   []int // keys whose hash must be looked up again
		kept   []int
	}{
		{"by hash", authz.KeyChange{Hash: hx(1)}, []int{1}, []int{0, 2, 3}},
		{"by key id, as other instances send", authz.KeyChange{KeyID: "k2"}, []int{2}, []int{0, 1, 3}},
		{"a user's keys", authz.KeyChange{TenantID: "t1", UserID: "u1"}, []int{1}, []int{0, 2, 3}},
		{"a tenant's keys", authz.KeyChange{TenantID: "t0"}, []int{0, 2}, []int{1, 3}},
		{"everything", authz.KeyChange{}, []int{0, 1, 2, 3}, nil},
	}
	for _, tc := range tests {
		store := newLookupStore(4)
		c, _ := newTestCache(store, authz.KeyCacheOptions{})
		for i := range 4 {
			if _, err := c.KeyByHash(ctx, hx(i)); err != nil {
				t.Fatal(err)
			}
		}
		c.Invalidate(tc.change)
		for _, i := range tc.kept {
			before := store.calls.Load()
			if _, _ = c.KeyByHash(ctx, hx(i)); store.calls.Load() != before {
				t.Errorf("%s: key %d was dropped", tc.note, i)
			}
		}
		for _, i := range tc.gone {
			before := store.calls.Load()
			if _, _ = c.KeyByHash(ctx, hx(i)); store.calls.Load() != before+1 {
				t.Errorf("%s: key %d was kept", tc.note, i)
			}
		}
	}
}

// TestKeyCacheInvalidationDuringLoad: a load that read the store before an
// invalidation must not put its stale result in the cache.
func TestKeyCacheInvalidationDuringLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(1)
	store.gate = make(chan struct{})
	c, _ := newTestCache(store, authz.KeyCacheOptions{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.KeyByHash(ctx, hx(0))
	}()
	for store.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	c.Invalidate(authz.KeyChange{Hash: hx(0)})
	close(store.gate)
	<-done
	if c.Stats().Entries != 0 {
		t.Fatal("a load overtaken by an invalidation was cached")
	}
}

func TestKeyCacheStoreDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(2)
	c, clk := newTestCache(store, authz.KeyCacheOptions{TTL: time.Minute})
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil {
		t.Fatal(err)
	}
	store.down = true
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil {
		t.Fatalf("a cached key must keep working while the store is down: %v", err)
	}
	if _, err := c.KeyByHash(ctx, hx(1)); err == nil || authz.ErrorCode(err) == authz.ENOTFOUND {
		t.Fatalf("an uncached key with the store down must fail, not be unknown: %v", err)
	}
	if _, err := c.KeyByHash(ctx, hx(1)); store.calls.Load() != 3 || err == nil {
		t.Fatal("a failed lookup must not be cached, neither way")
	}
	clk.Advance(time.Minute)
	if _, err := c.KeyByHash(ctx, hx(0)); err == nil {
		t.Fatal("after its TTL a cached key must not outlive the store")
	}
}

// hx is the hash of test key i: 64 hex characters.
func hx(i int) string { return fmt.Sprintf("%064x", i) }

// A key past its shard's ready principals is kept compact and made a
// principal again when next used: the same key, the same snapshot, so the
// decisions cached about it still answer.
func TestKeyCacheCompactRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exp := fixedTime.Add(time.Hour)
	store := newLookupStore(1024)
	want := authz.APIKey{ID: "0196a6f2-0000-7000-8000-000000000001", Name: "ci-agent ünïcode", Hash: hx(5000),
		TenantID: "t1", UserID: "u1", Enabled: true, ExpiresAt: &exp,
		Scope: authz.Scope{AgentIDs: []string{"a", strings.Repeat("x", authz.MaxScopeEntryLen)}, MCPToolIDs: []string{"github__*"},
			VectorStoreIDs: make([]string, 0)}}
	for i := range 300 {
		want.Scope.FlowIDs = append(want.Scope.FlowIDs, fmt.Sprintf("flow-%d", i)) // lengths past one varint byte
	}
	store.put(want)
	obs := &recordingObserver{}
	e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{Observer: obs, DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newTestCache(store, authz.KeyCacheOptions{Principals: 1})
	first, err := c.KeyByHash(ctx, hx(5000))
	if err != nil {
		t.Fatal(err)
	}
	flow := authz.Resource{Type: authz.ResourceFlow, ID: "flow-299"}
	if d, err := e.Decide(ctx, first.Principal(), flow, "read", testContext); err != nil || !d.Allow {
		t.Fatalf("first decision: %+v %v", d, err)
	}
	for i := range 1024 { // every shard's one ready principal is another key's now
		if _, err := c.KeyByHash(ctx, hx(i)); err != nil {
			t.Fatal(err)
		}
	}
	again, err := c.KeyByHash(ctx, hx(5000))
	if err != nil {
		t.Fatal(err)
	}
	p, q := first.Principal(), again.Principal()
	if p == q {
		t.Fatal("the principal was not made again; the test shows nothing")
	}
	if !reflect.DeepEqual(*p, *q) || q.KeyID != want.ID || q.KeyName != want.Name || !reflect.DeepEqual(q.Scope, authz.Scope{
		AgentIDs: want.Scope.AgentIDs, FlowIDs: want.Scope.FlowIDs, MCPToolIDs: want.Scope.MCPToolIDs}) ||
		!q.ExpiresAt.Equal(exp) || q.TenantID != "t1" || q.UserID != "u1" || !again.Enabled {
		t.Fatalf("made again: %+v\nwant the key %+v", q, want)
	}
	if d, err := e.Decide(ctx, q, flow, "read", testContext); err != nil || !d.Allow {
		t.Fatalf("second decision: %+v %v", d, err)
	}
	if got := obs.seen(); len(got) != 2 || got[1].Query != "cached "+authz.QueryDecision {
		t.Fatalf("the principal made again was not answered from the decision cache: %+v", got)
	}
	if n := store.calls.Load(); n != 1025 {
		t.Fatalf("%d queries, want 1025 (the store's 1,024 and ours): making a principal again needs none", n)
	}

	// A copy of the principal, changed, is a principal of its own: it gets
	// no answer cached for the key it was copied from.
	narrowed := *q
	narrowed.Scope = authz.Scope{}
	if d, err := e.Decide(ctx, &narrowed, flow, "read", testContext); err != nil || d.Allow {
		t.Fatalf("a narrowed copy was answered as the key it was copied from: %+v %v", d, err)
	}
}

// TestKeyCacheRefreshesAheadOfTTL: a key used in the last quarter of its
// TTL is looked up again in the background, once, while its cached
// snapshot keeps answering; what the lookup finds replaces it.
func TestKeyCacheRefreshesAheadOfTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		note   string
		change func(*lookupStore) // what happens in the store after the key is cached
		check  func(t *testing.T, c *authz.KeyCache) bool
	}{
		{
			note: "the refreshed key replaces the snapshot",
			change: func(s *lookupStore) {
				s.put(authz.APIKey{ID: "k0", Hash: hx(0), Name: "renamed", TenantID: "t0", UserID: "u0", Enabled: true})
			},
			check: func(t *testing.T, c *authz.KeyCache) bool {
				k, err := c.KeyByHash(ctx, hx(0))
				return err == nil && k.Name == "renamed"
			},
		},
		{
			note: "a key gone since is served no more",
			change: func(s *lookupStore) {
				s.mu.Lock()
				delete(s.keys, hx(0))
				s.mu.Unlock()
			},
			check: func(t *testing.T, c *authz.KeyCache) bool {
				_, err := c.KeyByHash(ctx, hx(0))
				return authz.ErrorCode(err) == authz.ENOTFOUND
			},
		},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			store := newLookupStore(1)
			c, clk := newTestCache(store, authz.KeyCacheOptions{TTL: time.Minute})
			first, err := c.KeyByHash(ctx, hx(0))
			if err != nil {
				t.Fatal(err)
			}
			tc.change(store)
			clk.Advance(44 * time.Second) // not yet the last quarter
			if k, err := c.KeyByHash(ctx, hx(0)); err != nil || k.Principal() != first.Principal() || store.calls.Load() != 1 || c.Stats().Refreshes != 0 {
				t.Fatalf("at 44 s of 60: %v, %d queries, stats %+v; want the snapshot and no lookup", err, store.calls.Load(), c.Stats())
			}
			// Held until released: the callers meanwhile must not wait.
			gate := make(chan struct{})
			store.gate = gate
			clk.Advance(2 * time.Second)
			for range 5 {
				k, err := c.KeyByHash(ctx, hx(0))
				if err != nil || k.Principal() != first.Principal() {
					t.Fatalf("while the lookup is under way the snapshot must answer at once: %v %v", k, err)
				}
			}
			waitUntil(t, "the lookup ahead of the TTL", func() bool { return store.calls.Load() == 2 })
			if st := c.Stats(); st.Refreshes != 1 || st.Hits != 6 {
				t.Fatalf("stats %+v: want one lookup ahead, every use a hit", st)
			}
			close(gate)
			waitUntil(t, "the lookup's answer to be served", func() bool { return tc.check(t, c) })
			if n := store.calls.Load(); n != 2 {
				t.Fatalf("%d queries, want one lookup ahead of the TTL and no other", n)
			}
		})
	}
}

// TestKeyCacheRefreshWithTheStoreDown: a lookup ahead of the TTL that fails
// is not retried; the snapshot answers until its TTL, as it would have.
func TestKeyCacheRefreshWithTheStoreDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newLookupStore(1)
	c, clk := newTestCache(store, authz.KeyCacheOptions{TTL: time.Minute})
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.down = true
	store.mu.Unlock()
	clk.Advance(50 * time.Second)
	if _, err := c.KeyByHash(ctx, hx(0)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the lookup ahead of the TTL", func() bool { return c.Stats().StoreLoads == 2 })
	for range 10 {
		if _, err := c.KeyByHash(ctx, hx(0)); err != nil {
			t.Fatalf("the snapshot must answer until its TTL: %v", err)
		}
	}
	if n := store.calls.Load(); n != 2 {
		t.Fatalf("%d queries: a failed lookup ahead of the TTL must not be retried on every use", n)
	}
	clk.Advance(10 * time.Second)
	if _, err := c.KeyByHash(ctx, hx(0)); err == nil || authz.ErrorCode(err) == authz.ENOTFOUND {
		t.Fatalf("past its TTL with the store down a key must fail, not be unknown: %v", err)
	}
}

// waitUntil polls cond for up to 10 s; a background lookup has no other
// signal a test can wait on.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
