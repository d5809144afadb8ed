package authz

import (
	"context"
	"fmt"
	"time"
)

// ActionRotate is the management action of replacing a key's token.
const ActionRotate = "rotate"

// AuditKeyRotated records a rotation, with its grace period.
const AuditKeyRotated = "api_key.rotated"

// RotateKey replaces a key's token and returns the key with its new token,
// shown this once. The key keeps its id, name, scope, limits and meta. The
// previous token keeps working for grace (0 to MaxRotationGrace, whole
// seconds), then is refused as KeyInvalid on every instance; a token
// replaced earlier, still in its grace, stops at once. Returns ENOTFOUND,
// EFORBIDDEN (the management policy decides who may rotate: action
// "rotate") and EINVALID for a grace out of range.
func (s *KeyService) RotateKey(ctx context.Context, id string, grace time.Duration) (*APIKey, string, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, "", err
	}
	if grace < 0 || grace > MaxRotationGrace || grace%time.Second != 0 {
		return nil, "", Invalid(FieldError{Field: "grace_period_seconds",
			Message: fmt.Sprintf("must be a whole number of seconds from 0 to %d", int64(MaxRotationGrace/time.Second))})
	}
	token, err := NewToken(s.Rand)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	key, err := s.Store.UpdateKey(ctx, actor.TenantID, id, func(k *APIKey) ([]string, []AuditEvent, error) {
		target := ManagementTarget{Type: TargetAPIKey, TenantID: k.TenantID, UserID: k.UserID}
		if err := s.allow(ctx, actor, ActionRotate, target); err != nil {
			return nil, nil, err
		}
		k.rotate(token, now, grace)
		ev := s.keyEvent(ctx, actor, AuditKeyRotated, k, map[string]any{
			"grace_period_seconds":      int64(grace / time.Second),
			"previous_token_expires_at": k.PreviousExpiresAt,
			"admin":                     actor.HasRole(RoleAdmin),
		})
		return []string{"token"}, []AuditEvent{ev}, nil
	})
	if err != nil {
		return nil, "", err
	}
	s.changed(ctx, keyChange(key))
	return key, token, nil
}

// rotate gives k the new token at now; the one it replaces works until
// now+grace (with no grace, not at all).
func (k *APIKey) rotate(token string, now time.Time, grace time.Duration) {
	stops := now.Add(grace)
	k.PreviousHash = ""
	if grace > 0 {
		k.PreviousHash = k.Hash
	}
	k.PreviousExpiresAt = &stops
	k.Hash, k.Start = HashToken(token), TokenStart(token)
	at := now
	k.RotatedAt, k.UpdatedAt = &at, now
	k.principal = nil
}
