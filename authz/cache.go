package authz

import (
	"context"
	"encoding/hex"
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
	Principals         int           // keys held ready as principals, the rest compact; 4096
	// Staleness is the longest a cached key is trusted while the change
	// feed is down (FeedLost): past it, the key is looked up again; 1s.
	Staleness time.Duration
	Now       func() time.Time
}

// KeyCache stands between authentication and the store: token hash → key
// snapshot, bounded and least-recently-used, with a TTL. Unknown hashes are
// remembered briefly, so a flood of random tokens costs no queries, and
// concurrent misses for one hash share one query. Changes made through the
// KeyService reach it at once (KeysChanged); changes made on other instances
// reach it through Invalidate, heard by a change feed. While that feed is
// down (FeedLost until FeedListening), a cached key is trusted for at most
// Staleness since it was loaded or since the feed last heard the database,
// whichever is later; then it is looked up again, and when the lookup
// fails, the caller fails closed.
//
// A cached key is kept compact: its id, name and scope in one string, its
// tenant and user interned. Only the keys made ready most recently (loaded,
// or used while compact), Principals of them, also hold a ready Principal
// (with a string header for each scope entry, which would double the size
// of every entry); a compact key becomes a principal again, without a
// query, when it is next used. Every request served from one entry
// meanwhile shares its principal, which must not be changed. A principal
// made again from the same entry is the same snapshot: decisions cached
// about it still apply.
type KeyCache struct {
	store  KeyLookup
	opts   KeyCacheOptions
	seed   maphash.Seed
	shards [cacheShards]cacheShard

	// epoch moves on every invalidation; a load that started in an older
	// epoch may have read what was just invalidated, so it is not kept.
	epoch atomic.Uint64

	// feedDown is set while changes made elsewhere may go unheard;
	// feedHeard is when the feed last heard the database (Unix ns).
	feedDown  atomic.Bool
	feedHeard atomic.Int64

	hits, misses, negativeHits, loads, refreshes, stale, evictions atomic.Int64
}

const cacheShards = 16

// The maps of a shard are keyed by 64-bit hashes (with the cache's seed) of
// the token hash and of the key id: a quarter of the size of the full hash
// as a key. An entry found is checked against its full hash and id; two
// keys colliding on 64 bits evict each other.
type cacheShard struct {
	mu       sync.Mutex
	entries  churnMap[uint64, *cacheEntry] // token hash's 64-bit key → entry
	byID     churnMap[uint64, *cacheEntry] // key id hash → entry, for changes named by id
	lru      cacheEntry                    // sentinel: lru.next is the most recent
	size     int
	ready    []*cacheEntry // entries holding a principal, oldest overwritten first
	readyAt  int
	negative churnMap[[32]byte, int64] // unknown hash → expiry (Unix nanoseconds)
	negRing  [][32]byte                // insertion order, to bound negative
	negNext  int
	inflight churnMap[[32]byte, *cacheLoad]
}

// cacheLoad is one query in flight that concurrent misses wait for.
type cacheLoad struct {
	done      chan struct{}
	epoch     uint64      // the cache's epoch when it started
	old       *cacheEntry // for a lookup ahead of expiry, the entry it replaces
	entry     *cacheEntry
	principal *Principal
	err       error
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
	if opts.Principals <= 0 {
		opts.Principals = 4096
	}
	if opts.Staleness <= 0 {
		opts.Staleness = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &KeyCache{store: store, opts: opts, seed: maphash.MakeSeed()}
	negPerShard := opts.NegativeMaxEntries/cacheShards + 1
	for i := range c.shards {
		s := &c.shards[i]
		perShard := opts.MaxEntries/cacheShards + 1
		s.entries = newChurnMap[uint64, *cacheEntry](perShard)
		s.byID = newChurnMap[uint64, *cacheEntry](perShard)
		s.ready = make([]*cacheEntry, opts.Principals/cacheShards+1)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.negative = newChurnMap[[32]byte, int64](negPerShard)
		s.negRing = make([][32]byte, negPerShard)
		s.inflight = newChurnMap[[32]byte, *cacheLoad](64)
	}
	return c
}

var (
	_ KeyLookup         = (*KeyCache)(nil)
	_ KeyChangeNotifier = (*KeyCache)(nil)
)

// hashKey is the 64-bit key of a token hash, and picks its shard.
func (c *KeyCache) hashKey(h [32]byte) uint64 { return maphash.Comparable(c.seed, h) }

func (c *KeyCache) idKey(id string) uint64 { return maphash.String(c.seed, id) }

func (c *KeyCache) shard(h [32]byte) (*cacheShard, uint64) {
	k := c.hashKey(h)
	return &c.shards[k%cacheShards], k
}

// lookup returns the entry of h, whose 64-bit key is k, in s, whose lock
// the caller holds.
func (s *cacheShard) lookup(h [32]byte, k uint64) *cacheEntry {
	if e, _ := s.entries.get(k); e != nil && e.hash == h {
		return e
	}
	return nil
}

// KeyByHash returns the key with the hash (hex SHA-256), from the cache
// when it holds a live snapshot. Returns ENOTFOUND for an unknown hash and
// the store's error (which authentication turns into EUNAVAILABLE) when the
// lookup fails; cached keys keep working while the store is down, until
// their TTL. The key returned carries what authentication needs: id, name,
// tenant, user, scope, enabled, expiry and hash.
//
// A key used in the last quarter of its TTL is looked up again in the
// background, once, while the cached snapshot keeps serving until its
// TTL: a key in use never expires under its callers, who would otherwise
// queue behind its lookup (on SQLite, behind every other one too).
func (c *KeyCache) KeyByHash(ctx context.Context, hash string) (*APIKey, error) {
	var h [32]byte
	if len(hash) != 2*len(h) {
		return nil, Errorf(ENOTFOUND, "no key has this hash")
	}
	if _, err := hex.Decode(h[:], []byte(hash)); err != nil {
		return nil, Errorf(ENOTFOUND, "no key has this hash")
	}
	now := c.opts.Now().UnixNano()
	s, k := c.shard(h)
	s.mu.Lock()
	if e := s.lookup(h, k); e != nil {
		if now < e.expires && c.trusted(e, now) {
			s.moveToFront(e)
			p := e.principal
			if p == nil {
				p = e.newPrincipal()
				s.makeReady(e, p)
			}
			refresh := c.refreshDue(s, e, now)
			s.mu.Unlock()
			c.hits.Add(1)
			if refresh != nil {
				c.refreshes.Add(1)
				go c.load(ctx, s, h, hash, refresh, now) // load drops ctx's cancellation
			}
			return e.key(p, hash), nil
		}
		s.remove(c, e)
	}
	if exp, ok := s.negative.get(h); ok {
		if now < exp {
			s.mu.Unlock()
			c.negativeHits.Add(1)
			return nil, Errorf(ENOTFOUND, "no key has this hash")
		}
		s.negative.delete(h)
	}
	c.misses.Add(1)
	if load, ok := s.inflight.get(h); ok {
		s.mu.Unlock()
		select {
		case <-load.done:
			if load.err != nil {
				return nil, load.err
			}
			return load.entry.key(load.principal, hash), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	load := c.startLoad(s, h, nil)
	s.mu.Unlock()
	c.load(ctx, s, h, hash, load, now)
	if load.err != nil {
		return nil, load.err
	}
	return load.entry.key(load.principal, hash), nil
}

// refreshDue starts the lookup ahead of e's expiry when e is in the last
// quarter of its TTL and none was started; the caller holds s's lock and,
// given a load, runs it.
func (c *KeyCache) refreshDue(s *cacheShard, e *cacheEntry, now int64) *cacheLoad {
	if e.refreshing || e.expires-now > int64(c.opts.TTL)/4 {
		return nil
	}
	if _, ok := s.inflight.get(e.hash); ok {
		return nil
	}
	e.refreshing = true
	return c.startLoad(s, e.hash, e)
}

// startLoad registers a lookup of h that misses of h wait for; the caller
// holds s's lock. old is the entry a lookup ahead of expiry would replace.
func (c *KeyCache) startLoad(s *cacheShard, h [32]byte, old *cacheEntry) *cacheLoad {
	load := &cacheLoad{done: make(chan struct{}), old: old, epoch: c.epoch.Load()}
	s.inflight.put(h, load)
	return load
}

// load looks h up and caches the answer, unless an invalidation came
// meanwhile: it may have been read before the change.
func (c *KeyCache) load(ctx context.Context, s *cacheShard, h [32]byte, hash string, load *cacheLoad, now int64) {
	// The query runs without the caller's cancellation so one impatient
	// caller cannot fail the others waiting on it.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	key, err := c.store.KeyByHash(qctx, hash)
	cancel()
	c.loads.Add(1)
	if err == nil {
		// The store finds a key by its token or its previous token.
		previous := !EqualHashes(key.Hash, hash)
		if previous && (key.PreviousHash == "" || !EqualHashes(key.PreviousHash, hash)) {
			err = Errorf(ENOTFOUND, "no key has this hash")
		} else {
			load.entry = newCacheEntry(h, key, previous, now, now+int64(c.opts.TTL))
			load.principal = load.entry.newPrincipal()
		}
	}
	load.err = err

	s.mu.Lock()
	if cur, _ := s.inflight.get(h); cur == load {
		s.inflight.delete(h)
	}
	if c.epoch.Load() == load.epoch {
		switch {
		case err == nil:
			c.add(s, load.entry)
			s.makeReady(load.entry, load.principal)
		case ErrorCode(err) == ENOTFOUND:
			// Gone since it was cached: its snapshot is served no more.
			if old := load.old; old != nil && s.lookup(h, c.hashKey(h)) == old {
				s.remove(c, old)
			}
			s.addNegative(h, now+int64(c.opts.NegativeTTL))
		}
	}
	s.mu.Unlock()
	close(load.done)
}

// makeReady lets e hold p, in place of the principal held longest in s,
// whose lock the caller holds.
func (s *cacheShard) makeReady(e *cacheEntry, p *Principal) {
	if old := s.ready[s.readyAt]; old != nil {
		old.principal, old.readySlot = nil, -1
	}
	e.principal, e.readySlot = p, int32(s.readyAt)
	s.ready[s.readyAt] = e
	s.readyAt = (s.readyAt + 1) % len(s.ready)
}

// add caches e in s, whose lock the caller holds, evicting the least
// recently used keys beyond the shard's share of MaxEntries.
func (c *KeyCache) add(s *cacheShard, e *cacheEntry) {
	k, idk := c.hashKey(e.hash), c.entryIDKey(e)
	if old, _ := s.entries.get(k); old != nil {
		s.remove(c, old)
	}
	if old, _ := s.byID.get(idk); old != nil {
		s.remove(c, old)
	}
	s.negative.delete(e.hash)
	s.entries.put(k, e)
	s.byID.put(idk, e)
	e.prev, e.next = &s.lru, s.lru.next
	e.next.prev, s.lru.next = e, e
	s.size++
	for capacity := c.opts.MaxEntries/cacheShards + 1; s.size > capacity; {
		s.remove(c, s.lru.prev)
		c.evictions.Add(1)
	}
}

// remove drops a cached key from s, whose lock the caller holds.
func (s *cacheShard) remove(c *KeyCache, e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	if e.readySlot >= 0 { // its principal goes with it, not at its turn
		s.ready[e.readySlot] = nil
		e.principal, e.readySlot = nil, -1
	}
	if k := c.hashKey(e.hash); s.entries.m[k] == e {
		s.entries.delete(k)
	}
	if k := c.entryIDKey(e); s.byID.m[k] == e {
		s.byID.delete(k)
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
	if _, ok := s.negative.get(h); !ok {
		old := s.negRing[s.negNext]
		if exp, ok := s.negative.get(old); ok && exp != 0 {
			s.negative.delete(old)
		}
		s.negRing[s.negNext] = h
		s.negNext = (s.negNext + 1) % len(s.negRing)
	}
	s.negative.put(h, expires)
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
			s, k := c.shard(h)
			s.mu.Lock()
			if e := s.lookup(h, k); e != nil {
				s.remove(c, e)
			}
			s.inflight.reset()
			s.mu.Unlock()
			return
		}
	}
	switch {
	case change.KeyID != "":
		idk := c.idKey(change.KeyID)
		c.each(func(s *cacheShard) {
			for _, k := range [2]uint64{idk, ^idk} {
				if e, _ := s.byID.get(k); e != nil && e.keyID() == change.KeyID {
					s.remove(c, e)
				}
			}
		})
	case change.TenantID != "":
		c.each(func(s *cacheShard) {
			for e := s.lru.next; e != &s.lru; {
				next := e.next
				if change.matches(e) {
					s.remove(c, e)
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
		s.inflight.reset()
		s.mu.Unlock()
	}
}

// matches reports whether e is among the keys of the change's user, or of
// its tenant when it names no user.
func (ch KeyChange) matches(e *cacheEntry) bool {
	if ch.UserID != "" {
		return e.tenant == ch.TenantID && e.user == ch.UserID
	}
	return e.tenant == ch.TenantID
}

// Purge empties the cache, for when changes may have been missed (the
// change feed dropped).
func (c *KeyCache) Purge() {
	c.epoch.Add(1)
	c.each(func(s *cacheShard) {
		s.entries.reset()
		s.byID.reset()
		// Entries may live on as keys of cached decisions; unlinked, none
		// of them keeps the rest of the old list alive.
		for e := s.lru.next; e != &s.lru; {
			next := e.next
			e.prev, e.next, e.principal, e.readySlot = nil, nil, nil, -1
			e = next
		}
		clear(s.ready)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.size = 0
		s.negative.reset()
	})
}

// KeyCacheStats are counters since the cache was made. Stale counts keys
// looked up again because the change feed was down past Staleness;
// Refreshes, keys in use looked up again ahead of their TTL, in the
// background (StoreLoads counts those lookups too); Evictions, keys dropped
// to stay within MaxEntries.
type KeyCacheStats struct {
	Entries, NegativeEntries                      int
	Hits, Misses, NegativeHits, StoreLoads, Stale int64
	Refreshes, Evictions                          int64
}

// Stats returns the cache's counters and sizes.
func (c *KeyCache) Stats() KeyCacheStats {
	st := KeyCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), NegativeHits: c.negativeHits.Load(),
		StoreLoads: c.loads.Load(), Stale: c.stale.Load(), Refreshes: c.refreshes.Load(), Evictions: c.evictions.Load()}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Entries += s.size
		st.NegativeEntries += s.negative.len()
		s.mu.Unlock()
	}
	return st
}

// trusted reports whether e may be served without a lookup: always while
// the change feed is up (a change would have removed it), and otherwise
// for Staleness after it was loaded or the feed last heard the database.
func (c *KeyCache) trusted(e *cacheEntry, now int64) bool {
	if !c.feedDown.Load() {
		return true
	}
	if now-max(e.loaded, c.feedHeard.Load()) <= int64(c.opts.Staleness) {
		return true
	}
	c.stale.Add(1)
	return false
}

// FeedLost tells the cache that its change feed stopped listening, having
// last heard the database at heard: changes made on other instances may go
// unheard, so cached keys are trusted for Staleness only. A cache made for
// an instance that has a feed starts this way, until FeedListening.
func (c *KeyCache) FeedLost(heard time.Time) {
	var n int64 // never heard: only the time a key was loaded counts
	if !heard.IsZero() {
		n = heard.UnixNano()
	}
	c.feedHeard.Store(n)
	c.feedDown.Store(true)
}

// FeedListening tells the cache its change feed listens (again): what was
// cached may have changed unheard, so the cache is emptied, and from then
// on keys are trusted up to their TTL.
func (c *KeyCache) FeedListening() {
	c.Purge()
	c.feedDown.Store(false)
}

// FeedDown reports whether the cache trusts keys for Staleness only.
func (c *KeyCache) FeedDown() bool { return c.feedDown.Load() }
