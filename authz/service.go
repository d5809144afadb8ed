package authz

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Decider answers policy questions. *Engine implements it; tests may use
// another.
type Decider interface {
	// Decide answers one check. Errors are EINTERNAL; callers deny on error.
	Decide(ctx context.Context, p *Principal, r Resource, action string, dc DecisionContext) (Decision, error)
	// DecideBatch answers many checks in one evaluation, in order.
	DecideBatch(ctx context.Context, p *Principal, checks []Check, dc DecisionContext) ([]Decision, error)
	// DecideManagement answers who may manage what.
	DecideManagement(ctx context.Context, in ManagementInput) (Decision, error)
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
// the management policy before touching anything; Authenticate and
// Authorize serve the hot path and write nothing to the database.
type KeyService struct {
	Store    KeyStore
	AuditLog AuditStore
	Policy   Decider
	Lookup   KeyLookup         // nil: Store.FindKeyByHash
	Notifier KeyChangeNotifier // nil: nobody listens
	Events   AuditRecorder     // nil: refused attempts are not recorded
	Usage    UsageRecorder     // nil: last_used_at is not kept
	Now      func() time.Time  // nil: time.Now
	Rand     io.Reader         // nil: crypto/rand
}

func (s *KeyService) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

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
	target := ManagementTarget{Type: TargetAPIKey, TenantID: actor.TenantID, UserID: actor.UserID}
	if err := s.allow(ctx, actor, ActionCreate, target); err != nil {
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
	ev := s.keyEvent(ctx, actor, AuditKeyCreated, key, map[string]any{"name": key.Name})
	if err := s.Store.CreateKey(ctx, key, ev); err != nil {
		return nil, "", err
	}
	return key, token, nil
}

// Key returns one key of the actor's tenant. Returns ENOTFOUND when absent
// or in another tenant and EFORBIDDEN when the policy refuses.
func (s *KeyService) Key(ctx context.Context, id string) (*APIKey, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	key, err := s.Store.FindKeyByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	if err := s.allowKey(ctx, actor, ActionRead, key); err != nil {
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

// UpdateKey changes a key and records which fields changed. Returns
// ENOTFOUND, EFORBIDDEN, EINVALID and ECONFLICT as CreateKey and Key do.
func (s *KeyService) UpdateKey(ctx context.Context, id string, upd APIKeyUpdate) (*APIKey, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := upd.Validate(now); err != nil {
		return nil, err
	}
	current, err := s.Store.FindKeyByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	if err := s.allowKey(ctx, actor, ActionUpdate, current); err != nil {
		return nil, err
	}
	key, err := s.Store.UpdateKey(ctx, actor.TenantID, id, func(k *APIKey) ([]string, []AuditEvent, error) {
		changed := k.Apply(upd, now)
		if len(changed) == 0 {
			return nil, nil, nil
		}
		ev := s.keyEvent(ctx, actor, AuditKeyUpdated, k, map[string]any{"changed": changed})
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
	key, err := s.Store.FindKeyByID(ctx, actor.TenantID, id)
	if err != nil {
		return err
	}
	if err := s.allowKey(ctx, actor, ActionDelete, key); err != nil {
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
	ev := s.event(ctx, actor, AuditUserDeleted, TargetUser, userID, nil)
	ev.TenantID = actor.TenantID
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
	ev := s.event(ctx, actor, AuditTenantDeleted, TargetTenant, tenantID, nil)
	ev.TenantID = tenantID
	n, err := s.Store.DeleteTenant(ctx, tenantID, ev)
	if err != nil {
		return 0, err
	}
	s.changed(ctx, KeyChange{TenantID: tenantID})
	return n, nil
}

// AuditEvents lists the actor's tenant's audit trail. Returns EFORBIDDEN
// unless the policy allows and EINVALID for a bad cursor.
func (s *KeyService) AuditEvents(ctx context.Context, filter AuditFilter) (*AuditPage, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	target := ManagementTarget{Type: TargetAuditEvents, TenantID: actor.TenantID}
	if err := s.allow(ctx, actor, ActionList, target); err != nil {
		return nil, err
	}
	filter.TenantID = actor.TenantID
	filter.Limit = clampLimit(filter.Limit)
	return s.AuditLog.FindAuditEvents(ctx, filter)
}

// Authenticate turns a token into the principal of a live key. It returns
// exactly one of KeyInvalid (malformed, unknown or deleted), KeyDisabled or
// KeyExpired for a refused token, EUNAVAILABLE when the key cannot be looked
// up, and records every refusal. It writes nothing on the request path.
func (s *KeyService) Authenticate(ctx context.Context, token string) (*Principal, error) {
	now := s.now()
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
	case !EqualHashes(key.Hash, hash):
		s.authFailed(ctx, now, nil, KeyInvalid, "unknown key")
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

// Authorize decides checks for an authenticated principal: one evaluation
// for any number of checks. Denials are recorded off the request path.
// Returns EINVALID for a bad check or more than MaxBatchChecks.
func (s *KeyService) Authorize(ctx context.Context, p *Principal, checks []Check) (*AuthorizeResult, error) {
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "no authenticated API key")
	}
	switch {
	case len(checks) == 0:
		return nil, Invalid(FieldError{Field: "checks", Message: "must hold at least one check"})
	case len(checks) > MaxBatchChecks:
		return nil, Invalid(FieldError{Field: "checks", Message: fmt.Sprintf("at most %d checks per request", MaxBatchChecks)})
	}
	var fields []FieldError
	for i, c := range checks {
		prefix := ""
		if len(checks) > 1 {
			prefix = fmt.Sprintf("checks[%d]", i)
		}
		fields = append(fields, c.Validate(prefix)...)
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	now := s.now()
	decisionID, err := NewID(now, s.Rand)
	if err != nil {
		return nil, err
	}
	dc := DecisionContext{Time: now, IP: RequestInfoFromContext(ctx).IP}
	var decisions []Decision
	if len(checks) == 1 {
		d, err := s.Policy.Decide(ctx, p, checks[0].Resource, checks[0].Action, dc)
		if err != nil {
			return nil, err
		}
		decisions = []Decision{d}
	} else {
		ds, err := s.Policy.DecideBatch(ctx, p, checks, dc)
		if err != nil {
			return nil, err
		}
		decisions = ds
	}
	s.authzDenied(ctx, now, decisionID, p, checks, decisions)
	return &AuthorizeResult{DecisionID: decisionID, Decisions: decisions}, nil
}

// AuthorizeResult is the answer to a set of checks. DecisionID names it in
// the audit trail and in the caller's logs.
type AuthorizeResult struct {
	DecisionID string
	Decisions  []Decision
}

// Allowed reports whether every check was allowed.
func (r *AuthorizeResult) Allowed() bool {
	for _, d := range r.Decisions {
		if !d.Allow {
			return false
		}
	}
	return len(r.Decisions) > 0
}

func (s *KeyService) keyByHash(ctx context.Context, hash string) (*APIKey, error) {
	if s.Lookup != nil {
		return s.Lookup.KeyByHash(ctx, hash)
	}
	return s.Store.FindKeyByHash(ctx, hash)
}

func (s *KeyService) changed(ctx context.Context, change KeyChange) {
	if s.Notifier != nil {
		s.Notifier.KeysChanged(ctx, change)
	}
}

func keyChange(k *APIKey) KeyChange {
	return KeyChange{TenantID: k.TenantID, UserID: k.UserID, KeyID: k.ID, Hash: k.Hash}
}

// allowKey asks the management policy about an existing key.
func (s *KeyService) allowKey(ctx context.Context, actor *Actor, action string, key *APIKey) error {
	return s.allow(ctx, actor, action, ManagementTarget{Type: TargetAPIKey, TenantID: key.TenantID, UserID: key.UserID})
}

// allow asks the management policy about target.
func (s *KeyService) allow(ctx context.Context, actor *Actor, action string, target ManagementTarget) error {
	return allowManagement(ctx, s.Policy, actor, action, target)
}

// allowManagement asks the management policy and turns a refusal into
// EFORBIDDEN with the policy's reasons. An evaluation error is a refusal too.
func allowManagement(ctx context.Context, policy Decider, actor *Actor, action string, target ManagementTarget) error {
	d, err := policy.DecideManagement(ctx, ManagementInput{Actor: *actor, Action: action, Target: target})
	if err != nil {
		return err
	}
	if !d.Allow {
		msg := "not allowed"
		if len(d.Reasons) > 0 {
			msg = strings.Join(d.Reasons, "; ")
		}
		return Errorf(EFORBIDDEN, "%s", msg)
	}
	return nil
}

// listScope decides whose things of targetType the actor may list: the
// user asked for (userID), or with none asked, everyone's when the policy
// allows and else the actor's own. Returns EFORBIDDEN for another user's
// things without the right.
func listScope(ctx context.Context, policy Decider, actor *Actor, targetType string, userID *string) (*string, error) {
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

func (s *KeyService) keyEvent(ctx context.Context, actor *Actor, action string, key *APIKey, details map[string]any) AuditEvent {
	ev := s.event(ctx, actor, action, TargetAPIKey, key.ID, details)
	ev.TenantID = key.TenantID
	return ev
}

func (s *KeyService) event(ctx context.Context, actor *Actor, action, targetType, targetID string, details map[string]any) AuditEvent {
	info := RequestInfoFromContext(ctx)
	return AuditEvent{
		OccurredAt: s.now(),
		TenantID:   actor.TenantID,
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

// authFailed records a refused credential. key is nil when no key matched;
// the token and its hash are never part of the event.
func (s *KeyService) authFailed(ctx context.Context, now time.Time, key *APIKey, code, reason string) {
	if s.Events == nil {
		return
	}
	info := RequestInfoFromContext(ctx)
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

// authzDenied records one event per decision request that denied anything:
// a single denied check names its resource as the target; a batch names
// every denied check in details.denied, so a batch of a hundred checks is
// one line of the trail, not a hundred, and nothing is left out.
func (s *KeyService) authzDenied(ctx context.Context, now time.Time, decisionID string, p *Principal, checks []Check, decisions []Decision) {
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
	info := RequestInfoFromContext(ctx)
	ev := AuditEvent{
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
	if len(checks) == 1 {
		c := checks[0]
		ev.TargetType, ev.TargetID = string(c.Resource.Type), c.Resource.ID
		ev.Reason = strings.Join(decisions[0].Reasons, "; ")
		ev.Details = map[string]any{"action": c.Action, "resource_tenant_id": c.Resource.TenantID, "decision_id": decisionID}
	} else {
		list := make([]map[string]any, len(denied))
		for n, i := range denied {
			c := checks[i]
			list[n] = map[string]any{"type": c.Resource.Type, "id": c.Resource.ID, "tenant_id": c.Resource.TenantID,
				"action": c.Action, "reasons": decisions[i].Reasons}
		}
		ev.TargetType = TargetChecks
		ev.Reason = fmt.Sprintf("%d of %d checks denied", len(denied), len(checks))
		ev.Details = map[string]any{"decision_id": decisionID, "checks": len(checks), "denied": list}
	}
	s.Events.Record(ev)
}

func requireActor(ctx context.Context) (*Actor, error) {
	a := ActorFromContext(ctx)
	if a == nil || a.TenantID == "" || a.UserID == "" {
		return nil, Errorf(EUNAUTHORIZED, "no authenticated user")
	}
	return a, nil
}

func clampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultLimit
	case n > MaxLimit:
		return MaxLimit
	}
	return n
}
