package client

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Problem codes: Error.Code, the `code` of keygate's RFC 9457 answers.
const (
	CodeMalformed        = "malformed"          // 400: the body is not one JSON object
	CodeUnauthorized     = "unauthorized"       // 401: no credential or a refused one
	CodeForbidden        = "forbidden"          // 403: the management policy says no
	CodeNotFound         = "not_found"          // 404: absent, or in another tenant
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeConflict         = "conflict"           // 409: the name is taken (ExistingID), or the state forbids it
	CodeTooLarge         = "too_large"          // 413: the body is over 1 MiB
	CodeInvalid          = "invalid"            // 422: fields fail validation (Fields)
	CodeRateLimited      = "rate_limited"       // 429: too many failed authentications (RetryAfter)
	CodeInternal         = "internal"           // 500
	CodeUnavailable      = "unavailable"        // 503: the database could not be reached; nothing was written
	CodeKeyInvalid       = "KEY_INVALID"        // 401 on /v1/whoami: no such live key
	CodeKeyDisabled      = "KEY_DISABLED"       // 401 on /v1/whoami
	CodeKeyExpired       = "KEY_EXPIRED"        // 401 on /v1/whoami
	CodeKeyRateLimited   = "RATE_LIMITED"       // 429 from forward auth: the key is over its rate limit (RetryAfter)
	CodeUsageExceeded    = "USAGE_EXCEEDED"     // 429 from forward auth: the key has too few credits
)

// Error is an answer that is not a success: keygate's problem document, or
// what could be read of another (a proxy's, say).
type Error struct {
	Status     int
	Code       string // one of the Code constants; empty when the answer was no problem document
	Title      string
	Detail     string
	RequestID  string
	Fields     []FieldError  // with CodeInvalid, every field at fault
	ExistingID string        // with CodeConflict, what holds the name, when the caller may read it
	RetryAfter time.Duration // from Retry-After; 0 when absent
	// Reasons and DecisionID, in a refusal of forward auth, say why and
	// name the decision in the audit trail and decision log.
	Reasons    []string
	DecisionID string
}

// FieldError names an invalid field and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "keygate: %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	if len(e.Fields) > 1 {
		for _, f := range e.Fields {
			fmt.Fprintf(&b, "; %s: %s", f.Field, f.Message)
		}
	}
	if e.ExistingID != "" {
		fmt.Fprintf(&b, " (existing id %s)", e.ExistingID)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: 429, 502,
// 503 and 504.
func (e *Error) Retryable() bool {
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// HasCode reports whether err is an *Error with the given code.
func HasCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// newError reads an answer that is not a success.
func newError(status int, header http.Header, body []byte) *Error {
	e := &Error{Status: status, Title: http.StatusText(status), RequestID: header.Get("X-Request-Id"),
		RetryAfter: retryAfter(header.Get("Retry-After"), time.Now())}
	var p struct {
		Title      string       `json:"title"`
		Detail     string       `json:"detail"`
		Code       string       `json:"code"`
		RequestID  string       `json:"request_id"`
		Errors     []FieldError `json:"errors"`
		ExistingID string       `json:"existing_id"`
		Reasons    []string     `json:"reasons"`
		DecisionID string       `json:"decision_id"`
	}
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt == "application/problem+json" && json.Unmarshal(body, &p) == nil {
		e.Code, e.Detail, e.Fields, e.ExistingID = p.Code, p.Detail, p.Errors, p.ExistingID
		e.Reasons, e.DecisionID = p.Reasons, p.DecisionID
		e.Title = cmp.Or(p.Title, e.Title)
		e.RequestID = cmp.Or(p.RequestID, e.RequestID)
		return e
	}
	// Not keygate's problem: keep a short, printable excerpt.
	detail := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(body))
	if len(detail) > 200 {
		detail = detail[:200] + "…"
	}
	e.Detail = strings.TrimSpace(detail)
	return e
}

// retryAfter reads Retry-After: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
