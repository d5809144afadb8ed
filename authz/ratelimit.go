package authz

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// RateLimitState is where a key stands against its rate limit after a
// request.
type RateLimitState struct {
	Allowed   bool
	Limit     int64
	Remaining int64 // requests the key may make at once now
	// ResetAt is when the key has its whole limit again.
	ResetAt time.Time
	// RetryAfter is, for a refused request, how long until one is allowed.
	RetryAfter time.Duration
}

// RateLimiter counts the decision requests of keys that have a rate limit.
// *MemoryRateLimiter counts on one instance; an adapter beside the domain
// shares the counts of every instance.
type RateLimiter interface {
	// Take counts one request of key keyID against limit at now and says
	// whether it is allowed. It does not fail: a limiter that cannot count
	// as it should falls back as it documents, never waiting long.
	Take(ctx context.Context, keyID string, limit RateLimit, now time.Time) RateLimitState
}

// GCRA is the generic cell rate algorithm both limiters run, so a key is
// limited alike on one instance and across many: the state of a key is one
// time, tat, when the key will have its whole limit again. A request is
// allowed when, counted, tat stays within one window of now; it moves tat
// on by window/limit. A key quiet for a window may send limit requests at
// once. tat, now and the answer's times are Unix nanoseconds.
func GCRA(tat, now int64, limit RateLimit) (int64, RateLimitState) {
	n := max(limit.Limit, 1)
	interval := max(int64(limit.Window())/n, 1)
	burst := interval * n
	tat = max(tat, now)
	next := tat + interval
	allowAt := next - burst
	st := RateLimitState{Limit: limit.Limit}
	if now < allowAt {
		st.RetryAfter = time.Duration(allowAt - now)
		st.ResetAt = time.Unix(0, tat).UTC()
		return tat, st
	}
	st.Allowed = true
	st.Remaining = min((now-allowAt)/interval, n-1)
	st.ResetAt = time.Unix(0, next).UTC()
	return next, st
}

// MemoryRateLimiter counts in this instance's memory: behind N instances a
// key may make up to N times its limit. Memory is bounded: at most
// maxKeys keys (about 100 bytes each) are tracked; past that, a key whose
// limit is whole again is forgotten first (nothing is lost), else any.
type MemoryRateLimiter struct {
	seed     maphash.Seed
	perShard int
	shards   [rateShards]rateShard
}

const rateShards = 32

type rateShard struct {
	mu  sync.Mutex
	tat churnMap[string, int64]
}

// NewMemoryRateLimiter tracks at most maxKeys keys (100000 when <= 0).
func NewMemoryRateLimiter(maxKeys int) *MemoryRateLimiter {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	l := &MemoryRateLimiter{seed: maphash.MakeSeed(), perShard: maxKeys/rateShards + 1}
	for i := range l.shards {
		l.shards[i].tat = newChurnMap[string, int64](l.perShard)
	}
	return l
}

var _ RateLimiter = (*MemoryRateLimiter)(nil)

// Take implements RateLimiter.
func (l *MemoryRateLimiter) Take(_ context.Context, keyID string, limit RateLimit, now time.Time) RateLimitState {
	s := &l.shards[maphash.String(l.seed, keyID)%rateShards]
	ns := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, known := s.tat.get(keyID)
	next, st := GCRA(tat, ns, limit)
	if next == tat {
		return st
	}
	if !known && s.tat.len() >= l.perShard {
		s.evict(ns)
	}
	s.tat.put(keyID, next)
	return st
}

// evict forgets a key whose limit is whole again, looking at a few, or
// else any key.
func (s *rateShard) evict(now int64) {
	looked := 0
	for k, tat := range s.tat.m {
		if tat <= now {
			s.tat.delete(k)
			return
		}
		if looked++; looked == 8 {
			break
		}
	}
	s.tat.evictOne()
}

// Keys returns how many keys the limiter tracks.
func (l *MemoryRateLimiter) Keys() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.tat.len()
		s.mu.Unlock()
	}
	return n
}
