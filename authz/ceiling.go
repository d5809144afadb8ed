package authz

import (
	"context"
	"time"
)

// Audit actions of scope ceilings.
const (
	AuditCeilingSet     = "scope_ceiling.set"
	AuditCeilingDeleted = "scope_ceiling.deleted"
)

// ScopeCeiling is the permission scope an admin lets every key of one user
// stay within. A user without one is unrestricted. Whether an entry lies
// within it is the management policy's rule (see policies/management.rego).
type ScopeCeiling struct {
	TenantID  string    `json:"tenant_id"`
	UserID    string    `json:"user_id"`
	Scope     Scope     `json:"permission_scope"`
	UpdatedBy string    `json:"updated_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ceilingOf returns the acting user's scope ceiling, nil when none is set.
func (s *KeyService) ceilingOf(ctx context.Context, actor *Actor) (*Scope, error) {
	c, err := s.Store.FindScopeCeiling(ctx, actor.TenantID, actor.UserID)
	switch {
	case ErrorCode(err) == ENOTFOUND:
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &c.Scope, nil
}

// ScopeCeiling returns the scope ceiling of a user of the actor's tenant.
// Returns EFORBIDDEN unless the policy allows (a tenant admin) and ENOTFOUND
// when no ceiling is set.
func (s *KeyService) ScopeCeiling(ctx context.Context, userID string) (*ScopeCeiling, error) {
	actor, err := s.ceilingActor(ctx, ActionRead, userID)
	if err != nil {
		return nil, err
	}
	return s.Store.FindScopeCeiling(ctx, actor.TenantID, userID)
}

// SetScopeCeiling sets or replaces the scope ceiling of a user of the
// actor's tenant. It bounds the keys the user creates or changes from now
// on; keys made before keep their scope. Returns EFORBIDDEN unless the
// policy allows and EINVALID for an invalid scope or user id.
func (s *KeyService) SetScopeCeiling(ctx context.Context, userID string, scope Scope) (*ScopeCeiling, error) {
	actor, err := s.ceilingActor(ctx, ActionUpdate, userID)
	if err != nil {
		return nil, err
	}
	if err := scope.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	c := &ScopeCeiling{TenantID: actor.TenantID, UserID: userID, Scope: scope.normalized(), UpdatedBy: actor.UserID, CreatedAt: now, UpdatedAt: now}
	ev := managementEvent(ctx, now, actor, AuditCeilingSet, TargetCeiling, userID, actor.TenantID, ceilingDetails(c.Scope))
	if err := s.Store.SetScopeCeiling(ctx, c, ev); err != nil {
		return nil, err
	}
	return c, nil
}

// DeleteScopeCeiling removes a user's scope ceiling: the user is
// unrestricted again. Returns EFORBIDDEN unless the policy allows and
// ENOTFOUND when no ceiling is set.
func (s *KeyService) DeleteScopeCeiling(ctx context.Context, userID string) error {
	actor, err := s.ceilingActor(ctx, ActionDelete, userID)
	if err != nil {
		return err
	}
	ev := managementEvent(ctx, s.now(), actor, AuditCeilingDeleted, TargetCeiling, userID, actor.TenantID, nil)
	return s.Store.DeleteScopeCeiling(ctx, actor.TenantID, userID, ev)
}

func (s *KeyService) ceilingActor(ctx context.Context, action, userID string) (*Actor, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	if msg := validPrintable(userID, MaxResourceIDLen); msg != "" {
		return nil, Invalid(FieldError{Field: "user_id", Message: msg})
	}
	target := ManagementTarget{Type: TargetCeiling, TenantID: actor.TenantID, UserID: userID}
	if err := s.allow(ctx, actor, action, target); err != nil {
		return nil, err
	}
	return actor, nil
}

// ceilingDetails records a ceiling in its audit event: the entries of each
// list (at most a few per list, and how many there are).
func ceilingDetails(sc Scope) map[string]any {
	const shown = 20
	d := make(map[string]any, 4)
	for _, rt := range ResourceTypes() {
		ids := sc.IDs(rt)
		if len(ids) > shown {
			d[rt.ScopeField()] = map[string]any{"first": ids[:shown], "count": len(ids)}
			continue
		}
		d[rt.ScopeField()] = ids
	}
	return d
}
