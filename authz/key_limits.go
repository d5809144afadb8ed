package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Bounds on what a key may carry besides its scope.
const (
	MaxRateLimit        = 1_000_000              // requests per window
	MinRateWindow       = time.Second            // shortest rate limit window
	MaxRateWindow       = 24 * time.Hour         // longest rate limit window
	MaxCredits          = 1_000_000_000_000      // credits remaining, and a refill's amount
	MinRefillInterval   = time.Minute            // shortest refill interval
	MaxRefillInterval   = 366 * 24 * time.Hour   // longest refill interval
	MaxMetaBytes        = 4096                   // a key's meta, as compact JSON
	MaxExternalIDLen    = 200                    // bytes of a key's external_id
	MaxRotationGrace    = 7 * 24 * time.Hour     // longest a rotated key's previous token keeps working
	maxMetaDepth        = 16                     // nesting of meta's objects and arrays
	rateLimitWindowName = "rate_limit.window_ms" // the field a window error names
)

// RateLimit is a key's request rate: Limit decision requests per window,
// in bursts of up to Limit (a generic cell rate algorithm: a key that has
// been quiet may send Limit at once, then one every window/Limit).
type RateLimit struct {
	Limit    int64 `json:"limit"`
	WindowMS int64 `json:"window_ms"`
}

// Window is the limit's window.
func (r RateLimit) Window() time.Duration { return time.Duration(r.WindowMS) * time.Millisecond }

func (r RateLimit) validate() []FieldError {
	var fields []FieldError
	if r.Limit < 1 || r.Limit > MaxRateLimit {
		fields = append(fields, FieldError{Field: "rate_limit.limit", Message: fmt.Sprintf("must be 1 to %d", MaxRateLimit)})
	}
	if r.Window() < MinRateWindow || r.Window() > MaxRateWindow {
		fields = append(fields, FieldError{Field: rateLimitWindowName, Message: fmt.Sprintf("must be %d to %d",
			MinRateWindow.Milliseconds(), MaxRateWindow.Milliseconds())})
	}
	return fields
}

// CreditRefill tops a key's credits up to Amount every interval.
type CreditRefill struct {
	Amount     int64 `json:"amount"`
	IntervalMS int64 `json:"interval_ms"`
}

// Interval is the time between two refills.
func (r CreditRefill) Interval() time.Duration { return time.Duration(r.IntervalMS) * time.Millisecond }

// Credits are a key's usage credits: each allowed check spends one, and a
// key with none left is refused (CodeUsageExceeded). With a refill, every
// Interval since RefilledAt the remaining credits are topped up to Amount
// (never lowered: a top-up above it is kept).
type Credits struct {
	Remaining int64         `json:"remaining"`
	Refill    *CreditRefill `json:"refill"`
	// RefilledAt is when the credits were last set or refilled; the next
	// refill is an interval later.
	RefilledAt *time.Time `json:"refilled_at"`
}

func (c *Credits) validate() []FieldError {
	var fields []FieldError
	if c.Remaining < 0 || c.Remaining > MaxCredits {
		fields = append(fields, FieldError{Field: "credits.remaining", Message: fmt.Sprintf("must be 0 to %d", MaxCredits)})
	}
	if r := c.Refill; r != nil {
		if r.Amount < 1 || r.Amount > MaxCredits {
			fields = append(fields, FieldError{Field: "credits.refill.amount", Message: fmt.Sprintf("must be 1 to %d", MaxCredits)})
		}
		if r.Interval() < MinRefillInterval || r.Interval() > MaxRefillInterval {
			fields = append(fields, FieldError{Field: "credits.refill.interval_ms", Message: fmt.Sprintf("must be %d to %d",
				MinRefillInterval.Milliseconds(), MaxRefillInterval.Milliseconds())})
		}
	}
	return fields
}

// refill brings the credits up to date at now: when one or more intervals
// have passed since RefilledAt, the remaining credits are topped up to the
// refill's amount and RefilledAt moves to the last interval boundary.
func (c *Credits) refill(now time.Time) {
	if c.Refill == nil || c.RefilledAt == nil || c.Refill.IntervalMS <= 0 {
		return
	}
	iv := c.Refill.Interval()
	passed := now.Sub(*c.RefilledAt)
	if passed < iv {
		return
	}
	at := c.RefilledAt.Add(passed / iv * iv)
	c.RefilledAt = &at
	c.Remaining = max(c.Remaining, c.Refill.Amount)
}

// NextRefill is when the credits are next topped up; zero without a refill.
func (c *Credits) NextRefill() time.Time {
	if c == nil || c.Refill == nil || c.RefilledAt == nil {
		return time.Time{}
	}
	return c.RefilledAt.Add(c.Refill.Interval())
}

// newCredits is c as set at now: its refill counts from now.
func newCredits(c *Credits, now time.Time) *Credits {
	if c == nil {
		return nil
	}
	out := &Credits{Remaining: c.Remaining}
	if c.Refill != nil {
		r := *c.Refill
		at := now
		out.Refill, out.RefilledAt = &r, &at
	}
	return out
}

func equalCredits(a, b *Credits) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Remaining == b.Remaining && equalPtr(a.Refill, b.Refill)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// CompactMeta validates a key's meta and returns it as compact JSON: a
// JSON object of at most MaxMetaBytes, nested at most 16 deep. nil stays
// nil (no meta).
func CompactMeta(raw json.RawMessage) (json.RawMessage, []FieldError) {
	if raw == nil {
		return nil, nil
	}
	bad := func(msg string) (json.RawMessage, []FieldError) {
		return nil, []FieldError{{Field: "meta", Message: msg}}
	}
	if !utf8.Valid(raw) {
		return bad("must be valid UTF-8")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return bad("must be a JSON object")
	}
	out := buf.Bytes()
	switch {
	case len(out) == 0 || out[0] != '{':
		return bad("must be a JSON object")
	case len(out) > MaxMetaBytes:
		return bad(fmt.Sprintf("must be at most %d bytes as compact JSON", MaxMetaBytes))
	case jsonDepth(out) > maxMetaDepth:
		return bad(fmt.Sprintf("must be nested at most %d deep", maxMetaDepth))
	}
	return json.RawMessage(out), nil
}

// jsonDepth is how deeply valid JSON nests its objects and arrays.
func jsonDepth(b []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

func validExternalID(id *string) []FieldError {
	if id == nil {
		return nil
	}
	if msg := validPrintable(*id, MaxExternalIDLen); msg != "" {
		return []FieldError{{Field: "external_id", Message: msg}}
	}
	return nil
}

// limitFields validates what a creation or update sets besides name,
// scope and expiry.
func limitFields(externalID *string, meta json.RawMessage, rate *RateLimit, credits *Credits) []FieldError {
	fields := validExternalID(externalID)
	if _, fe := CompactMeta(meta); fe != nil {
		fields = append(fields, fe...)
	}
	if rate != nil {
		fields = append(fields, rate.validate()...)
	}
	if credits != nil {
		fields = append(fields, credits.validate()...)
	}
	return fields
}
