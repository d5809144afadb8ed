package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// principalView is the principal as a decision answer shows it: who, never
// the scope.
type principalView struct {
	Type     string `json:"type"`
	KeyID    string `json:"key_id"`
	Name     string `json:"name"`
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
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
}

type batchAnswer struct {
	Results    []checkResult  `json:"results"`
	Code       string         `json:"code"`
	DecisionID string         `json:"decision_id"`
	Principal  *principalView `json:"principal,omitempty"`
}

// authorizeRequest is the decision request, decoded in one pass on the hot
// path; a request that does not decode cleanly is parsed again, member by
// member, to say exactly what is wrong.
type authorizeRequest struct {
	APIKey   *string         `json:"api_key"`
	Resource *authz.Resource `json:"resource"`
	Action   *string         `json:"action"`
	Checks   *[]authz.Check  `json:"checks"`
}

// authorize answers POST /v1/authorize: a malformed request is a 400/422
// problem; anything else, a refused key included, is a 200 decision whose
// code says why.
func (s *Server) authorize(c *gin.Context) {
	body, err := readBody(c)
	if err != nil {
		writeError(c, err)
		return
	}
	var req authorizeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if dec.Decode(&req) == nil && !dec.More() && req.APIKey != nil && *req.APIKey != "" &&
		((req.Checks != nil && req.Resource == nil && req.Action == nil) || (req.Checks == nil && req.Resource != nil && req.Action != nil)) {
		s.decideRequest(c, req)
		return
	}
	s.authorizeSlow(c, body)
}

// decideRequest validates a decoded request's checks and answers it.
func (s *Server) decideRequest(c *gin.Context, req authorizeRequest) {
	batch := req.Checks != nil
	checks := []authz.Check{{Resource: deref(req.Resource), Action: deref(req.Action)}}
	if batch {
		checks = *req.Checks
	}
	if fields := checkFields(checks, batch); len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	s.answer(c, *req.APIKey, checks, batch)
}

// checkFields validates decoded checks: a batch holds 1 to MaxBatchChecks,
// and every check names a known resource type, an id and an action.
func checkFields(checks []authz.Check, batch bool) []authz.FieldError {
	if !batch {
		return checks[0].Validate("")
	}
	if len(checks) == 0 || len(checks) > authz.MaxBatchChecks {
		return []authz.FieldError{{Field: "checks", Message: fmt.Sprintf("must hold 1 to %d checks", authz.MaxBatchChecks)}}
	}
	var fields []authz.FieldError
	for i, ch := range checks {
		fields = append(fields, ch.Validate(fmt.Sprintf("checks[%d]", i))...)
	}
	return fields
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
			fields = append(fields, checkFields(checks, true)...)
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
			fields = append(fields, checkFields(checks, false)...)
		}
	}
	if len(fields) > 0 {
		writeError(c, authz.Invalid(fields...))
		return
	}
	s.answer(c, token, checks, hasChecks)
}

// answer authenticates the key and decides valid checks; batch selects the
// answer's shape.
func (s *Server) answer(c *gin.Context, token string, checks []authz.Check, batch bool) {
	ctx := c.Request.Context()
	p, err := s.keys.Authenticate(ctx, token)
	if err != nil {
		code := authz.ErrorCode(err)
		if code != authz.KeyInvalid && code != authz.KeyDisabled && code != authz.KeyExpired {
			writeError(c, err)
			return
		}
		id, idErr := authz.NewID(time.Now(), nil)
		if idErr != nil {
			writeError(c, idErr)
			return
		}
		reasons := []string{authz.ErrorMessage(err)}
		if batch {
			results := make([]checkResult, len(checks))
			for i := range results {
				results[i] = checkResult{Allowed: false, Reasons: reasons}
			}
			writeJSON(c, http.StatusOK, batchAnswer{Results: results, Code: code, DecisionID: id})
			return
		}
		writeJSON(c, http.StatusOK, singleAnswer{Allowed: false, Code: code, Reasons: reasons, DecisionID: id})
		return
	}

	res, err := s.keys.Authorize(ctx, p, checks)
	if err != nil {
		writeError(c, err)
		return
	}
	code := authz.CodeDenied
	if res.Allowed() {
		code = authz.CodeAllowed
	}
	pv := &principalView{Type: authz.PrincipalTypeAPIKey, KeyID: p.KeyID, Name: p.KeyName, TenantID: p.TenantID, UserID: p.UserID}
	if !batch {
		d := res.Decisions[0]
		writeJSON(c, http.StatusOK, singleAnswer{Allowed: d.Allow, Code: code, Reasons: nonNil(d.Reasons), DecisionID: res.DecisionID, Principal: pv})
		return
	}
	results := make([]checkResult, len(res.Decisions))
	for i, d := range res.Decisions {
		results[i] = checkResult{Allowed: d.Allow, Reasons: nonNil(d.Reasons)}
	}
	writeJSON(c, http.StatusOK, batchAnswer{Results: results, Code: code, DecisionID: res.DecisionID, Principal: pv})
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
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
