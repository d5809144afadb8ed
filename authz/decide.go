package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sources of decision requests: the surface a request came through, named
// in audit events, metrics and decision logs.
const (
	SourceAuthorize   = "authorize"    // POST /v1/authorize
	SourceForwardAuth = "forward_auth" // gateways asking before they forward a request
	SourceMCP         = "mcp"          // the MCP gateway's tools/list and tools/call
	SourceMiddleware  = "middleware"   // RequirePermission in a Go service
	SourceGRPC        = "grpc"         // Envoy's ext_authz over gRPC
)

// TargetHTTPRequest is the target type of a denial event for a forwarded
// request that maps to no check; its id is the method and path.
const TargetHTTPRequest = "http_request"

// DecisionMetrics counts the decision requests Decide answers, so telemetry
// can live outside the domain.
type DecisionMetrics interface {
	// Decided is called once per request with its Source, the answer's
	// Code or, when Decide failed, the error's code, and the time taken.
	Decided(ctx context.Context, source, code string, elapsed time.Duration)
}

// DecisionRequest asks what a key may do: the key (a token, or a principal
// authenticated earlier in the same request) and the checks.
type DecisionRequest struct {
	// Token is the API key presented; it is authenticated when Principal
	// is nil.
	Token string
	// Principal is a key authenticated earlier in the same request, as by
	// RequireAPIKey or the MCP gateway, which authenticate every request.
	Principal *Principal
	Checks    []Check
	// Batch says the checks came as a list: it holds 1 to MaxBatchChecks,
	// and field errors name checks[i].
	Batch bool
	// Listing decides what to show, not an attempt (the MCP gateway's
	// tools/list): denials are not recorded, and as the list is keygate's
	// own, MaxBatchChecks does not bound it.
	Listing bool
	// Source is the surface the request came through (Source*).
	Source string
	// HTTP is a request a gateway forwards (forward auth, Envoy
	// ext_authz), in place of Checks: the policy's HTTP mapping turns it
	// into the one check it means, or denies it with reasons.
	HTTP *HTTPRequest
}

// DecisionResult answers a DecisionRequest. DecisionID names it in the
// audit trail and in the caller's logs.
type DecisionResult struct {
	DecisionID string
	// Code is CodeAllowed when every check is allowed, CodeDenied when the
	// policy denied any, CodeRateLimited or CodeUsageExceeded when the
	// key's limits refused the request, or the key's refusal: KeyInvalid,
	// KeyDisabled or KeyExpired.
	Code string
	// Principal is the key's principal; nil when the key was refused.
	Principal *Principal
	// Decisions answers each check, in order; when the key was refused,
	// each denies with the refusal's reason. Reasons are never nil.
	Decisions []Decision
	// RateLimit is where a key with a rate limit stands after the
	// request; nil for a key without one, and for a listing.
	RateLimit *RateLimitState
	// CreditsRemaining is what a key with credits has left after the
	// request spent some, or 0 when it had too few; nil otherwise.
	CreditsRemaining *int64
	// RetryAfter, with CodeRateLimited or CodeUsageExceeded, is how long
	// until the key may succeed again; zero when unknown (credits without
	// a refill).
	RetryAfter time.Duration
}

// Allowed reports whether every check was allowed.
func (r *DecisionResult) Allowed() bool { return r.Code == CodeAllowed }

// Refused reports whether the key itself was refused (no live key), as
// opposed to a check being denied.
func (r *DecisionResult) Refused() bool { return r.Principal == nil }

// Decide is keygate's one decision path, behind every surface: it
// validates the checks, authenticates the key (unless the request carries
// a principal), maps a forwarded HTTP request to its check, takes the request from the key's rate limit, evaluates the
// policy once for all checks, spends a credit per allowed check of a key
// with credits, and records what was denied and counts the outcome, off
// the request path. A refused key and a key over its limits are answers,
// not errors. A listing (tools/list) is not an attempt: it is neither
// limited, charged, recorded nor counted. Returns EINVALID for bad checks,
// EUNAVAILABLE when the key cannot be looked up or its credits cannot be
// spent, ERATELIMIT when the address is over its failed authentication
// budget and EINTERNAL when the policy fails (callers deny).
func (s *KeyService) Decide(ctx context.Context, req DecisionRequest) (res *DecisionResult, err error) {
	if s.Metrics != nil {
		defer s.countDecision(ctx, req.Source, time.Now(), &res, &err)
	}
	if err := validateRequest(req); err != nil {
		return nil, err
	}
	now := s.now()
	decisionID, err := NewID(now, s.Rand)
	if err != nil {
		return nil, err
	}
	logged := s.DecisionLog != nil && s.DecisionLog.Sampled()
	dc := DecisionContext{Time: now, IP: RequestInfoFromContext(ctx).IP}
	p := req.Principal
	if p == nil {
		p, err = s.authenticate(ctx, now, req.Token)
		if err != nil {
			code := ErrorCode(err)
			if !IsKeyRefusal(code) {
				return nil, err
			}
			refused := refusedResult(decisionID, code, ErrorMessage(err), max(len(req.Checks), boolCount(req.HTTP != nil)))
			if logged {
				s.logDecision(ctx, req, refused, dc, len(req.Checks) != 1, 0, nil)
			}
			return refused, nil
		}
	}
	res = &DecisionResult{DecisionID: decisionID, Principal: p, Code: CodeDenied}
	if req.HTTP != nil {
		check, reasons, err := s.mapHTTP(ctx, *req.HTTP)
		if err != nil {
			return nil, err
		}
		if check == nil {
			res.Decisions = []Decision{{Allow: false, Reasons: reasons}}
			s.httpDenied(ctx, now, decisionID, p, req, reasons)
			s.countUsage(p.KeyID, p.TenantID, now, res.Code)
			if logged {
				s.logDecision(ctx, req, res, dc, false, 0, nil)
			}
			return res, nil
		}
		req.Checks = []Check{*check}
	}
	batch := len(req.Checks) != 1 || req.Listing
	if len(req.Checks) == 0 {
		res.Decisions = []Decision{}
		return res, nil
	}
	if !req.Listing && s.overRateLimit(ctx, now, p, res, len(req.Checks)) {
		s.countUsage(p.KeyID, p.TenantID, now, res.Code)
		if logged {
			s.logDecision(ctx, req, res, dc, batch, 0, nil)
		}
		return res, nil
	}
	var start time.Time
	if logged {
		start = time.Now()
	}
	if !batch {
		var d Decision
		d, err = s.Policy.Decide(ctx, p, req.Checks[0].Resource, req.Checks[0].Action, dc)
		res.Decisions = []Decision{d}
	} else {
		res.Decisions, err = s.Policy.DecideBatch(ctx, p, req.Checks, dc)
	}
	var eval time.Duration
	if logged {
		eval = time.Since(start)
	}
	if err != nil {
		if logged {
			s.logDecision(ctx, req, res, dc, batch, eval, err)
		}
		return nil, err
	}
	allowed := 0
	for i := range res.Decisions {
		res.Decisions[i].Reasons = NonNil(res.Decisions[i].Reasons)
		allowed += boolCount(res.Decisions[i].Allow)
	}
	if allowed == len(res.Decisions) {
		res.Code = CodeAllowed
	}
	if req.Listing {
		// Not an attempt: neither recorded, charged nor counted.
		if logged {
			s.logDecision(ctx, req, res, dc, batch, eval, nil)
		}
		return res, nil
	}
	s.authzDenied(ctx, now, decisionID, p, req, res.Decisions)
	if allowed > 0 && p.Credits {
		if err := s.spendCredits(ctx, now, p, res, allowed); err != nil {
			return nil, err
		}
	}
	s.countUsage(p.KeyID, p.TenantID, now, res.Code)
	if logged {
		s.logDecision(ctx, req, res, dc, batch, eval, nil)
	}
	return res, nil
}

// logDecision hands a decision, as answered (its code final), to the
// decision log. The slices are copied: the caller owns the request and the
// result.
func (s *KeyService) logDecision(ctx context.Context, req DecisionRequest, res *DecisionResult, dc DecisionContext, batch bool, eval time.Duration, err error) {
	info := RequestInfoFromContext(ctx)
	en := DecisionLogEntry{
		DecisionID: res.DecisionID, Time: dc.Time, Source: req.Source, Listing: req.Listing, Batch: batch,
		Principal: res.Principal, Checks: slices.Clone(req.Checks), Context: dc, Code: res.Code,
		Eval: eval, RequestID: info.RequestID, TraceID: info.TraceID,
	}
	if req.HTTP != nil {
		forwarded := *req.HTTP
		en.HTTP = &forwarded
	}
	if err != nil {
		en.Err, en.Code = err, ""
	} else {
		en.Decisions = slices.Clone(res.Decisions)
	}
	if r, ok := s.Policy.(interface{ Revision() string }); ok && res.Principal != nil {
		en.Revision = r.Revision()
	}
	s.DecisionLog.LogDecision(en)
}

// IsKeyRefusal reports whether code refuses the key itself: KeyInvalid,
// KeyDisabled or KeyExpired.
func IsKeyRefusal(code string) bool {
	return code == KeyInvalid || code == KeyDisabled || code == KeyExpired
}

func refusedResult(decisionID, code, reason string, checks int) *DecisionResult {
	res := &DecisionResult{DecisionID: decisionID, Code: code, Decisions: make([]Decision, checks)}
	for i := range res.Decisions {
		res.Decisions[i] = Decision{Allow: false, Reasons: []string{reason}}
	}
	return res
}

func validateRequest(req DecisionRequest) error {
	var fields []FieldError
	if req.HTTP != nil {
		if len(req.Checks) > 0 || req.Batch || req.Listing {
			return Errorf(EINVALID, "a forwarded HTTP request is decided alone, without checks")
		}
		return nil
	}
	if req.Listing {
		for i, c := range req.Checks {
			fields = append(fields, c.Validate(fmt.Sprintf("checks[%d]", i))...)
		}
	} else {
		fields = ValidateChecks(req.Checks, req.Batch)
	}
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// ValidateChecks checks the checks of a decision request: a batch holds 1
// to MaxBatchChecks checks, named checks[i] in errors; a single check is
// exactly one, its fields named without a prefix. Every check needs a known
// resource type, an id and an action.
func ValidateChecks(checks []Check, batch bool) []FieldError {
	if !batch {
		if len(checks) != 1 {
			return []FieldError{{Field: "resource", Message: "exactly one resource and action are required"}}
		}
		return checks[0].Validate("")
	}
	if len(checks) == 0 || len(checks) > MaxBatchChecks {
		return []FieldError{{Field: "checks", Message: fmt.Sprintf("must hold 1 to %d checks", MaxBatchChecks)}}
	}
	var fields []FieldError
	for i, c := range checks {
		fields = append(fields, c.Validate(fmt.Sprintf("checks[%d]", i))...)
	}
	return fields
}

// Authenticate turns a token into the principal of a live key. It returns
// exactly one of KeyInvalid (malformed, unknown or deleted), KeyDisabled or
// KeyExpired for a refused token, EUNAVAILABLE when the key cannot be looked
// up, and ERATELIMIT, before any lookup, when the request's address has
// spent its failed-authentication budget (see Limiter); it records every
// refusal. It writes nothing on the request path.
func (s *KeyService) Authenticate(ctx context.Context, token string) (*Principal, error) {
	return s.authenticate(ctx, s.now(), token)
}

func (s *KeyService) authenticate(ctx context.Context, now time.Time, token string) (*Principal, error) {
	if err := s.overBudget(ctx, now, token); err != nil {
		return nil, err
	}
	if !ValidTokenFormat(token) {
		s.authFailed(ctx, now, nil, KeyInvalid, "malformed token")
		return nil, Errorf(KeyInvalid, "the API key is not valid")
	}
	hash := HashToken(token)
	key, err := s.keyByHash(ctx, hash)
	switch code := ErrorCode(err); {
	case code == ENOTFOUND:
		s.authFailed(ctx, now, nil, KeyInvalid, "unknown key")
		return nil, Errorf(KeyInvalid, "the API key is not valid")
	case err != nil:
		return nil, &Error{Code: EUNAVAILABLE, Message: "keys cannot be looked up right now"}
	case EqualHashes(key.Hash, hash):
	case key.PreviousHash == "" || !EqualHashes(key.PreviousHash, hash):
		s.authFailed(ctx, now, nil, KeyInvalid, "unknown key")
		return nil, Errorf(KeyInvalid, "the API key is not valid")
	case key.PreviousExpiresAt == nil || !now.Before(*key.PreviousExpiresAt):
		s.authFailed(ctx, now, key, KeyInvalid, "the token was replaced by a rotation and its grace period has ended")
		return nil, Errorf(KeyInvalid, "the API key is not valid")
	}
	if err := key.Check(now); err != nil {
		s.authFailed(ctx, now, key, ErrorCode(err), ErrorMessage(err))
		return nil, err
	}
	if s.Usage != nil {
		s.Usage.Touch(key.ID, now)
	}
	return key.Principal(), nil
}

func (s *KeyService) keyByHash(ctx context.Context, hash string) (*APIKey, error) {
	if s.Lookup != nil {
		return s.Lookup.KeyByHash(ctx, hash)
	}
	return s.Store.FindKeyByHash(ctx, hash)
}

// authFailed records a refused credential. key is nil when no key matched;
// the token and its hash are never part of the event.
func (s *KeyService) authFailed(ctx context.Context, now time.Time, key *APIKey, code, reason string) {
	info := RequestInfoFromContext(ctx)
	s.Limiter.Fail(info.IP)
	if key != nil {
		s.countUsage(key.ID, key.TenantID, now, code)
	}
	if s.Events == nil {
		return
	}
	ev := AuditEvent{
		OccurredAt: now,
		ActorType:  ActorTypeAnonymous,
		Action:     AuditAuthFailed,
		TargetType: TargetAPIKey,
		Outcome:    OutcomeFailure,
		Reason:     reason,
		IP:         info.IP,
		UserAgent:  info.UserAgent,
		RequestID:  info.RequestID,
		TraceID:    info.TraceID,
		Details:    map[string]any{"code": code},
	}
	if key != nil {
		ev.TenantID = key.TenantID
		ev.ActorType = ActorTypeAPIKey
		ev.ActorID = key.ID
		ev.TargetID = key.ID
	}
	s.Events.Record(ev)
}

// countUsage counts a decision of a key, or a refusal of a known key, in
// its usage history.
func (s *KeyService) countUsage(keyID, tenantID string, now time.Time, code string) {
	if s.Rollups != nil {
		s.Rollups.CountUsage(keyID, tenantID, now, code)
	}
}

// authzDenied records one event per decision request that denied anything:
// a single denied check names its resource as the target; a batch names
// its first MaxAuditDeniedChecks denied checks in details.denied and counts
// the others in details.denied_omitted, so a batch of a hundred checks is
// one bounded line of the trail, not a hundred.
func (s *KeyService) authzDenied(ctx context.Context, now time.Time, decisionID string, p *Principal, req DecisionRequest, decisions []Decision) {
	if s.Events == nil {
		return
	}
	var denied []int
	for i, d := range decisions {
		if !d.Allow {
			denied = append(denied, i)
		}
	}
	if len(denied) == 0 {
		return
	}
	ev := deniedEvent(ctx, now, p)
	checks := req.Checks
	if len(checks) == 1 {
		c := checks[0]
		ev.TargetType, ev.TargetID = string(c.Resource.Type), c.Resource.ID
		ev.Reason = strings.Join(decisions[0].Reasons, "; ")
		ev.Details = map[string]any{"action": c.Action, "resource_tenant_id": c.Resource.TenantID, "decision_id": decisionID, "source": req.Source}
	} else {
		named := denied[:min(len(denied), MaxAuditDeniedChecks)]
		list := make([]map[string]any, len(named))
		for n, i := range named {
			c := checks[i]
			list[n] = map[string]any{"type": c.Resource.Type, "id": c.Resource.ID, "tenant_id": c.Resource.TenantID,
				"action": c.Action, "reasons": decisions[i].Reasons}
		}
		ev.TargetType = TargetChecks
		ev.Reason = fmt.Sprintf("%d of %d checks denied", len(denied), len(checks))
		ev.Details = map[string]any{"decision_id": decisionID, "checks": len(checks), "denied": list, "source": req.Source}
		if omitted := len(denied) - len(named); omitted > 0 {
			ev.Details["denied_omitted"] = omitted
		}
	}
	s.Events.Record(ev)
}

// deniedEvent is the start of the event of a decision that denied
// something: who asked, and from where.
func deniedEvent(ctx context.Context, now time.Time, p *Principal) AuditEvent {
	info := RequestInfoFromContext(ctx)
	return AuditEvent{
		OccurredAt: now,
		TenantID:   p.TenantID,
		ActorType:  ActorTypeAPIKey,
		ActorID:    p.KeyID,
		Action:     AuditAuthzDenied,
		Outcome:    OutcomeDenied,
		IP:         info.IP,
		UserAgent:  info.UserAgent,
		RequestID:  info.RequestID,
		TraceID:    info.TraceID,
	}
}
