package authz

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// CreditStore spends keys' usage credits where every instance sees them.
type CreditStore interface {
	// SpendCredits loads the credits of the key with id, locked against
	// every other spender, passes them to spend (nil when the key has
	// none) with the key's version (when the management API last changed
	// it), and saves what spend changed, all at once. Returns ENOTFOUND
	// when the key is gone.
	SpendCredits(ctx context.Context, id string, spend func(c *Credits, version time.Time)) error
	// ReturnCredits gives n credits an instance reserved back to the key,
	// unless the key changed since version (its credits may have been set
	// anew); it reports whether they went back.
	ReturnCredits(ctx context.Context, id string, n int64, version time.Time) (bool, error)
}

// CreditSpenderOptions tunes a CreditSpender; zero values take the
// defaults.
type CreditSpenderOptions struct {
	// ExactBelow is the balance under which a key's credits are spent one
	// request at a time in the store, never reserved ahead; 1000.
	ExactBelow int64
	// MaxReserve bounds the credits of one key an instance reserves ahead
	// of its requests; 256.
	MaxReserve int64
	// IdleReturn is how long reserved credits go unused before they are
	// given back; 1s.
	IdleReturn time.Duration
	// Timeout bounds one spend in the store; 2s.
	Timeout time.Duration
	// MaxExhausted bounds the keys remembered as out of credits; 10000.
	MaxExhausted int
	// OnRound hears how many requests each spend in the store served.
	OnRound func(requests int)
	Logger  *slog.Logger
	Now     func() time.Time
}

// CreditSpender spends a credit per allowed check, never one twice across
// instances, and keeps writes to the store off most requests:
//
//   - Requests of one key that arrive while a spend of that key is in the
//     store wait for it and are served by the next spend together, in
//     order of arrival, each all or nothing.
//   - A key in heavy use with more than ExactBelow credits left has up to
//     MaxReserve of them reserved ahead on the instance (taken from the
//     store like any spend), from which its requests are served in memory;
//     the reserve is topped up before it runs out, sized by how fast it was
//     used, and given back when unused for IdleReturn or on Close. A key
//     changed through the management API (a top-up sets the balance anew)
//     voids what was reserved before.
//   - A key found out of credits is remembered, until its next refill or
//     until it changes, and refused without a store call.
//
// So a key's last ExactBelow credits are always spent exactly, one request
// at a time in the store: N concurrent requests against N credits allow
// exactly N, on one instance or many. A crash loses what the instance had
// reserved (at most MaxReserve a key): credits are never spent twice, at
// worst a few go unspent.
type CreditSpender struct {
	store CreditStore
	opts  CreditSpenderOptions

	mu        sync.Mutex
	pools     map[string]*creditPool     // by key id
	exhausted churnMap[any, exhaustedTo] // principal snapshot → when it may have credits again
	// roundsEnded is closed, and replaced, each time a pool's spends in
	// the store end, for Close to wait on those under way.
	roundsEnded chan struct{}

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// creditPool is what an instance knows and holds of one key's credits.
type creditPool struct {
	avail     int64     // reserved here, not yet spent
	version   time.Time // the key's version avail was reserved at
	snapshot  any       // the principal snapshot of the last spend in the store
	fetching  bool      // a spend in the store is under way
	waiting   []*creditWaiter
	target    int64 // what the last spend reserved ahead; a top-up starts below half
	consumed  int64 // spent from avail since the last spend in the store
	lastUse   int64 // Unix ns
	lastFetch int64 // Unix ns of the last spend in the store
	left      int64 // in the store after the last spend
	next      time.Time
}

type creditWaiter struct {
	n    int64
	done chan struct{}
	res  CreditResult
	err  error
}

type exhaustedTo struct {
	until int64 // Unix ns; math.MaxInt64: until the key changes
}

// hotInterval: spends of one key in the store closer together than this
// mark it as in heavy use, worth reserving credits ahead for.
const hotInterval = 100 * time.Millisecond

// CreditResult is the outcome of one spend.
type CreditResult struct {
	// OK says the credits were spent, or the key has none (Known false).
	OK bool
	// Known says Remaining and NextRefill describe the key: Remaining is
	// what the store held at the instance's last spend there and what the
	// instance holds reserved.
	Known      bool
	Remaining  int64
	NextRefill time.Time // zero: no refill
}

// NewCreditSpender returns a spender over store; Close gives back what it
// reserved.
func NewCreditSpender(store CreditStore, opts CreditSpenderOptions) *CreditSpender {
	if opts.ExactBelow <= 0 {
		opts.ExactBelow = 1000
	}
	if opts.MaxReserve <= 0 {
		opts.MaxReserve = 256
	}
	if opts.IdleReturn <= 0 {
		opts.IdleReturn = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxExhausted <= 0 {
		opts.MaxExhausted = 10_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &CreditSpender{store: store, opts: opts, pools: map[string]*creditPool{},
		exhausted: newChurnMap[any, exhaustedTo](opts.MaxExhausted), roundsEnded: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// Spend spends n credits of p's key, all or none. Returns KeyInvalid when
// the key is gone and the store's error (EUNAVAILABLE when the database
// does not answer) when it cannot tell; callers then refuse.
func (s *CreditSpender) Spend(ctx context.Context, p *Principal, n int64) (CreditResult, error) {
	id := p.identity()
	now := s.opts.Now().UnixNano()
	s.mu.Lock()
	if ex, ok := s.exhausted.get(id); ok {
		if now < ex.until {
			s.mu.Unlock()
			res := CreditResult{Known: true}
			if ex.until != math.MaxInt64 {
				res.NextRefill = time.Unix(0, ex.until).UTC()
			}
			return res, nil
		}
		s.exhausted.delete(id)
	}
	pool := s.pools[p.KeyID]
	if pool == nil {
		pool = &creditPool{}
		s.pools[p.KeyID] = pool
	}
	if len(pool.waiting) == 0 && pool.avail >= n && pool.snapshot == id {
		pool.avail -= n
		pool.consumed += n
		pool.lastUse = now
		res := CreditResult{OK: true, Known: true, Remaining: pool.left + pool.avail, NextRefill: pool.next}
		if pool.avail < pool.target/2 && !pool.fetching {
			pool.fetching = true
			go s.rounds(p.KeyID, pool)
		}
		s.mu.Unlock()
		return res, nil
	}
	w := &creditWaiter{n: n, done: make(chan struct{})}
	pool.waiting = append(pool.waiting, w)
	pool.snapshot = id
	lead := !pool.fetching
	pool.fetching = true
	s.mu.Unlock()
	if lead {
		// This request spends for itself and every request that arrives
		// meanwhile; the rounds after it run on a goroutine of their own.
		s.rounds(p.KeyID, pool)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return CreditResult{}, ctx.Err()
	}
	if w.err == nil && !w.res.OK && w.res.Remaining == 0 && p.cached() {
		s.remember(id, w.res)
	}
	return w.res, w.err
}

// rounds spends in the store for the pool until no request waits: the
// first round on the caller, the next ones on a goroutine.
func (s *CreditSpender) rounds(keyID string, pool *creditPool) {
	s.round(keyID, pool)
	s.mu.Lock()
	if len(pool.waiting) == 0 {
		pool.fetching = false
		close(s.roundsEnded)
		s.roundsEnded = make(chan struct{})
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.rounds(keyID, pool)
}

// round is one spend in the store: for the requests waiting, in order of
// arrival, and, for a key in heavy use far from running out, ahead.
func (s *CreditSpender) round(keyID string, pool *creditPool) {
	now := s.opts.Now()
	s.mu.Lock()
	batch := pool.waiting
	pool.waiting = nil
	need := int64(0)
	for _, w := range batch {
		need += w.n
	}
	ahead := int64(0)
	if now.UnixNano()-pool.lastFetch < int64(hotInterval) {
		// What is still reserved counts against the bound: only this
		// round adds to it (one round of a pool at a time), and requests
		// meanwhile only take from it.
		ahead = max(0, min(2*(pool.consumed+need), s.opts.MaxReserve-pool.avail))
	}
	pool.consumed, pool.lastFetch = 0, now.UnixNano()
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	var got, left int64
	var next, version time.Time
	none := false
	err := s.store.SpendCredits(ctx, keyID, func(c *Credits, v time.Time) {
		if c == nil {
			none = true
			return
		}
		c.refill(now)
		extra := min(ahead, max(0, c.Remaining-need-s.opts.ExactBelow))
		got = min(c.Remaining, need+extra)
		c.Remaining -= got
		left, next, version = c.Remaining, c.NextRefill(), v
	})
	if ErrorCode(err) == ENOTFOUND {
		err = Errorf(KeyInvalid, "the API key is not valid")
	}

	s.mu.Lock()
	switch {
	case err != nil:
		for _, w := range batch {
			w.err = err
		}
	case none:
		pool.avail = 0
		for _, w := range batch {
			w.res = CreditResult{OK: true}
		}
	default:
		if !version.Equal(pool.version) {
			pool.avail, pool.version = 0, version // reserved before a change: void
		}
		pool.avail += got
		pool.left, pool.next, pool.target = left, next, got-need
		for _, w := range batch {
			if pool.avail >= w.n {
				pool.avail -= w.n
				w.res.OK = true
			}
			w.res.Known, w.res.Remaining, w.res.NextRefill = true, left+pool.avail, next
		}
		pool.lastUse = now.UnixNano()
	}
	s.mu.Unlock()
	for _, w := range batch {
		close(w.done)
	}
	if s.opts.OnRound != nil && len(batch) > 0 {
		s.opts.OnRound(len(batch))
	}
}

// remember notes that the principal's key had no credits for a request:
// until its next refill, or for as long as this snapshot of the key lives
// (a change to the key, such as a top-up, makes another), it is refused
// without a store call.
func (s *CreditSpender) remember(id any, res CreditResult) {
	until := int64(math.MaxInt64)
	if !res.NextRefill.IsZero() {
		until = res.NextRefill.UnixNano()
	}
	s.mu.Lock()
	if _, ok := s.exhausted.get(id); !ok && s.exhausted.len() >= s.opts.MaxExhausted {
		s.exhausted.evictOne()
	}
	s.exhausted.put(id, exhaustedTo{until: until})
	s.mu.Unlock()
}

// run gives back, every half IdleReturn, the credits reserved for keys
// that stopped using them, and forgets idle keys.
func (s *CreditSpender) run() {
	defer close(s.done)
	ticker := time.NewTicker(s.opts.IdleReturn / 2)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
			s.giveBack(context.Background(), s.opts.Now().UnixNano()-int64(s.opts.IdleReturn))
		}
	}
}

// giveBack returns the reserves of keys unused since before idleSince
// (every key's when it is math.MaxInt64) and forgets keys with nothing
// reserved. A return that fails is tried again later.
func (s *CreditSpender) giveBack(ctx context.Context, idleSince int64) {
	type reserve struct {
		keyID   string
		n       int64
		version time.Time
		pool    *creditPool
	}
	var back []reserve
	s.mu.Lock()
	for id, pool := range s.pools {
		if pool.fetching || len(pool.waiting) > 0 || pool.lastUse > idleSince {
			continue
		}
		if pool.avail > 0 {
			back = append(back, reserve{id, pool.avail, pool.version, pool})
			pool.avail = 0
		}
		delete(s.pools, id)
	}
	s.mu.Unlock()
	for _, r := range back {
		rctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
		_, err := s.store.ReturnCredits(rctx, r.keyID, r.n, r.version)
		cancel()
		if err != nil {
			s.opts.Logger.Warn("reserved credits not given back; will retry", "key_id", r.keyID, "credits", r.n, "err", err)
			s.mu.Lock()
			if s.pools[r.keyID] == nil {
				s.pools[r.keyID] = r.pool
			}
			pool := s.pools[r.keyID]
			if pool.version.Equal(r.version) {
				pool.avail += r.n
			}
			s.mu.Unlock()
		}
	}
}

// Close stops the background returns, waits for spends in the store under
// way, and gives back every reserve, waiting at most until ctx ends.
func (s *CreditSpender) Close(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// A spend under way may still reserve credits, which giveBack would
	// skip and nothing would return: wait for every one to end.
	for {
		s.mu.Lock()
		busy := false
		for _, pool := range s.pools {
			busy = busy || pool.fetching
		}
		ended := s.roundsEnded
		s.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.giveBack(ctx, math.MaxInt64)
	return ctx.Err()
}

// Reserved returns how many credits the spender holds reserved, over every
// key.
func (s *CreditSpender) Reserved() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(0)
	for _, pool := range s.pools {
		n += pool.avail
	}
	return n
}
