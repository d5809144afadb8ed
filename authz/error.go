package authz

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes. Each maps to exactly one HTTP status in server.ErrorStatus; the
// key codes are also the `code` of a decision answer.
const (
	ECONFLICT     = "conflict"     // a unique name or value is taken
	EFORBIDDEN    = "forbidden"    // the actor is known but not allowed
	EINTERNAL     = "internal"     // a fault the caller cannot fix
	EINVALID      = "invalid"      // a field fails validation
	EMALFORMED    = "malformed"    // the request cannot be parsed
	ENOTFOUND     = "not_found"    // absent, or in another tenant
	ETOOLARGE     = "too_large"    // a body or list over its bound
	EUNAUTHORIZED = "unauthorized" // no credential or a bad one
	EUNAVAILABLE  = "unavailable"  // a dependency is down; try again
	ERATELIMIT    = "rate_limited" // too many requests
	KeyInvalid    = "KEY_INVALID"  // no such live key: bad format, unknown or deleted
	KeyDisabled   = "KEY_DISABLED" // the key exists but is disabled
	KeyExpired    = "KEY_EXPIRED"  // the key exists but its expiry has passed
	CodeAllowed   = "ALLOWED"      // decision answer: allowed
	CodeDenied    = "DENIED"       // decision answer: the policy denied

	// CodeRateLimited answers a request of a key over its rate limit and
	// CodeUsageExceeded one of a key without the credits its allowed
	// checks need; as errors (surfaces that answer with HTTP statuses)
	// they are 429s.
	CodeRateLimited   = "RATE_LIMITED"
	CodeUsageExceeded = "USAGE_EXCEEDED"
)

// Error is the one error type of keygate. Code is for machines, Message for
// people; Fields names the offending fields of an invalid request.
type Error struct {
	Code    string
	Message string
	Fields  []FieldError
	// ExistingID names, with ECONFLICT, what already holds the name, when
	// the caller may see it: a create retried after its answer was lost
	// learns which key it made.
	ExistingID string
}

// FieldError names one invalid field and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("keygate error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error naming the fields at fault.
func Invalid(fields ...FieldError) *Error {
	msg := "the request has invalid fields"
	if len(fields) == 1 {
		msg = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: EINVALID, Message: msg, Fields: fields}
}

// ErrorCode returns the code of an *Error in err's chain, EINTERNAL for
// any other non-nil error and "" for nil. Adapters map their own failures
// to codes (storage turns a lost database connection into EUNAVAILABLE),
// so the domain knows no driver.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message of an *Error in err's chain. Any other
// error is hidden behind a generic message, so internals never reach a caller.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorFields returns the field errors of an *Error in err's chain.
func ErrorFields(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// Describe is err as an operator reads it (a log line, a command's
// error): what wraps keygate's error, and its message without the code.
// Unlike ErrorMessage it hides nothing, so it is never for a caller.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return strings.Replace(err.Error(), e.Error(), e.Message, 1)
	}
	return err.Error()
}
