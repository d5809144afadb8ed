package authz

import (
	"context"
	"fmt"
	"time"
)

// A key's limits inside Decide: its rate limit, taken before the policy is
// asked, and its credits, spent after, one per allowed check. A request
// they refuse is an answer (CodeRateLimited, CodeUsageExceeded) whose
// checks all deny, counted in the key's usage history and in OnLimited,
// not written to the audit trail one by one: a looping agent would flood it.

// overRateLimit takes the request from p's rate limit, when it has one,
// noting where the key stands on res; it reports whether the request is
// over the limit, res then answering it.
func (s *KeyService) overRateLimit(ctx context.Context, now time.Time, p *Principal, res *DecisionResult, checks int) bool {
	if p.RateLimit == nil || s.RateLimiter == nil {
		return false
	}
	st := s.RateLimiter.Take(ctx, p.KeyID, *p.RateLimit, now)
	res.RateLimit = &st
	if st.Allowed {
		return false
	}
	reason := fmt.Sprintf("the key is over its rate limit of %d requests per %s; try again in %s",
		p.RateLimit.Limit, p.RateLimit.Window(), roundUp(st.RetryAfter))
	res.Code, res.RetryAfter = CodeRateLimited, st.RetryAfter
	res.Decisions = make([]Decision, checks)
	for i := range res.Decisions {
		res.Decisions[i] = Decision{Allow: false, Reasons: []string{reason}}
	}
	s.limited(ctx, CodeRateLimited)
	return true
}

// spendCredits spends a credit of p's key for each of the allowed checks
// of res, all or none; without enough, every allowed check of res is
// denied and res is answered CodeUsageExceeded. Returns KeyInvalid's
// answer for a key deleted meanwhile, and the store's error when the
// credits cannot be spent: the request is then refused, never let through
// unpaid.
func (s *KeyService) spendCredits(ctx context.Context, now time.Time, p *Principal, res *DecisionResult, allowed int) error {
	if s.Credits == nil {
		return Errorf(EUNAVAILABLE, "the key's credits cannot be spent by this instance")
	}
	cr, err := s.Credits.Spend(ctx, p, int64(allowed))
	switch code := ErrorCode(err); {
	case code == KeyInvalid:
		*res = *refusedResult(res.DecisionID, KeyInvalid, "the API key is not valid", len(res.Decisions))
		return nil
	case err != nil:
		return &Error{Code: EUNAVAILABLE, Message: "the key's credits cannot be spent right now"}
	}
	if cr.Known {
		left := cr.Remaining
		res.CreditsRemaining = &left
	}
	if cr.OK {
		return nil
	}
	reason := "the key has no credits left"
	if allowed > 1 {
		reason = fmt.Sprintf("the key has %d credits left, fewer than the %d its allowed checks need", cr.Remaining, allowed)
	}
	if !cr.NextRefill.IsZero() {
		res.RetryAfter = max(cr.NextRefill.Sub(now), time.Second)
		reason += "; they are refilled at " + cr.NextRefill.Format(time.RFC3339)
	}
	for i, d := range res.Decisions {
		if d.Allow {
			res.Decisions[i] = Decision{Allow: false, Reasons: []string{reason}}
		}
	}
	res.Code = CodeUsageExceeded
	s.limited(ctx, CodeUsageExceeded)
	return nil
}

// limited tells OnLimited of a request the key's limits refused.
func (s *KeyService) limited(ctx context.Context, code string) {
	if s.OnLimited != nil {
		s.OnLimited(ctx, code)
	}
}

// roundUp is d in whole seconds, rounded up, at least one: how reasons say
// how long to wait.
func roundUp(d time.Duration) time.Duration {
	return max(time.Second, (d+time.Second-1)/time.Second*time.Second)
}
