package authz

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// Policy answers policy questions. *Engine implements it; tests may use
// another.
type Policy interface {
	// Decide answers one check. Errors are EINTERNAL; callers deny on error.
	Decide(ctx context.Context, p *Principal, r Resource, action string, dc DecisionContext) (Decision, error)
	// DecideBatch answers many checks in one evaluation, in order.
	DecideBatch(ctx context.Context, p *Principal, checks []Check, dc DecisionContext) ([]Decision, error)
	// DecideManagement answers who may manage what.
	DecideManagement(ctx context.Context, in ManagementInput) (Decision, error)
	// MapHTTP says which check a request a gateway forwards means, or why
	// none; errors are EINTERNAL.
	MapHTTP(ctx context.Context, r HTTPRequest) (HTTPMapping, error)
}

// KeyLookup finds a key by token hash on the authentication path; a cache
// may stand in front of the store.
type KeyLookup interface {
	// KeyByHash returns ENOTFOUND when no key has the hash.
	KeyByHash(ctx context.Context, hash string) (*APIKey, error)
}

// KeyChange says which keys changed: one key (Hash set), every key of a user
// (UserID set) or of a tenant (only TenantID set).
type KeyChange struct {
	TenantID string
	UserID   string
	KeyID    string
	Hash     string
}

// KeyChangeNotifier hears of every key change a KeyService made, so caches
// here and on other instances drop what they hold at once.
type KeyChangeNotifier interface {
	KeysChanged(ctx context.Context, change KeyChange)
}

// UsageRecorder coalesces last-used times off the request path.
type UsageRecorder interface {
	Touch(keyID string, at time.Time)
}

// KeyService creates, manages and authenticates API keys and decides what
// they may do. Management methods act for the Actor in the context and ask
// the management policy before touching anything; Authenticate and Decide
// serve the hot path and write nothing to the database.
type KeyService struct {
	Store    KeyStore
	AuditLog AuditStore
	Policy   Policy
	Lookup   KeyLookup         // nil: Store.FindKeyByHash
	Notifier KeyChangeNotifier // nil: nobody listens
	Events   AuditRecorder     // nil: refused attempts are not recorded
	Usage    UsageRecorder     // nil: last_used_at is not kept
	Now      func() time.Time  // nil: time.Now
	Rand     io.Reader         // nil: crypto/rand

	// Limiter budgets failed authentications per client address; nil:
	// no limit.
	Limiter *FailureLimiter

	// RateLimiter counts the requests of keys with a rate limit; nil:
	// rate limits are not enforced.
	RateLimiter RateLimiter
	// Credits spends the credits of keys that have them; nil: such keys
	// are refused with EUNAVAILABLE, never let through unpaid.
	Credits *CreditSpender
	// Rollups counts every decision of a key for its usage history, which
	// KeyUsage reads from UsageLog; nil: none is kept.
	Rollups  UsageCounter
	UsageLog UsageRollupStore
	// OnLimited hears of every request refused with CodeRateLimited or
	// CodeUsageExceeded (a metric).
	OnLimited func(ctx context.Context, code string)

	// DecisionLog records every decision Decide makes; nil: none.
	DecisionLog DecisionLogger
	// Metrics counts the decision requests Decide answers; nil: none.
	Metrics DecisionMetrics
}

func (s *KeyService) now() time.Time { return clock(s.Now) }

// CreateKey creates a key owned by the acting user and returns it with its
// token, the only time the token is ever available. Returns EUNAUTHORIZED
// without an actor, EINVALID for bad input, EFORBIDDEN when the policy
// refuses and ECONFLICT for a name the tenant already uses.
func (s *KeyService) CreateKey(ctx context.Context, in CreateKeyInput) (*APIKey, string, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	if err := in.Validate(now); err != nil {
		return nil, "", err
	}
	ceiling, err := s.ceilingOf(ctx, actor)
	if err != nil {
		return nil, "", err
	}
	enabled := true
	if err := allowInput(ctx, s.Policy, ManagementInput{
		Actor: *actor, Action: ActionCreate,
		Target: ManagementTarget{Type: TargetAPIKey, TenantID: actor.TenantID, UserID: actor.UserID},
		Change: &APIKeyUpdate{Name: &in.Name, Enabled: &enabled, SetExpiresAt: in.ExpiresAt != nil, ExpiresAt: in.ExpiresAt, Scope: &in.Scope,
			SetExternalID: in.ExternalID != nil, ExternalID: in.ExternalID, SetMeta: in.Meta != nil, Meta: in.Meta,
			SetRateLimit: in.RateLimit != nil, RateLimit: in.RateLimit, SetCredits: in.Credits != nil, Credits: in.Credits},
		Ceiling: ceiling,
	}); err != nil {
		return nil, "", err
	}
	token, err := NewToken(s.Rand)
	if err != nil {
		return nil, "", err
	}
	id, err := NewID(now, s.Rand)
	if err != nil {
		return nil, "", err
	}
	key := &APIKey{
		ID:        id,
		Name:      in.Name,
		Start:     TokenStart(token),
		TenantID:  actor.TenantID,
		UserID:    actor.UserID,
		Scope:     in.Scope.normalized(),
		Enabled:   true,
		ExpiresAt: copyTime(in.ExpiresAt),
		CreatedAt: now,
		UpdatedAt: now,
		Hash:      HashToken(token),
	}
	key.ExternalID, key.RateLimit, key.Credits = copyPtr(in.ExternalID), copyPtr(in.RateLimit), newCredits(in.Credits, now)
	key.Meta, _ = CompactMeta(in.Meta)
	var set []string
	for _, f := range []struct {
		name  string
		isSet bool
	}{{"expires_at", key.ExpiresAt != nil}, {"rate_limit", key.RateLimit != nil}, {"credits", key.Credits != nil}} {
		if f.isSet {
			set = append(set, f.name)
		}
	}
	key.recordSetters(set, actor)
	details := map[string]any{"name": key.Name}
	addLimitDetails(details, set, key)
	ev := s.keyEvent(ctx, actor, AuditKeyCreated, key, details)
	if err := s.Store.CreateKey(ctx, key, ev); err != nil {
		if ErrorCode(err) == ECONFLICT {
			return nil, "", s.nameTaken(ctx, actor, key.Name, err)
		}
		return nil, "", err
	}
	return key, token, nil
}

// nameTaken turns a taken name into a conflict that names the key holding
// it, when the actor may read that key: a create whose answer was lost (it
// committed, the reply never arrived) and is sent again learns the id of
// the key it made, rather than making a second. The token cannot be given
// again; it exists only as a hash.
func (s *KeyService) nameTaken(ctx context.Context, actor *Actor, name string, conflict error) error {
	page, err := s.Store.FindKeys(ctx, APIKeyFilter{TenantID: actor.TenantID, Name: &name, Limit: 1})
	if err != nil || len(page.Keys) == 0 {
		return conflict
	}
	existing := page.Keys[0]
	target := ManagementTarget{Type: TargetAPIKey, TenantID: existing.TenantID, UserID: existing.UserID}
	if s.allow(ctx, actor, ActionRead, target) != nil {
		return conflict
	}
	return &Error{Code: ECONFLICT, ExistingID: existing.ID,
		Message: fmt.Sprintf("a key named %q already exists in this tenant: %s", name, existing.ID)}
}

// Key returns one key of the actor's tenant. Returns ENOTFOUND when absent
// or in another tenant and EFORBIDDEN when the policy refuses.
func (s *KeyService) Key(ctx context.Context, id string) (*APIKey, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	key, err := s.keyFor(ctx, actor, id, ActionRead)
	if err != nil {
		return nil, err
	}
	return key, nil
}

// ListKeys lists keys of the actor's tenant. Without a user filter an admin sees
// every key and anyone else their own. Returns EFORBIDDEN for another user's
// keys without the right and EINVALID for a bad cursor.
func (s *KeyService) ListKeys(ctx context.Context, filter APIKeyFilter) (*APIKeyPage, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	filter.TenantID = actor.TenantID
	filter.Limit = clampLimit(filter.Limit)
	if filter.UserID, err = listScope(ctx, s.Policy, actor, TargetAPIKey, filter.UserID); err != nil {
		return nil, err
	}
	return s.Store.FindKeys(ctx, filter)
}

// UpdateKey changes a key and records which fields changed, and who
// disabled it or set its expiry. The policy sees the key as locked for the
// update, the change and the actor's scope ceiling, so an owner cannot undo
// an admin's disable or expiry, nor widen the key past the ceiling (EINVALID
// naming each entry). Returns ENOTFOUND, EFORBIDDEN, EINVALID and ECONFLICT
// as CreateKey and Key do.
func (s *KeyService) UpdateKey(ctx context.Context, id string, upd APIKeyUpdate) (*APIKey, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := upd.Validate(now); err != nil {
		return nil, err
	}
	var ceiling *Scope
	if upd.Scope != nil {
		if ceiling, err = s.ceilingOf(ctx, actor); err != nil {
			return nil, err
		}
	}
	key, err := s.Store.UpdateKey(ctx, actor.TenantID, id, func(k *APIKey) ([]string, []AuditEvent, error) {
		if err := allowInput(ctx, s.Policy, ManagementInput{
			Actor: *actor, Action: ActionUpdate,
			Target: ManagementTarget{Type: TargetAPIKey, TenantID: k.TenantID, UserID: k.UserID},
			Key:    k, Change: &upd, Ceiling: ceiling,
		}); err != nil {
			return nil, nil, err
		}
		changed := k.Apply(upd, now)
		if len(changed) == 0 {
			return nil, nil, nil
		}
		k.recordSetters(changed, actor)
		details := map[string]any{"changed": changed, "admin": actor.HasRole(RoleAdmin)}
		addLimitDetails(details, changed, k)
		ev := s.keyEvent(ctx, actor, AuditKeyUpdated, k, details)
		return changed, []AuditEvent{ev}, nil
	})
	if err != nil {
		return nil, err
	}
	s.changed(ctx, keyChange(key))
	return key, nil
}

// DeleteKey deletes a key; it stops working at once. Returns ENOTFOUND and
// EFORBIDDEN as Key does.
func (s *KeyService) DeleteKey(ctx context.Context, id string) error {
	actor, err := requireActor(ctx)
	if err != nil {
		return err
	}
	key, err := s.keyFor(ctx, actor, id, ActionDelete)
	if err != nil {
		return err
	}
	ev := s.keyEvent(ctx, actor, AuditKeyDeleted, key, map[string]any{"name": key.Name})
	if err := s.Store.DeleteKey(ctx, actor.TenantID, id, ev); err != nil {
		return err
	}
	s.changed(ctx, keyChange(key))
	return nil
}

// DeleteUser offboards a user of the actor's tenant with all their keys and
// returns how many keys went.
// Returns EFORBIDDEN unless the policy allows (a tenant admin) and ENOTFOUND
// for a user the tenant does not have.
func (s *KeyService) DeleteUser(ctx context.Context, userID string) (int, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return 0, err
	}
	target := ManagementTarget{Type: TargetUser, TenantID: actor.TenantID, UserID: userID}
	if err := s.allow(ctx, actor, ActionDelete, target); err != nil {
		return 0, err
	}
	ev := managementEvent(ctx, s.now(), actor, AuditUserDeleted, TargetUser, userID, actor.TenantID, nil)
	n, err := s.Store.DeleteUser(ctx, actor.TenantID, userID, ev)
	if err != nil {
		return 0, err
	}
	s.changed(ctx, KeyChange{TenantID: actor.TenantID, UserID: userID})
	return n, nil
}

// DeleteTenant offboards a whole tenant with its users and keys. Returns
// EFORBIDDEN unless the policy allows (a platform admin) and ENOTFOUND for
// an unknown tenant.
func (s *KeyService) DeleteTenant(ctx context.Context, tenantID string) (int, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return 0, err
	}
	target := ManagementTarget{Type: TargetTenant, TenantID: tenantID}
	if err := s.allow(ctx, actor, ActionDelete, target); err != nil {
		return 0, err
	}
	ev := managementEvent(ctx, s.now(), actor, AuditTenantDeleted, TargetTenant, tenantID, tenantID, nil)
	n, err := s.Store.DeleteTenant(ctx, tenantID, ev)
	if err != nil {
		return 0, err
	}
	s.changed(ctx, KeyChange{TenantID: tenantID})
	return n, nil
}

// AuditEvents lists the actor's tenant's audit trail, or with Tenantless
// the events of no tenant. Returns EFORBIDDEN unless the policy allows and
// EINVALID for a bad cursor.
func (s *KeyService) AuditEvents(ctx context.Context, filter AuditFilter) (*AuditPage, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	target := ManagementTarget{Type: TargetAuditEvents, TenantID: actor.TenantID}
	filter.TenantID = actor.TenantID
	if filter.Tenantless {
		target, filter.TenantID = ManagementTarget{Type: TargetPlatformAuditEvents}, ""
	}
	if err := s.allow(ctx, actor, ActionList, target); err != nil {
		return nil, err
	}
	filter.Limit = clampLimit(filter.Limit)
	return s.AuditLog.FindAuditEvents(ctx, filter)
}

func (s *KeyService) changed(ctx context.Context, change KeyChange) {
	if s.Notifier != nil {
		s.Notifier.KeysChanged(ctx, change)
	}
}

// addLimitDetails records in an audit event's details the rate limit and
// credits a change set, as they now are (null: cleared).
func addLimitDetails(details map[string]any, changed []string, k *APIKey) {
	if slices.Contains(changed, "rate_limit") {
		details["rate_limit"] = copyPtr(k.RateLimit)
	}
	if slices.Contains(changed, "credits") {
		details["credits"] = copyPtr(k.Credits)
	}
}

// keyChange names k by id, not by hash: a key rotated with a grace period
// is cached under two hashes.
func keyChange(k *APIKey) KeyChange {
	return KeyChange{TenantID: k.TenantID, UserID: k.UserID, KeyID: k.ID}
}

// keyFor loads a key of the actor's tenant the policy lets the actor take
// action on. Returns ENOTFOUND when absent or in another tenant and
// EFORBIDDEN when the policy refuses.
func (s *KeyService) keyFor(ctx context.Context, actor *Actor, id, action string) (*APIKey, error) {
	key, err := s.Store.FindKeyByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	target := ManagementTarget{Type: TargetAPIKey, TenantID: key.TenantID, UserID: key.UserID}
	if err := s.allow(ctx, actor, action, target); err != nil {
		return nil, err
	}
	return key, nil
}

// allow asks the management policy about target.
func (s *KeyService) allow(ctx context.Context, actor *Actor, action string, target ManagementTarget) error {
	return allowManagement(ctx, s.Policy, actor, action, target)
}

func (s *KeyService) keyEvent(ctx context.Context, actor *Actor, action string, key *APIKey, details map[string]any) AuditEvent {
	return managementEvent(ctx, s.now(), actor, action, TargetAPIKey, key.ID, key.TenantID, details)
}
