package client

import (
	"math/rand/v2"
	"time"
)

// Retry says how calls that may be sent again are retried.
type Retry struct {
	Attempts      int           // tries in all; 1 turns retries off
	Base          time.Duration // the first backoff, doubled on each retry
	Max           time.Duration // the longest backoff
	MaxRetryAfter time.Duration // a longer Retry-After is not waited for: the *Error is returned
}

// DefaultRetry tries 4 times, backing off from 100 ms to 2 s, and waits
// for a Retry-After of up to 30 s.
var DefaultRetry = Retry{Attempts: 4, Base: 100 * time.Millisecond, Max: 2 * time.Second, MaxRetryAfter: 30 * time.Second}

func (r Retry) withDefaults() Retry {
	if r.Attempts < 1 {
		r.Attempts = 1
	}
	if r.Base <= 0 {
		r.Base = DefaultRetry.Base
	}
	if r.Max < r.Base {
		r.Max = max(r.Base, DefaultRetry.Max)
	}
	if r.MaxRetryAfter <= 0 {
		r.MaxRetryAfter = DefaultRetry.MaxRetryAfter
	}
	return r
}

// backoff is the wait after the attempt-th failure: exponential, capped,
// with jitter so clients that failed together do not come back together.
func (r Retry) backoff(attempt int) time.Duration {
	d := r.Base << min(attempt-1, 20)
	if d > r.Max || d <= 0 {
		d = r.Max
	}
	return d/2 + rand.N(d/2+1)
}
