package authz

import (
	"encoding/hex"
	"time"
)

// LiveKeyHolder knows, without a query, whether a token hash belongs to a
// key that authentication would accept; *KeyCache is one. The failed
// authentication limit lets such keys through from an address over its
// budget.
type LiveKeyHolder interface {
	HoldsLiveKey(hash string, now time.Time) bool
}

var _ LiveKeyHolder = (*KeyCache)(nil)

// HoldsLiveKey reports whether the cache holds the key of hash (hex
// SHA-256) within its TTL, enabled and not expired at now (and, for a
// previous token, within its grace period). It costs no query and changes
// nothing: not the order of eviction, not the counters.
func (c *KeyCache) HoldsLiveKey(hash string, now time.Time) bool {
	var h [32]byte
	if len(hash) != 2*len(h) {
		return false
	}
	if _, err := hex.Decode(h[:], []byte(hash)); err != nil {
		return false
	}
	s, k := c.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.lookup(h, k)
	return e != nil && c.opts.Now().UnixNano() < e.expires && e.enabled &&
		(e.expiresAt == nil || now.Before(*e.expiresAt)) &&
		(!e.previous || now.UnixNano() < e.graceUntil)
}
