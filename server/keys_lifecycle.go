package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// lifecycleMembers are the members of a key's body beside name, scope,
// enabled and expiry: the platform's own id and meta, and the key's limits.
var lifecycleMembers = []string{"external_id", "meta", "rate_limit", "credits"}

// rateLimitBody and creditsBody are how a body spells a rate limit and
// credits; every member is required.
type rateLimitBody struct {
	Limit    *int64 `json:"limit"`
	WindowMS *int64 `json:"window_ms"`
}

type refillBody struct {
	Amount     *int64 `json:"amount"`
	IntervalMS *int64 `json:"interval_ms"`
}

type creditsBody struct {
	Remaining *int64      `json:"remaining"`
	Refill    *refillBody `json:"refill"`
}

// lifecycle reads the lifecycle members of a key's body into u: a member
// present sets its field, null clearing it (on creation, null is absent).
func (b *body) lifecycle(u *authz.APIKeyUpdate) {
	if raw, ok := b.members["external_id"]; ok {
		u.SetExternalID = true
		if !isNull(raw) {
			var id string
			if b.decode("external_id", raw, &id) {
				u.ExternalID = &id
			}
		}
	}
	if raw, ok := b.members["meta"]; ok {
		u.SetMeta = true
		if !isNull(raw) {
			u.Meta = bytes.Clone(raw)
		}
	}
	if raw, ok := b.members["rate_limit"]; ok {
		u.SetRateLimit = true
		var rb rateLimitBody
		if !isNull(raw) && b.decode("rate_limit", raw, &rb) {
			b.need("rate_limit.limit", rb.Limit)
			b.need("rate_limit.window_ms", rb.WindowMS)
			if rb.Limit != nil && rb.WindowMS != nil {
				u.RateLimit = &authz.RateLimit{Limit: *rb.Limit, WindowMS: *rb.WindowMS}
			}
		}
	}
	if raw, ok := b.members["credits"]; ok {
		u.SetCredits = true
		var cb creditsBody
		if !isNull(raw) && b.decode("credits", raw, &cb) {
			u.Credits = b.credits(cb)
		}
	}
}

func (b *body) credits(cb creditsBody) *authz.Credits {
	b.need("credits.remaining", cb.Remaining)
	if cb.Remaining == nil {
		return nil
	}
	c := &authz.Credits{Remaining: *cb.Remaining}
	if r := cb.Refill; r != nil {
		b.need("credits.refill.amount", r.Amount)
		b.need("credits.refill.interval_ms", r.IntervalMS)
		if r.Amount == nil || r.IntervalMS == nil {
			return nil
		}
		c.Refill = &authz.CreditRefill{Amount: *r.Amount, IntervalMS: *r.IntervalMS}
	}
	return c
}

// need names a required member that is missing.
func (b *body) need(field string, v *int64) {
	if v == nil {
		b.fail(field, "is required")
	}
}

// rotateKey answers POST /api-keys/{id}/rotate: the key with its new token,
// shown this once. The body, {"grace_period_seconds": N}, may be left out.
func (s *Server) rotateKey(c *gin.Context) {
	raw, err := readBody(c)
	if err != nil {
		writeError(c, err)
		return
	}
	var grace int64
	if len(bytes.TrimSpace(raw)) > 0 {
		members, err := parseObject(raw, "grace_period_seconds")
		if err != nil {
			writeError(c, err)
			return
		}
		b := &body{members: members}
		b.optional("grace_period_seconds", &grace)
		if grace < 0 || grace > int64(authz.MaxRotationGrace/time.Second) {
			b.fail("grace_period_seconds", "must be 0 to 604800 (7 days)")
		}
		if err := b.err(); err != nil {
			writeError(c, err)
			return
		}
	}
	key, token, err := s.keys.RotateKey(c.Request.Context(), c.Param("id"), time.Duration(grace)*time.Second)
	if err != nil {
		writeError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	writeJSON(c, http.StatusOK, createdKey{APIKey: key, Token: token})
}

// keyUsage answers GET /api-keys/{id}/usage: the key's decisions counted
// per hour or day.
func (s *Server) keyUsage(c *gin.Context) {
	q := authz.UsageQuery{Granularity: c.Query("granularity")}
	var fields []authz.FieldError
	if v, ok := c.GetQuery("granularity"); ok && v != authz.GranularityHour && v != authz.GranularityDay {
		fields = append(fields, authz.FieldError{Field: "granularity", Message: "must be hour or day"})
	}
	q.Since, fields = queryTime(c, "since", fields)
	q.Until, fields = queryTime(c, "until", fields)
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	rep, err := s.keys.KeyUsage(c.Request.Context(), c.Param("id"), q)
	if err != nil {
		writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, rep)
}

// queryTime reads an RFC 3339 time from the query: nil when absent.
func queryTime(c *gin.Context, name string, fields []authz.FieldError) (*time.Time, []authz.FieldError) {
	v, ok := c.GetQuery(name)
	if !ok {
		return nil, fields
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, append(fields, authz.FieldError{Field: name, Message: "must be an RFC 3339 time"})
	}
	return &t, fields
}

// queryExternalID reads the external_id filter: nil when absent.
func queryExternalID(c *gin.Context, fields []authz.FieldError) (*string, []authz.FieldError) {
	v, ok := c.GetQuery("external_id")
	if !ok {
		return nil, fields
	}
	if v == "" || len(v) > authz.MaxExternalIDLen {
		fields = append(fields, authz.FieldError{Field: "external_id", Message: "must be 1 to 200 bytes"})
	}
	return &v, fields
}

// rateLimitView is where a key stands against its rate limit, in a
// decision answer.
type rateLimitView struct {
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"`
	ResetAt   time.Time `json:"reset_at"`
	// RetryAfterMS is, for a refused request, how long until one is
	// allowed.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

func newRateLimitView(st *authz.RateLimitState) *rateLimitView {
	if st == nil {
		return nil
	}
	v := &rateLimitView{Limit: st.Limit, Remaining: st.Remaining, ResetAt: st.ResetAt}
	if !st.Allowed {
		v.RetryAfterMS = max(1, st.RetryAfter.Milliseconds())
	}
	return v
}

// metaJSON is meta for an answer: null when the key has none.
func metaJSON(meta json.RawMessage) json.RawMessage {
	if len(meta) == 0 {
		return nil
	}
	return meta
}
