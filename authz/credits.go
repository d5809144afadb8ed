package authz

import (
	"context"
	"math"
	"sync"
	"time"
)

// CreditStore spends keys' usage credits where every instance sees them.
type CreditStore interface {
	// SpendCredits loads the credits of the key with id, locked against
	// every other spender, passes them to spend (nil when the key has
	// none) and saves what spend changed, all at once. Returns ENOTFOUND
	// when the key is gone.
	SpendCredits(ctx context.Context, id string, spend func(*Credits)) error
}

// CreditSpenderOptions tunes a CreditSpender; zero values take the
// defaults.
type CreditSpenderOptions struct {
	// Timeout bounds one spend in the store; 2s.
	Timeout time.Duration
	// MaxExhausted bounds the keys remembered as out of credits; 10000.
	MaxExhausted int
	// OnRound hears how many requests each spend in the store served.
	OnRound func(requests int)
	Now     func() time.Time
}

// CreditSpender spends the credits of allowed checks exactly, across
// instances, without a store write per request: the requests of one key
// that arrive while a spend of that key is in the store wait for it and
// are then served by one spend, in order of arrival, each of them all or
// nothing. Every spend is atomic in the store, so no credit is spent twice
// and none is held back by an instance: a key with N credits allows exactly
// N checks however many instances share it. A key found out of credits is
// remembered (until its next refill, or until the key changes: a top-up is
// a change) and refused without a store call.
type CreditSpender struct {
	store CreditStore
	opts  CreditSpenderOptions

	mu        sync.Mutex
	queues    map[string]*creditQueue    // keys with a spend in the store
	exhausted churnMap[any, exhaustedTo] // principal snapshot → when it may have credits again
}

type creditQueue struct {
	waiting []*creditWaiter
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

// CreditResult is the outcome of one spend.
type CreditResult struct {
	// OK says the credits were spent, or the key has none (Known false).
	OK bool
	// Known says Remaining and NextRefill describe the key.
	Known      bool
	Remaining  int64
	NextRefill time.Time // zero: no refill
}

// NewCreditSpender returns a spender over store.
func NewCreditSpender(store CreditStore, opts CreditSpenderOptions) *CreditSpender {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxExhausted <= 0 {
		opts.MaxExhausted = 10_000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &CreditSpender{store: store, opts: opts, queues: map[string]*creditQueue{},
		exhausted: newChurnMap[any, exhaustedTo](opts.MaxExhausted)}
}

// Spend spends n credits of p's key, all or none. Returns KeyInvalid when
// the key is gone and the store's error (EUNAVAILABLE when the database
// does not answer) when it cannot tell; callers then refuse.
func (s *CreditSpender) Spend(ctx context.Context, p *Principal, n int64) (CreditResult, error) {
	id := p.identity()
	s.mu.Lock()
	if ex, ok := s.exhausted.get(id); ok {
		if s.opts.Now().UnixNano() < ex.until {
			s.mu.Unlock()
			res := CreditResult{Known: true}
			if ex.until != math.MaxInt64 {
				res.NextRefill = time.Unix(0, ex.until).UTC()
			}
			return res, nil
		}
		s.exhausted.delete(id)
	}
	w := &creditWaiter{n: n, done: make(chan struct{})}
	q, busy := s.queues[p.KeyID]
	if !busy {
		q = &creditQueue{}
		s.queues[p.KeyID] = q
	}
	q.waiting = append(q.waiting, w)
	s.mu.Unlock()
	if !busy {
		// This request leads: it spends for itself and every request that
		// arrived meanwhile, then hands on to those that arrive during it.
		s.rounds(p, q)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		return CreditResult{}, ctx.Err()
	}
	if w.err == nil && !w.res.OK && p.cached() {
		s.remember(id, w.res)
	}
	return w.res, w.err
}

// rounds spends for the waiters of q until none is left; the first round
// runs on the caller, the next ones each on a goroutine of their own so
// the leader can answer.
func (s *CreditSpender) rounds(p *Principal, q *creditQueue) {
	s.mu.Lock()
	batch := q.waiting
	q.waiting = nil
	s.mu.Unlock()
	s.round(p.KeyID, batch)
	s.mu.Lock()
	if len(q.waiting) == 0 {
		delete(s.queues, p.KeyID)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.rounds(p, q)
}

// round is one spend in the store for batch, served in order of arrival.
func (s *CreditSpender) round(keyID string, batch []*creditWaiter) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	now := s.opts.Now()
	none := false
	err := s.store.SpendCredits(ctx, keyID, func(c *Credits) {
		if c == nil {
			none = true
			return
		}
		c.refill(now)
		for _, w := range batch {
			if c.Remaining >= w.n {
				c.Remaining -= w.n
				w.res.OK = true
			}
			w.res.Known, w.res.Remaining, w.res.NextRefill = true, c.Remaining, c.NextRefill()
		}
	})
	if ErrorCode(err) == ENOTFOUND {
		err = Errorf(KeyInvalid, "the API key is not valid")
	}
	for _, w := range batch {
		switch {
		case err != nil:
			w.res, w.err = CreditResult{}, err
		case none:
			w.res = CreditResult{OK: true}
		}
		close(w.done)
	}
	if s.opts.OnRound != nil {
		s.opts.OnRound(len(batch))
	}
}

// remember notes that the principal's key had no credits for a request:
// until its next refill, or for as long as this snapshot of the key lives
// (a change to the key, such as a top-up, makes another), it is refused
// without a store call.
func (s *CreditSpender) remember(id any, res CreditResult) {
	if res.Remaining > 0 {
		return // a larger batch failed; a smaller one may pass
	}
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
