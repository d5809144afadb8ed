package authz

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"
)

// What the management services (KeyService, MCPServerService) share: who is
// acting, what the management policy says, how listings are bounded and how
// a change is recorded.

// requireActor returns the user acting through the management API.
// Returns EUNAUTHORIZED when the context carries none.
func requireActor(ctx context.Context) (*Actor, error) {
	a := ActorFromContext(ctx)
	if a == nil || a.TenantID == "" || a.UserID == "" {
		return nil, Errorf(EUNAUTHORIZED, "no authenticated user")
	}
	return a, nil
}

// allowManagement asks the management policy and turns a refusal into
// EFORBIDDEN with the policy's reasons. An evaluation error is a refusal too.
func allowManagement(ctx context.Context, policy Policy, actor *Actor, action string, target ManagementTarget) error {
	return allowInput(ctx, policy, ManagementInput{Actor: *actor, Action: action, Target: target})
}

// allowInput asks the management policy about in. A refusal that names
// fields (a scope entry outside the ceiling) is EINVALID naming them; any
// other refusal is EFORBIDDEN.
func allowInput(ctx context.Context, policy Policy, in ManagementInput) error {
	d, err := policy.DecideManagement(ctx, in)
	if err != nil {
		return err
	}
	if !d.Allow {
		msg := "not allowed"
		if len(d.Reasons) > 0 {
			msg = strings.Join(d.Reasons, "; ")
		}
		if len(d.Fields) > 0 {
			return &Error{Code: EINVALID, Message: msg, Fields: d.Fields}
		}
		return Errorf(EFORBIDDEN, "%s", msg)
	}
	return nil
}

// listScope decides whose things of targetType the actor may list: the
// user asked for (userID), or with none asked, everyone's when the policy
// allows and else the actor's own. Returns EFORBIDDEN for another user's
// things without the right.
func listScope(ctx context.Context, policy Policy, actor *Actor, targetType string, userID *string) (*string, error) {
	target := ManagementTarget{Type: targetType, TenantID: actor.TenantID}
	if userID != nil {
		target.UserID = *userID
	}
	err := allowManagement(ctx, policy, actor, ActionList, target)
	if err == nil {
		return userID, nil
	}
	if userID != nil || ErrorCode(err) != EFORBIDDEN {
		return nil, err
	}
	own := actor.UserID
	target.UserID = own
	if err := allowManagement(ctx, policy, actor, ActionList, target); err != nil {
		return nil, err
	}
	return &own, nil
}

// clampLimit bounds a page size to 1..MaxLimit, DefaultLimit when unset.
func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}

// managementEvent is the audit event of a change the actor made to a target
// of tenantID, with the request's facts.
func managementEvent(ctx context.Context, at time.Time, actor *Actor, action, targetType, targetID, tenantID string, details map[string]any) AuditEvent {
	info := RequestInfoFromContext(ctx)
	return AuditEvent{
		OccurredAt: at,
		TenantID:   tenantID,
		ActorType:  ActorTypeUser,
		ActorID:    actor.UserID,
		Action:     action,
		TargetType: targetType,
		TargetID:   targetID,
		Outcome:    OutcomeSuccess,
		IP:         info.IP,
		UserAgent:  info.UserAgent,
		RequestID:  info.RequestID,
		TraceID:    info.TraceID,
		Details:    details,
	}
}

// clock returns now() in UTC, time.Now when now is nil.
func clock(now func() time.Time) time.Time {
	if now != nil {
		return now().UTC()
	}
	return time.Now().UTC()
}

// NonNil returns s, or an empty slice for nil, so JSON shows [] not null.
func NonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
