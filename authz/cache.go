package authz

import (
	"container/list"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// KeyCacheOptions sizes a KeyCache; zero values take the defaults.
type KeyCacheOptions struct {
	MaxEntries         int           // keys held, least recently used out; 100000
	TTL                time.Duration // longest a key is served without a lookup; 30s
	NegativeMaxEntries int           // unknown hashes remembered; 10000
	NegativeTTL        time.Duration // how long an unknown hash stays unknown; 5s
	Now                func() time.Time
}

// KeyCache stands between authentication and the store: token hash → key
// snapshot, bounded and least-recently-used, with a TTL. Unknown hashes are
// remembered briefly, so a flood of random tokens costs no queries, and
// concurrent misses for one hash share one query. Changes made through the
// KeyService reach it at once (KeysChanged); changes made on other instances
// reach it through Invalidate, and at worst after TTL.
//
// Snapshots are shared and never modified: callers must not change a key or
// principal they get from the cache.
type KeyCache struct {
	store  KeyLookup
	opts   KeyCacheOptions
	seed   maphash.Seed
	shards [cacheShards]cacheShard

	// epoch moves on every invalidation; a load that started in an older
	// epoch may have read what was just invalidated, so it is not kept.
	epoch atomic.Uint64

	// byID finds a cached key's hash by key id (id → hash), for changes
	// that name a key by id, as other instances do.
	byID sync.Map

	hits, misses, negativeHits, loads atomic.Int64
}

const cacheShards = 16

type cacheShard struct {
	mu       sync.Mutex
	entries  map[string]*list.Element // hash → *cacheEntry
	lru      list.List                // front: most recently used
	negative map[string]*list.Element // hash → *negativeEntry
	negLRU   list.List
	inflight map[string]*cacheLoad
}

type cacheEntry struct {
	hash    string
	key     *APIKey
	expires time.Time
}

type negativeEntry struct {
	hash    string
	expires time.Time
}

// cacheLoad is one query in flight that concurrent misses wait for.
type cacheLoad struct {
	done chan struct{}
	key  *APIKey
	err  error
}

// NewKeyCache returns a cache in front of store.
func NewKeyCache(store KeyLookup, opts KeyCacheOptions) *KeyCache {
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100_000
	}
	if opts.TTL <= 0 {
		opts.TTL = 30 * time.Second
	}
	if opts.NegativeMaxEntries <= 0 {
		opts.NegativeMaxEntries = 10_000
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &KeyCache{store: store, opts: opts, seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = map[string]*list.Element{}
		s.negative = map[string]*list.Element{}
		s.inflight = map[string]*cacheLoad{}
	}
	return c
}

var (
	_ KeyLookup         = (*KeyCache)(nil)
	_ KeyChangeNotifier = (*KeyCache)(nil)
)

func (c *KeyCache) shard(hash string) *cacheShard {
	return &c.shards[maphash.String(c.seed, hash)%cacheShards]
}

// KeyByHash returns the key with the hash, from the cache when it holds a
// live snapshot. Returns ENOTFOUND for an unknown hash and the store's error
// (which authentication turns into EUNAVAILABLE) when the lookup fails;
// cached keys keep working while the store is down, until their TTL.
func (c *KeyCache) KeyByHash(ctx context.Context, hash string) (*APIKey, error) {
	now := c.opts.Now()
	s := c.shard(hash)
	s.mu.Lock()
	if el, ok := s.entries[hash]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			s.lru.MoveToFront(el)
			s.mu.Unlock()
			c.hits.Add(1)
			return e.key, nil
		}
		c.removeEntry(s, el)
	}
	if el, ok := s.negative[hash]; ok {
		if now.Before(el.Value.(*negativeEntry).expires) {
			s.mu.Unlock()
			c.negativeHits.Add(1)
			return nil, Errorf(ENOTFOUND, "no key has this hash")
		}
		s.negLRU.Remove(el)
		delete(s.negative, hash)
	}
	c.misses.Add(1)
	if load, ok := s.inflight[hash]; ok {
		s.mu.Unlock()
		select {
		case <-load.done:
			return load.key, load.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	load := &cacheLoad{done: make(chan struct{})}
	s.inflight[hash] = load
	epoch := c.epoch.Load()
	s.mu.Unlock()

	// The query runs without the caller's cancellation so one impatient
	// caller cannot fail the others waiting on it.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	key, err := c.store.KeyByHash(qctx, hash)
	cancel()
	c.loads.Add(1)
	if key != nil {
		key.principal = key.buildPrincipal()
	}
	load.key, load.err = key, err

	s.mu.Lock()
	if s.inflight[hash] == load {
		delete(s.inflight, hash)
	}
	if c.epoch.Load() == epoch {
		switch {
		case err == nil:
			c.addEntry(s, &cacheEntry{hash: hash, key: key, expires: now.Add(c.opts.TTL)})
		case ErrorCode(err) == ENOTFOUND:
			s.addNegative(&negativeEntry{hash: hash, expires: now.Add(c.opts.NegativeTTL)}, c.opts.NegativeMaxEntries/cacheShards+1)
		}
	}
	s.mu.Unlock()
	close(load.done)
	return key, err
}

// addEntry caches e in s, whose lock the caller holds, evicting the least
// recently used keys beyond the shard's share of MaxEntries.
func (c *KeyCache) addEntry(s *cacheShard, e *cacheEntry) {
	if el, ok := s.entries[e.hash]; ok {
		c.removeEntry(s, el)
	}
	if el, ok := s.negative[e.hash]; ok {
		s.negLRU.Remove(el)
		delete(s.negative, e.hash)
	}
	s.entries[e.hash] = s.lru.PushFront(e)
	c.byID.Store(e.key.ID, e.hash)
	for capacity := c.opts.MaxEntries/cacheShards + 1; s.lru.Len() > capacity; {
		c.removeEntry(s, s.lru.Back())
	}
}

// removeEntry drops a cached key from s, whose lock the caller holds.
func (c *KeyCache) removeEntry(s *cacheShard, el *list.Element) {
	e := el.Value.(*cacheEntry)
	s.lru.Remove(el)
	delete(s.entries, e.hash)
	c.byID.CompareAndDelete(e.key.ID, e.hash)
}

func (s *cacheShard) addNegative(e *negativeEntry, capacity int) {
	if el, ok := s.negative[e.hash]; ok {
		s.negLRU.Remove(el)
	}
	s.negative[e.hash] = s.negLRU.PushFront(e)
	for s.negLRU.Len() > capacity {
		el := s.negLRU.Back()
		s.negLRU.Remove(el)
		delete(s.negative, el.Value.(*negativeEntry).hash)
	}
}

// KeysChanged drops what a change made on this instance touched. Other
// instances hear of it from the database (on Postgres, a trigger notifies
// them) and call Invalidate.
func (c *KeyCache) KeysChanged(_ context.Context, change KeyChange) {
	c.Invalidate(change)
}

// Invalidate drops the keys a change touched, on this instance only: one
// key by hash or id, every key of a user, or of a tenant. A change naming
// nothing empties the cache.
func (c *KeyCache) Invalidate(change KeyChange) {
	c.epoch.Add(1)
	hash := change.Hash
	if hash == "" && change.KeyID != "" {
		if h, ok := c.byID.Load(change.KeyID); ok {
			hash = h.(string)
		}
	}
	switch {
	case hash != "":
		s := c.shard(hash)
		s.mu.Lock()
		if el, ok := s.entries[hash]; ok {
			c.removeEntry(s, el)
		}
		clear(s.inflight)
		s.mu.Unlock()
	case change.KeyID != "":
		// Not cached here; only loads in flight may hold it.
		c.clearInflight()
	case change.TenantID != "":
		c.removeMatching(change)
	default:
		c.Purge()
	}
}

// removeMatching drops every cached key of the change's tenant or user; a
// scan, as offboarding is rare.
func (c *KeyCache) removeMatching(change KeyChange) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for el := s.lru.Front(); el != nil; {
			next := el.Next()
			if change.matches(el.Value.(*cacheEntry).key) {
				c.removeEntry(s, el)
			}
			el = next
		}
		clear(s.inflight)
		s.mu.Unlock()
	}
}

func (c *KeyCache) clearInflight() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.inflight)
		s.mu.Unlock()
	}
}

// matches reports whether k is among the keys of the change's user, or of
// its tenant when it names no user.
func (ch KeyChange) matches(k *APIKey) bool {
	switch {
	case ch.UserID != "":
		return k.TenantID == ch.TenantID && k.UserID == ch.UserID
	default:
		return k.TenantID == ch.TenantID
	}
}

// Purge empties the cache, for when changes may have been missed (the
// change feed dropped).
func (c *KeyCache) Purge() {
	c.epoch.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.entries)
		s.lru.Init()
		c.byID.Clear()
		clear(s.negative)
		s.negLRU.Init()
		clear(s.inflight)
		s.mu.Unlock()
	}
}

// KeyCacheStats are counters since the cache was made.
type KeyCacheStats struct {
	Entries, NegativeEntries               int
	Hits, Misses, NegativeHits, StoreLoads int64
}

// Stats returns the cache's counters and sizes.
func (c *KeyCache) Stats() KeyCacheStats {
	st := KeyCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), NegativeHits: c.negativeHits.Load(), StoreLoads: c.loads.Load()}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Entries += s.lru.Len()
		st.NegativeEntries += s.negLRU.Len()
		s.mu.Unlock()
	}
	return st
}
