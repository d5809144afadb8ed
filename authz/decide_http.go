package authz

import (
	"context"
	"strings"
	"time"
)

// mapHTTP asks the policy which check a forwarded request means: the
// check, or the reasons it means none (never empty). A check the mapping
// makes is validated as a caller's would be, and an invalid one denies.
func (s *KeyService) mapHTTP(ctx context.Context, r HTTPRequest) (*Check, []string, error) {
	m, err := s.Policy.MapHTTP(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	if m.Check == nil {
		if len(m.Reasons) == 0 {
			return nil, []string{ReasonNoDecision}, nil
		}
		return nil, m.Reasons, nil
	}
	if fields := m.Check.Validate(""); len(fields) > 0 {
		return nil, []string{"the request maps to an invalid check: " + fields[0].Field + " " + fields[0].Message}, nil
	}
	return m.Check, nil, nil
}

// httpDenied records a forwarded request that maps to no check: its
// method and path (never its query) as the target.
func (s *KeyService) httpDenied(ctx context.Context, now time.Time, decisionID string, p *Principal, req DecisionRequest, reasons []string) {
	if s.Events == nil {
		return
	}
	path := req.HTTP.URI
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	ev := deniedEvent(ctx, now, p)
	ev.TargetType = TargetHTTPRequest
	ev.TargetID = Truncate(Truncate(req.HTTP.Method, MaxHTTPMethodLen)+" "+path, MaxResourceIDLen)
	ev.Reason = strings.Join(reasons, "; ")
	ev.Details = map[string]any{"decision_id": decisionID, "source": req.Source}
	s.Events.Record(ev)
}

// countDecision tells Metrics how a request was answered.
func (s *KeyService) countDecision(ctx context.Context, source string, start time.Time, res **DecisionResult, err *error) {
	code := ErrorCode(*err)
	if code == "" && *res != nil {
		code = (*res).Code
	}
	s.Metrics.Decided(ctx, source, code, time.Since(start))
}
