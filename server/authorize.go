package server

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// principalView is the principal as a decision answer shows it: who, never
// the scope. Meta is nil (null) when the key has none: a nil pointer encodes
// as null, where a nil json.RawMessage allocates its "null" every time.
type principalView struct {
	Type       string           `json:"type"`
	KeyID      string           `json:"key_id"`
	Name       string           `json:"name"`
	TenantID   string           `json:"tenant_id"`
	UserID     string           `json:"user_id"`
	ExternalID *string          `json:"external_id"`
	Meta       *json.RawMessage `json:"meta"`
}

type checkResult struct {
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
}

type singleAnswer struct {
	Allowed    bool           `json:"allowed"`
	Code       string         `json:"code"`
	Reasons    []string       `json:"reasons"`
	DecisionID string         `json:"decision_id"`
	Principal  *principalView `json:"principal,omitempty"`
	limitsView
}

type batchAnswer struct {
	Results    []checkResult  `json:"results"`
	Code       string         `json:"code"`
	DecisionID string         `json:"decision_id"`
	Principal  *principalView `json:"principal,omitempty"`
	limitsView
}

// limitsView is where a key with limits stands after the request: its rate
// limit, and its credits when the request spent some or had too few.
type limitsView struct {
	RateLimit        *rateLimitView `json:"rate_limit,omitempty"`
	CreditsRemaining *int64         `json:"credits_remaining,omitempty"`
}

// authorizeRequest is the decision request, decoded in one pass on the hot
// path after one strict scan (strictjson.go); a request that does not decode
// cleanly, or names a member in other than plain lowercase, is parsed again,
// member by member and by exact name, to say exactly what is wrong. An
// api_key that is absent, null or empty takes the slow path alike, so it
// needs no pointer to tell them apart.
type authorizeRequest struct {
	APIKey   string          `json:"api_key"`
	Resource *authz.Resource `json:"resource"`
	Action   *string         `json:"action"`
	Checks   *[]authz.Check  `json:"checks"`
}

// authorize answers POST /v1/authorize: a malformed request is a 400/422
// problem; anything else, a refused key included, is a 200 decision whose
// code says why.
func (s *Server) authorize(c *gin.Context) {
	// The body is read into a reused buffer: it must not be kept past this
	// call, and is not (the scan and the decoders copy what they keep).
	buf := bodyBuffers.Get().(*bytes.Buffer)
	defer releaseBodyBuffer(buf)
	body, err := readBodyInto(c, buf)
	if err != nil {
		writeError(c, err)
		return
	}
	// One strict scan: duplicates and bad UTF-8 are refused here; a body
	// whose member names are all plain lowercase decodes exactly below.
	scan, err := scanJSON(body)
	if err != nil {
		writeError(c, err)
		return
	}
	var req authorizeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if scan.plainNames && dec.Decode(&req) == nil && !dec.More() && req.APIKey != "" &&
		((req.Checks != nil && req.Resource == nil && req.Action == nil) || (req.Checks == nil && req.Resource != nil && req.Action != nil)) {
		s.decideRequest(c, req)
		return
	}
	s.authorizeSlow(c, body)
}

// decideRequest answers a decoded request.
func (s *Server) decideRequest(c *gin.Context, req authorizeRequest) {
	if req.Checks != nil {
		s.answer(c, req.APIKey, *req.Checks, true)
		return
	}
	s.answer(c, req.APIKey, []authz.Check{{Resource: deref(req.Resource), Action: deref(req.Action)}}, false)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// authorizeSlow parses a request the fast path refused, member by member,
// and names every field at fault; a request that is valid after all is
// answered.
func (s *Server) authorizeSlow(c *gin.Context, body []byte) {
	members, err := parseObject(body, "api_key", "resource", "action", "checks")
	if err != nil {
		writeError(c, err)
		return
	}
	var fields []authz.FieldError
	var token string
	if raw, ok := members["api_key"]; !ok || isNull(raw) {
		fields = append(fields, authz.FieldError{Field: "api_key", Message: "is required"})
	} else if fe := decodeField(raw, "api_key", &token); fe != nil {
		fields = append(fields, *fe)
	} else if token == "" {
		fields = append(fields, authz.FieldError{Field: "api_key", Message: "must not be empty"})
	}
	_, hasChecks := members["checks"]
	_, hasResource := members["resource"]
	_, hasAction := members["action"]
	var checks []authz.Check
	switch {
	case hasChecks && (hasResource || hasAction):
		fields = append(fields, authz.FieldError{Field: "checks", Message: "send either checks or resource and action, not both"})
	case hasChecks:
		if fe := decodeField(members["checks"], "checks", &checks); fe != nil {
			fields = append(fields, *fe)
		} else {
			fields = append(fields, authz.ValidateChecks(checks, true)...)
		}
	default:
		var ch authz.Check
		if !hasResource {
			fields = append(fields, authz.FieldError{Field: "resource", Message: "is required"})
		} else if fe := decodeField(members["resource"], "resource", &ch.Resource); fe != nil {
			fields = append(fields, *fe)
		}
		if !hasAction {
			fields = append(fields, authz.FieldError{Field: "action", Message: "is required"})
		} else if fe := decodeField(members["action"], "action", &ch.Action); fe != nil {
			fields = append(fields, *fe)
		}
		checks = []authz.Check{ch}
		if hasResource && hasAction && len(fields) == 0 {
			fields = append(fields, authz.ValidateChecks(checks, false)...)
		}
	}
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	s.answer(c, token, checks, hasChecks)
}

// answer decides valid checks; batch selects the answer's shape. A refused
// key is a 200 answer whose code says why.
func (s *Server) answer(c *gin.Context, token string, checks []authz.Check, batch bool) {
	res, err := s.keys.Decide(c.Request.Context(), authz.DecisionRequest{
		Token: token, Checks: checks, Batch: batch, Source: authz.SourceAuthorize})
	if err != nil {
		writeError(c, err)
		return
	}
	var pv *principalView
	if p := res.Principal; p != nil {
		pv = &principalView{Type: authz.PrincipalTypeAPIKey, KeyID: p.KeyID, Name: p.KeyName, TenantID: p.TenantID, UserID: p.UserID}
		if p.ExternalID != "" {
			pv.ExternalID = &p.ExternalID
		}
		if len(p.Meta) > 0 {
			pv.Meta = &p.Meta
		}
	}
	limits := limitsView{RateLimit: newRateLimitView(res.RateLimit), CreditsRemaining: res.CreditsRemaining}
	if !batch {
		d := res.Decisions[0]
		writeJSON(c, http.StatusOK, singleAnswer{Allowed: d.Allow, Code: res.Code, Reasons: d.Reasons, DecisionID: res.DecisionID, Principal: pv, limitsView: limits})
		return
	}
	results := make([]checkResult, len(res.Decisions))
	for i, d := range res.Decisions {
		results[i] = checkResult{Allowed: d.Allow, Reasons: d.Reasons}
	}
	writeJSON(c, http.StatusOK, batchAnswer{Results: results, Code: res.Code, DecisionID: res.DecisionID, Principal: pv, limitsView: limits})
}

// whoami lets a key describe itself.
func (s *Server) whoami(c *gin.Context) {
	p := PrincipalFrom(c)
	writeJSON(c, http.StatusOK, gin.H{
		"id":               p.KeyID,
		"name":             p.KeyName,
		"tenant_id":        p.TenantID,
		"user_id":          p.UserID,
		"permission_scope": p.Scope,
		"expires_at":       p.ExpiresAt,
		"external_id":      nonEmpty(p.ExternalID),
		"meta":             metaJSON(p.Meta),
	})
}

// nonEmpty is s, or nil (JSON null) when it is empty.
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
