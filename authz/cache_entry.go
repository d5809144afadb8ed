package authz

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"time"
	"unique"
)

// How the key cache keeps one key: compact, with its principal made again
// from it when needed.

// cacheEntry is one cached key: what authentication needs, nothing more.
// A key rotated with a grace period has two entries, one for each token;
// the previous token's entry says until when that token works.
type cacheEntry struct {
	hash         [32]byte
	prev, next   *cacheEntry
	expires      int64 // Unix nanoseconds; the entry is not served after
	loaded       int64 // Unix nanoseconds; when the store said so
	expiresAt    *time.Time
	enabled      bool
	previous     bool       // the entry is of the key's previous token
	credits      bool       // the key has usage credits
	refreshing   bool       // a lookup ahead of its expiry was started
	readySlot    int32      // index in the shard's ready ring, -1 when not there
	graceUntil   int64      // Unix nanoseconds; with previous, when that token stops
	rate         *RateLimit // shared by the entry's principals; nil: none
	meta         []byte     // shared by the entry's principals; nil: none
	text         string     // key id, name, external id and scope; see newCacheEntry
	tenant, user string     // interned
	principal    *Principal // while the entry is among its shard's ready ones
}

// newCacheEntry keeps what authentication needs of key, compactly: whether
// it is enabled, its expiry and limits, its tenant and user interned, and
// the rest in one string: the key id, name and external id, then each
// scope list (ResourceTypes order) as its length and entries, every string
// prefixed with its length as a uvarint. A principal's strings are then
// substrings of it. previous says h is the key's previous token's.
func newCacheEntry(h [32]byte, key *APIKey, previous bool, loaded, expires int64) *cacheEntry {
	extID := deref(key.ExternalID)
	n := 3*binary.MaxVarintLen64 + len(key.ID) + len(key.Name) + len(extID)
	for _, rt := range ResourceTypes() {
		n += binary.MaxVarintLen64
		for _, id := range key.Scope.IDs(rt) {
			n += binary.MaxVarintLen64 + len(id)
		}
	}
	b := make([]byte, 0, n)
	b = appendString(b, key.ID)
	b = appendString(b, key.Name)
	b = appendString(b, extID)
	for _, rt := range ResourceTypes() {
		ids := key.Scope.IDs(rt)
		b = binary.AppendUvarint(b, uint64(len(ids)))
		for _, id := range ids {
			b = appendString(b, id)
		}
	}
	e := &cacheEntry{hash: h, loaded: loaded, expires: expires, enabled: key.Enabled, readySlot: -1, text: string(b),
		tenant: unique.Make(key.TenantID).Value(), user: unique.Make(key.UserID).Value(),
		expiresAt: copyTime(key.ExpiresAt), credits: key.Credits != nil, previous: previous}
	if key.RateLimit != nil {
		rate := *key.RateLimit
		e.rate = &rate
	}
	if len(key.Meta) > 0 {
		e.meta = slices.Clone(key.Meta)
	}
	if previous {
		// A previous token without an expiry stopped at once; the entry
		// keeps saying so until its TTL, sparing the store the lookups.
		e.graceUntil = 1
		if key.PreviousExpiresAt != nil {
			e.graceUntil = key.PreviousExpiresAt.UnixNano()
		}
	}
	return e
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// textReader reads back what newCacheEntry wrote.
type textReader struct {
	s   string
	pos int
}

func (r *textReader) uvarint() int {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := r.s[r.pos]
		r.pos++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(v)
		}
	}
}

func (r *textReader) string() string {
	n := r.uvarint()
	r.pos += n
	return r.s[r.pos-n : r.pos]
}

func (e *cacheEntry) keyID() string {
	r := textReader{s: e.text}
	return r.string()
}

// newPrincipal makes the entry's principal: the same snapshot every time,
// in a new allocation.
func (e *cacheEntry) newPrincipal() *Principal {
	r := textReader{s: e.text}
	p := &Principal{KeyID: r.string(), KeyName: r.string(), ExternalID: r.string(), TenantID: e.tenant, UserID: e.user,
		ExpiresAt: e.expiresAt, Meta: json.RawMessage(e.meta), RateLimit: e.rate, Credits: e.credits, snapshot: e}
	p.self = p
	var lists [4][]string
	for i := range lists {
		if n := r.uvarint(); n > 0 {
			lists[i] = make([]string, n)
			for j := range n {
				lists[i][j] = r.string()
			}
		}
	}
	p.Scope = Scope{AgentIDs: lists[0], FlowIDs: lists[1], MCPToolIDs: lists[2], VectorStoreIDs: lists[3]}
	return p
}

// key presents the entry as the APIKey authentication reads, with p, the
// entry's principal, shared by the requests it serves. The entry of a
// previous token holds hash as the previous hash, with its expiry.
func (e *cacheEntry) key(p *Principal, hash string) *APIKey {
	k := &APIKey{
		ID: p.KeyID, Name: p.KeyName, TenantID: p.TenantID, UserID: p.UserID,
		Scope: p.Scope, Enabled: e.enabled, ExpiresAt: p.ExpiresAt, Hash: hash,
		principal: p,
	}
	if e.previous {
		stops := time.Unix(0, e.graceUntil).UTC()
		k.Hash, k.PreviousHash, k.PreviousExpiresAt = "", hash, &stops
	}
	return k
}

// entryIDKey is the key of e in its shard's byID map: the id's, inverted
// for a previous token's entry, so a key's two entries do not evict each
// other.
func (c *KeyCache) entryIDKey(e *cacheEntry) uint64 {
	k := c.idKey(e.keyID())
	if e.previous {
		k = ^k
	}
	return k
}
