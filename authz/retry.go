package authz

import (
	"errors"
	"time"
)

// RetryLater is an *Error that says when to try again, as an ERATELIMIT
// refusal does; ErrorCode and ErrorMessage see the *Error inside.
type RetryLater struct {
	Err   *Error
	After time.Duration
}

func (e *RetryLater) Error() string { return e.Err.Error() }

func (e *RetryLater) Unwrap() error { return e.Err }

// ErrorRetryAfter returns how long the caller should wait before trying
// again, from a *RetryLater in err's chain; zero when it does not say.
func ErrorRetryAfter(err error) time.Duration {
	var e *RetryLater
	if errors.As(err, &e) {
		return e.After
	}
	return 0
}
