package authz

import (
	"context"
	"encoding/hex"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unique"
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
// A cached key is kept as its principal and the two facts authentication
// checks (enabled, expiry), in one allocation with its strings compacted
// and the strings keys share (tenants, users, scope entries) interned: an
// instance holds a hundred thousand keys in well under a hundred megabytes.
// Every key served from one entry shares its principal, which must not be
// changed.
type KeyCache struct {
	store  KeyLookup
	opts   KeyCacheOptions
	seed   maphash.Seed
	shards [cacheShards]cacheShard

	// epoch moves on every invalidation; a load that started in an older
	// epoch may have read what was just invalidated, so it is not kept.
	epoch atomic.Uint64

	hits, misses, negativeHits, loads atomic.Int64
}

const cacheShards = 16

type cacheShard struct {
	mu       sync.Mutex
	entries  map[[32]byte]*cacheEntry
	byID     map[string]*cacheEntry // key id → entry, for changes named by id
	lru      cacheEntry             // sentinel: lru.next is the most recent
	size     int
	negative map[[32]byte]int64 // unknown hash → expiry (Unix nanoseconds)
	negRing  [][32]byte         // insertion order, to bound negative
	negNext  int
	inflight map[[32]byte]*cacheLoad
}

// cacheEntry is one cached key: what authentication needs, nothing more.
type cacheEntry struct {
	hash       [32]byte
	prev, next *cacheEntry
	expires    int64 // Unix nanoseconds; the entry is not served after
	enabled    bool
	principal  Principal
}

// cacheLoad is one query in flight that concurrent misses wait for.
type cacheLoad struct {
	done  chan struct{}
	entry *cacheEntry
	err   error
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
	negPerShard := opts.NegativeMaxEntries/cacheShards + 1
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = map[[32]byte]*cacheEntry{}
		s.byID = map[string]*cacheEntry{}
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.negative = map[[32]byte]int64{}
		s.negRing = make([][32]byte, negPerShard)
		s.inflight = map[[32]byte]*cacheLoad{}
	}
	return c
}

var (
	_ KeyLookup         = (*KeyCache)(nil)
	_ KeyChangeNotifier = (*KeyCache)(nil)
)

func (c *KeyCache) shard(h [32]byte) *cacheShard {
	return &c.shards[maphash.Comparable(c.seed, h)%cacheShards]
}

// KeyByHash returns the key with the hash (hex SHA-256), from the cache
// when it holds a live snapshot. Returns ENOTFOUND for an unknown hash and
// the store's error (which authentication turns into EUNAVAILABLE) when the
// lookup fails; cached keys keep working while the store is down, until
// their TTL. The key returned carries what authentication needs: id, name,
// tenant, user, scope, enabled, expiry and hash.
func (c *KeyCache) KeyByHash(ctx context.Context, hash string) (*APIKey, error) {
	var h [32]byte
	if len(hash) != 2*len(h) {
		return nil, Errorf(ENOTFOUND, "no key has this hash")
	}
	if _, err := hex.Decode(h[:], []byte(hash)); err != nil {
		return nil, Errorf(ENOTFOUND, "no key has this hash")
	}
	now := c.opts.Now().UnixNano()
	s := c.shard(h)
	s.mu.Lock()
	if e, ok := s.entries[h]; ok {
		if now < e.expires {
			s.moveToFront(e)
			s.mu.Unlock()
			c.hits.Add(1)
			return e.key(hash), nil
		}
		s.remove(e)
	}
	if exp, ok := s.negative[h]; ok {
		if now < exp {
			s.mu.Unlock()
			c.negativeHits.Add(1)
			return nil, Errorf(ENOTFOUND, "no key has this hash")
		}
		delete(s.negative, h)
	}
	c.misses.Add(1)
	if load, ok := s.inflight[h]; ok {
		s.mu.Unlock()
		select {
		case <-load.done:
			if load.err != nil {
				return nil, load.err
			}
			return load.entry.key(hash), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	load := &cacheLoad{done: make(chan struct{})}
	s.inflight[h] = load
	epoch := c.epoch.Load()
	s.mu.Unlock()

	// The query runs without the caller's cancellation so one impatient
	// caller cannot fail the others waiting on it.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	key, err := c.store.KeyByHash(qctx, hash)
	cancel()
	c.loads.Add(1)
	if err == nil {
		load.entry = newCacheEntry(h, key, now+int64(c.opts.TTL))
	}
	load.err = err

	s.mu.Lock()
	if s.inflight[h] == load {
		delete(s.inflight, h)
	}
	if c.epoch.Load() == epoch {
		switch {
		case err == nil:
			c.add(s, load.entry)
		case ErrorCode(err) == ENOTFOUND:
			s.addNegative(h, now+int64(c.opts.NegativeTTL))
		}
	}
	s.mu.Unlock()
	close(load.done)
	if err != nil {
		return nil, err
	}
	return load.entry.key(hash), nil
}

// newCacheEntry keeps what authentication needs of key: its principal,
// with the key's own strings in one allocation and the shared ones
// interned, and whether it is enabled.
func newCacheEntry(h [32]byte, key *APIKey, expires int64) *cacheEntry {
	e := &cacheEntry{hash: h, expires: expires, enabled: key.Enabled}
	own := key.ID + key.Name
	p := &e.principal
	p.KeyID, p.KeyName = own[:len(key.ID)], own[len(key.ID):]
	p.TenantID = unique.Make(key.TenantID).Value()
	p.UserID = unique.Make(key.UserID).Value()
	p.ExpiresAt = copyTime(key.ExpiresAt)
	lists := ResourceTypes()
	n := 0
	for _, rt := range lists {
		n += len(key.Scope.IDs(rt))
	}
	all := make([]string, 0, n)
	var parts [4][]string
	for i, rt := range lists {
		start := len(all)
		for _, id := range key.Scope.IDs(rt) {
			all = append(all, unique.Make(id).Value())
		}
		parts[i] = all[start:len(all):len(all)]
	}
	p.Scope = Scope{AgentIDs: parts[0], FlowIDs: parts[1], MCPToolIDs: parts[2], VectorStoreIDs: parts[3]}
	return e
}

// key presents the entry as the APIKey authentication reads; its principal
// is the entry's, shared by every request the entry serves.
func (e *cacheEntry) key(hash string) *APIKey {
	p := &e.principal
	return &APIKey{
		ID: p.KeyID, Name: p.KeyName, TenantID: p.TenantID, UserID: p.UserID,
		Scope: p.Scope, Enabled: e.enabled, ExpiresAt: p.ExpiresAt, Hash: hash,
		principal: p,
	}
}

// add caches e in s, whose lock the caller holds, evicting the least
// recently used keys beyond the shard's share of MaxEntries.
func (c *KeyCache) add(s *cacheShard, e *cacheEntry) {
	if old, ok := s.entries[e.hash]; ok {
		s.remove(old)
	}
	delete(s.negative, e.hash)
	s.entries[e.hash] = e
	s.byID[e.principal.KeyID] = e
	e.prev, e.next = &s.lru, s.lru.next
	e.next.prev, s.lru.next = e, e
	s.size++
	for capacity := c.opts.MaxEntries/cacheShards + 1; s.size > capacity; {
		s.remove(s.lru.prev)
	}
}

// remove drops a cached key from s, whose lock the caller holds.
func (s *cacheShard) remove(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	delete(s.entries, e.hash)
	if s.byID[e.principal.KeyID] == e {
		delete(s.byID, e.principal.KeyID)
	}
	s.size--
}

func (s *cacheShard) moveToFront(e *cacheEntry) {
	if s.lru.next == e {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = &s.lru, s.lru.next
	e.next.prev, s.lru.next = e, e
}

// addNegative remembers an unknown hash, forgetting the oldest beyond the
// shard's share of NegativeMaxEntries.
func (s *cacheShard) addNegative(h [32]byte, expires int64) {
	if _, ok := s.negative[h]; !ok {
		old := s.negRing[s.negNext]
		if exp, ok := s.negative[old]; ok && exp != 0 {
			delete(s.negative, old)
		}
		s.negRing[s.negNext] = h
		s.negNext = (s.negNext + 1) % len(s.negRing)
	}
	s.negative[h] = expires
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
	var h [32]byte
	if len(change.Hash) == 2*len(h) {
		if _, err := hex.Decode(h[:], []byte(change.Hash)); err == nil {
			s := c.shard(h)
			s.mu.Lock()
			if e, ok := s.entries[h]; ok {
				s.remove(e)
			}
			clear(s.inflight)
			s.mu.Unlock()
			return
		}
	}
	switch {
	case change.KeyID != "":
		c.each(func(s *cacheShard) {
			if e, ok := s.byID[change.KeyID]; ok {
				s.remove(e)
			}
		})
	case change.TenantID != "":
		c.each(func(s *cacheShard) {
			for e := s.lru.next; e != &s.lru; {
				next := e.next
				if change.matches(&e.principal) {
					s.remove(e)
				}
				e = next
			}
		})
	default:
		c.Purge()
	}
}

// each runs fn on every shard under its lock and forgets loads in flight,
// which may have read what changed.
func (c *KeyCache) each(fn func(s *cacheShard)) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		fn(s)
		clear(s.inflight)
		s.mu.Unlock()
	}
}

// matches reports whether p is among the keys of the change's user, or of
// its tenant when it names no user.
func (ch KeyChange) matches(p *Principal) bool {
	if ch.UserID != "" {
		return p.TenantID == ch.TenantID && p.UserID == ch.UserID
	}
	return p.TenantID == ch.TenantID
}

// Purge empties the cache, for when changes may have been missed (the
// change feed dropped).
func (c *KeyCache) Purge() {
	c.epoch.Add(1)
	c.each(func(s *cacheShard) {
		clear(s.entries)
		clear(s.byID)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.size = 0
		clear(s.negative)
	})
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
		st.Entries += s.size
		st.NegativeEntries += len(s.negative)
		s.mu.Unlock()
	}
	return st
}
