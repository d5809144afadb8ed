package authz

import (
	"container/list"
	"context"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Credentials a FailureLimiter tells apart in its metric and log lines.
const (
	CredentialAPIKey = "api_key" // an API key (pk_…)
	CredentialJWT    = "jwt"     // a management JWT
)

// FailureLimiterOptions tunes a FailureLimiter; zero values take the
// defaults.
type FailureLimiterOptions struct {
	// Burst is how many failed authentications an address may have in a
	// row before it is refused; 20.
	Burst int
	// Rate is how many failures a second an address earns back; 1.
	Rate float64
	// MaxAddresses bounds the addresses tracked at once; the one whose last
	// failure is oldest is forgotten first. 100000.
	MaxAddresses int
	// LogInterval is the least time between two log lines about one
	// address; 1 minute.
	LogInterval time.Duration
	Logger      *slog.Logger
	// OnLimited hears of every request refused for being over budget, to
	// count it in a metric.
	OnLimited func(ctx context.Context, credential string)
	Now       func() time.Time
}

// FailureLimiter budgets failed authentications per client address: a
// token bucket of Burst failures refilled at Rate a second. An address
// over its budget is refused before its credential costs a lookup, except
// that a key keygate already holds as live is still served (KeyService),
// so an attacker behind a shared address does not lock out a tenant's
// working service. Only failures are charged: an address that never fails
// costs one map lookup and no memory. IPv6 addresses are budgeted by /64,
// as one host commonly holds a whole /64.
//
// Memory is bounded: at most MaxAddresses buckets (about 130 bytes each)
// in 64 shards, each forgetting its least recently failed address first. A
// forgotten address starts again with a full budget, so a flood from more
// addresses than that can each reach Burst failures, no more.
type FailureLimiter struct {
	opts     FailureLimiterOptions
	seed     maphash.Seed
	perShard int
	shards   [limiterShards]limiterShard
	refused  atomic.Int64
}

const limiterShards = 64

type limiterShard struct {
	mu  sync.Mutex
	m   churnMap[string, *failureBucket]
	lru list.List // of *failureBucket; the front failed most recently
}

// failureBucket is one address's budget: tokens as of at.
type failureBucket struct {
	addr   string
	tokens float64
	at     int64 // Unix nanoseconds
	logged int64 // Unix nanoseconds of the last log line; 0: never
	elem   *list.Element
}

// NewFailureLimiter returns a limiter with a full budget for every address.
func NewFailureLimiter(opts FailureLimiterOptions) *FailureLimiter {
	if opts.Burst <= 0 {
		opts.Burst = 20
	}
	if opts.Rate <= 0 {
		opts.Rate = 1
	}
	if opts.MaxAddresses <= 0 {
		opts.MaxAddresses = 100_000
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &FailureLimiter{opts: opts, seed: maphash.MakeSeed(), perShard: opts.MaxAddresses/limiterShards + 1}
	for i := range l.shards {
		l.shards[i].m = newChurnMap[string, *failureBucket](l.perShard)
	}
	return l
}

// AddressKey is what an address is budgeted by: an IPv4 address itself,
// the /64 of an IPv6 address, and anything that does not parse as is
// (bounded in length).
func AddressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
		return Truncate(addr, 64)
	case ip.Is4():
		return addr
	case ip.Is4In6():
		return ip.Unmap().String()
	}
	p, err := ip.WithZone("").Prefix(64)
	if err != nil {
		return Truncate(addr, 64)
	}
	return p.String()
}

// lock locks the shard of addr and returns it with addr's key and the time.
func (l *FailureLimiter) lock(addr string) (s *limiterShard, key string, now int64) {
	key = AddressKey(addr)
	s = &l.shards[maphash.String(l.seed, key)%limiterShards]
	now = l.opts.Now().UnixNano()
	s.mu.Lock()
	return s, key, now
}

// refill brings b's tokens up to now.
func (l *FailureLimiter) refill(b *failureBucket, now int64) {
	if now > b.at {
		b.tokens = min(float64(l.opts.Burst), b.tokens+float64(now-b.at)/float64(time.Second)*l.opts.Rate)
		b.at = now
	}
}

// Over returns how long addr must wait before another failure is allowed;
// zero when it is within its budget. A nil limiter limits nothing.
func (l *FailureLimiter) Over(addr string) time.Duration {
	if l == nil {
		return 0
	}
	s, key, now := l.lock(addr)
	defer s.mu.Unlock()
	b, _ := s.m.get(key)
	if b == nil {
		return 0
	}
	l.refill(b, now)
	switch {
	case b.tokens >= float64(l.opts.Burst):
		s.remove(b) // a full budget is the same as none tracked
		return 0
	case b.tokens >= 1:
		return 0
	}
	return time.Duration((1 - b.tokens) / l.opts.Rate * float64(time.Second))
}

// Fail charges one failed authentication to addr.
func (l *FailureLimiter) Fail(addr string) {
	if l == nil {
		return
	}
	s, key, now := l.lock(addr)
	defer s.mu.Unlock()
	b, _ := s.m.get(key)
	if b == nil {
		b = &failureBucket{addr: key, tokens: float64(l.opts.Burst), at: now}
		s.m.put(key, b)
		b.elem = s.lru.PushFront(b)
		for s.lru.Len() > l.perShard {
			s.remove(s.lru.Back().Value.(*failureBucket))
		}
	} else {
		l.refill(b, now)
		s.lru.MoveToFront(b.elem)
	}
	b.tokens = max(0, b.tokens-1)
}

// Refuse answers a request from addr, which is over its budget for wait
// more: an ERATELIMIT error saying when to try again. It counts the
// refusal and logs it, at most once per address per LogInterval.
func (l *FailureLimiter) Refuse(ctx context.Context, addr, credential string, wait time.Duration) error {
	total := l.refused.Add(1)
	if l.opts.OnLimited != nil {
		l.opts.OnLimited(ctx, credential)
	}
	s, key, now := l.lock(addr)
	logIt := false
	if b, _ := s.m.get(key); b != nil && (b.logged == 0 || now-b.logged >= int64(l.opts.LogInterval)) {
		b.logged, logIt = now, true
	}
	s.mu.Unlock()
	if logIt {
		l.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "too many failed authentications; refusing the address for a while",
			slog.String("address", key), slog.String("credential", credential),
			slog.Duration("retry_after", wait), slog.Int64("refused_total", total))
	}
	return &RetryLater{After: wait, Err: &Error{Code: ERATELIMIT,
		Message: "too many failed authentications from this address; try again later"}}
}

// Refused returns how many requests were refused for being over budget.
func (l *FailureLimiter) Refused() int64 { return l.refused.Load() }

// Addresses returns how many addresses are tracked now.
func (l *FailureLimiter) Addresses() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// remove forgets b; the caller holds s.mu.
func (s *limiterShard) remove(b *failureBucket) {
	s.lru.Remove(b.elem)
	s.m.delete(b.addr)
}
