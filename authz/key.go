package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds on keys and listings.
const (
	MaxKeyNameLen = 100
	DefaultLimit  = 20
	MaxLimit      = 100
)

// APIKey is a key's stored state. The token itself is never kept; Hash is
// its SHA-256 and is never serialized.
type APIKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Start      string     `json:"start"`
	TenantID   string     `json:"tenant_id"`
	UserID     string     `json:"user_id"`
	Scope      Scope      `json:"permission_scope"`
	Enabled    bool       `json:"enabled"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Hash       string     `json:"-"`

	// ExternalID is the platform's own id for the key's customer or
	// owner; Meta is a JSON object the platform keeps with the key, which
	// decision answers return and the policy reads. nil: none.
	ExternalID *string         `json:"external_id"`
	Meta       json.RawMessage `json:"meta"`

	// RateLimit and Credits bound the key's use; nil: unbounded.
	RateLimit *RateLimit `json:"rate_limit"`
	Credits   *Credits   `json:"credits"`

	// RotatedAt is when the token was last replaced. The previous token
	// (PreviousHash, never serialized) keeps working until
	// PreviousExpiresAt.
	RotatedAt         *time.Time `json:"rotated_at"`
	PreviousExpiresAt *time.Time `json:"previous_token_expires_at"`
	PreviousHash      string     `json:"-"`

	// Who last disabled the key and who set its expiry, rate limit and
	// credits (nil: nobody recorded), so the management policy can keep an
	// admin's decision from being undone by the key's owner.
	DisabledBy     *Setter `json:"disabled_by"`
	ExpiresAtSetBy *Setter `json:"expires_at_set_by"`
	RateLimitSetBy *Setter `json:"rate_limit_set_by"`
	CreditsSetBy   *Setter `json:"credits_set_by"`

	// principal is built once for a key snapshot the KeyCache shares, so
	// its policy input is built once too; nil elsewhere.
	principal *Principal
}

// Check returns nil for a key that may be used at now, else an *Error with
// code KeyDisabled or KeyExpired. Disabled wins over expired.
func (k *APIKey) Check(now time.Time) error {
	if !k.Enabled {
		return Errorf(KeyDisabled, "the key is disabled")
	}
	if k.Expired(now) {
		return Errorf(KeyExpired, "the key has expired")
	}
	return nil
}

// Expired reports whether the key's expiry is at or before now.
func (k *APIKey) Expired(now time.Time) bool {
	return k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)
}

// Enable turns the key on; it reports whether anything changed.
func (k *APIKey) Enable() bool { return k.setEnabled(true) }

// Disable turns the key off; it reports whether anything changed.
func (k *APIKey) Disable() bool { return k.setEnabled(false) }

func (k *APIKey) setEnabled(v bool) bool {
	if k.Enabled == v {
		return false
	}
	k.Enabled = v
	return true
}

// MarkUsed moves LastUsedAt forward to at; an older time never wins.
func (k *APIKey) MarkUsed(at time.Time) {
	if k.LastUsedAt == nil || at.After(*k.LastUsedAt) {
		t := at
		k.LastUsedAt = &t
	}
}

// Principal returns who the key speaks for. For a cached key it is the one
// shared principal; callers must not change it.
func (k *APIKey) Principal() *Principal {
	if k.principal != nil {
		return k.principal
	}
	return k.buildPrincipal()
}

func (k *APIKey) buildPrincipal() *Principal {
	return &Principal{
		KeyID:     k.ID,
		KeyName:   k.Name,
		TenantID:  k.TenantID,
		UserID:    k.UserID,
		Scope:     k.Scope,
		ExpiresAt: k.ExpiresAt,
		Meta:      k.Meta,
		RateLimit: copyPtr(k.RateLimit),
		Credits:   k.Credits != nil,

		ExternalID: deref(k.ExternalID),
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Setter records who made a decision about a key and whether they acted as
// an admin of its tenant.
type Setter struct {
	UserID string `json:"user_id"`
	Admin  bool   `json:"admin"`
}

// setterOf is the record of actor's decision.
func setterOf(a *Actor) *Setter {
	return &Setter{UserID: a.UserID, Admin: a.HasRole(RoleAdmin)}
}

// recordSetters notes who made the changes named in changed: the disabler
// of a disabled key, and the setter of an expiry, a rate limit or credits.
// An admin's setting stays the admin's when the owner tightens it, so it
// cannot then be loosened by the owner.
func (k *APIKey) recordSetters(changed []string, actor *Actor) {
	by := setterOf(actor)
	if slices.Contains(changed, "enabled") {
		k.DisabledBy = nil
		if !k.Enabled {
			k.DisabledBy = by
		}
	}
	for _, s := range []struct {
		field string
		setBy **Setter
	}{{"expires_at", &k.ExpiresAtSetBy}, {"rate_limit", &k.RateLimitSetBy}, {"credits", &k.CreditsSetBy}} {
		if slices.Contains(changed, s.field) && (by.Admin || *s.setBy == nil || !(*s.setBy).Admin) {
			*s.setBy = by
		}
	}
}

// APIKeyUpdate is a partial change; nil fields stay as they are. A field
// with a Set flag applies only when the flag is true, so that nil can
// clear it.
type APIKeyUpdate struct {
	Name         *string
	Enabled      *bool
	SetExpiresAt bool
	ExpiresAt    *time.Time
	Scope        *Scope

	SetExternalID bool
	ExternalID    *string
	SetMeta       bool
	Meta          json.RawMessage
	SetRateLimit  bool
	RateLimit     *RateLimit
	SetCredits    bool
	Credits       *Credits // RefilledAt is ignored: a refill counts from the update
}

// Validate checks the fields the update sets.
func (u APIKeyUpdate) Validate(now time.Time) error {
	var fields []FieldError
	if u.Name != nil {
		if msg := validKeyName(*u.Name); msg != "" {
			fields = append(fields, FieldError{Field: "name", Message: msg})
		}
	}
	if u.SetExpiresAt && u.ExpiresAt != nil && !u.ExpiresAt.After(now) {
		fields = append(fields, FieldError{Field: "expires_at", Message: "must lie in the future"})
	}
	if u.Scope != nil {
		fields = append(fields, ErrorFields(u.Scope.Validate())...)
	}
	fields = append(fields, limitFields(u.ExternalID, u.Meta, u.RateLimit, u.Credits)...)
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// Apply makes the update on k and returns the names of the fields that
// changed, in a fixed order; UpdatedAt moves to now when any did.
func (k *APIKey) Apply(u APIKeyUpdate, now time.Time) []string {
	var changed []string
	if u.Name != nil && *u.Name != k.Name {
		k.Name = *u.Name
		changed = append(changed, "name")
	}
	if u.Enabled != nil && k.setEnabled(*u.Enabled) {
		changed = append(changed, "enabled")
	}
	if u.SetExpiresAt && !equalTimes(k.ExpiresAt, u.ExpiresAt) {
		k.ExpiresAt = copyTime(u.ExpiresAt)
		changed = append(changed, "expires_at")
	}
	if u.Scope != nil && !equalScopes(k.Scope, *u.Scope) {
		k.Scope = u.Scope.normalized()
		changed = append(changed, "permission_scope")
	}
	changed = append(changed, k.applyLimits(u, now)...)
	if len(changed) > 0 {
		k.UpdatedAt = now
		k.principal = nil
	}
	return changed
}

// applyLimits makes the update's external id, meta, rate limit and credits
// changes on k and names the fields that changed. Credits set anew start
// their refill at now.
func (k *APIKey) applyLimits(u APIKeyUpdate, now time.Time) []string {
	var changed []string
	if u.SetExternalID && !equalPtr(k.ExternalID, u.ExternalID) {
		k.ExternalID = copyPtr(u.ExternalID)
		changed = append(changed, "external_id")
	}
	if u.SetMeta {
		meta, _ := CompactMeta(u.Meta)
		if !bytes.Equal(k.Meta, meta) {
			k.Meta = meta
			changed = append(changed, "meta")
		}
	}
	if u.SetRateLimit && !equalPtr(k.RateLimit, u.RateLimit) {
		k.RateLimit = copyPtr(u.RateLimit)
		changed = append(changed, "rate_limit")
	}
	if u.SetCredits && !equalCredits(k.Credits, u.Credits) {
		k.Credits = newCredits(u.Credits, now)
		changed = append(changed, "credits")
	}
	return changed
}

// CreateKeyInput is what a caller supplies to create a key.
type CreateKeyInput struct {
	Name       string
	Scope      Scope
	ExpiresAt  *time.Time
	ExternalID *string
	Meta       json.RawMessage
	RateLimit  *RateLimit
	Credits    *Credits
}

// Validate checks the input's fields.
func (in CreateKeyInput) Validate(now time.Time) error {
	var fields []FieldError
	if msg := validKeyName(in.Name); msg != "" {
		fields = append(fields, FieldError{Field: "name", Message: msg})
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		fields = append(fields, FieldError{Field: "expires_at", Message: "must lie in the future"})
	}
	fields = append(fields, ErrorFields(in.Scope.Validate())...)
	fields = append(fields, limitFields(in.ExternalID, in.Meta, in.RateLimit, in.Credits)...)
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// APIKeyFilter selects a page of one tenant's keys.
type APIKeyFilter struct {
	TenantID string
	UserID   *string
	Enabled  *bool
	Name     *string // exactly this name: at most one key, names being unique in a tenant
	// ExternalID selects the keys of one external id.
	ExternalID *string
	Cursor     string
	Limit      int
}

// APIKeyPage is one page of keys and the cursor of the next, "" at the end.
type APIKeyPage struct {
	Keys       []*APIKey
	NextCursor string
}

// KeyStore persists API keys, tenants and users. A method that changes data
// also writes the audit events given to it, in the same transaction, so a
// change and its record land together or not at all.
type KeyStore interface {
	// CreateKey inserts key, creating its tenant and user on first use.
	// Returns ECONFLICT when the tenant has a key of that name or the hash
	// exists.
	CreateKey(ctx context.Context, key *APIKey, events ...AuditEvent) error

	// FindKeyByID returns ENOTFOUND when the key is absent or belongs to
	// another tenant.
	FindKeyByID(ctx context.Context, tenantID, id string) (*APIKey, error)

	// FindKeyByHash returns the key whose token, or previous token (one
	// replaced by a rotation), has that hash; ENOTFOUND when none has.
	FindKeyByHash(ctx context.Context, hash string) (*APIKey, error)

	// FindKeys returns a page of the filter's tenant's keys, newest first, in
	// an order that stays stable while keys are inserted. Returns EINVALID
	// for a cursor it did not issue.
	FindKeys(ctx context.Context, filter APIKeyFilter) (*APIKeyPage, error)

	// UpdateKey loads the key inside a transaction and passes it to fn; when
	// fn returns changed fields, it saves the key and the events fn returns.
	// Returns ENOTFOUND like FindKeyByID, ECONFLICT for a taken name and any
	// error fn returns.
	UpdateKey(ctx context.Context, tenantID, id string, fn func(*APIKey) (changed []string, events []AuditEvent, err error)) (*APIKey, error)

	// DeleteKey removes a key. Returns ENOTFOUND like FindKeyByID.
	DeleteKey(ctx context.Context, tenantID, id string, events ...AuditEvent) error

	// CountKeys returns the number of keys a tenant holds.
	CountKeys(ctx context.Context, tenantID string) (int, error)

	// DeleteUser removes a user of a tenant and, by cascade, their keys,
	// returning how many keys went. Returns ENOTFOUND for an unknown user.
	DeleteUser(ctx context.Context, tenantID, userID string, events ...AuditEvent) (int, error)

	// DeleteTenant removes a tenant and, by cascade, its users and keys,
	// returning how many keys went. Returns ENOTFOUND for an unknown tenant.
	DeleteTenant(ctx context.Context, tenantID string, events ...AuditEvent) (int, error)

	// FindScopeCeiling returns a user's scope ceiling; ENOTFOUND when an
	// admin set none.
	FindScopeCeiling(ctx context.Context, tenantID, userID string) (*ScopeCeiling, error)

	// SetScopeCeiling creates or replaces a user's scope ceiling, creating
	// the tenant and user on first use.
	SetScopeCeiling(ctx context.Context, c *ScopeCeiling, events ...AuditEvent) error

	// DeleteScopeCeiling removes a user's scope ceiling. Returns ENOTFOUND
	// when there is none.
	DeleteScopeCeiling(ctx context.Context, tenantID, userID string, events ...AuditEvent) error

	// TouchKeys moves last_used_at forward for many keys in one statement;
	// an older time never overwrites a newer one and absent keys are skipped.
	TouchKeys(ctx context.Context, lastUsed map[string]time.Time) error
}

func validKeyName(name string) string {
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name):
		return "must be valid UTF-8"
	case strings.TrimSpace(name) == "" || n > MaxKeyNameLen:
		return "must be 1 to 100 characters and not only spaces"
	case strings.IndexFunc(name, isControlOrBidi) >= 0:
		return "must not contain control or bidirectional formatting characters"
	}
	return ""
}

func equalTimes(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

func equalScopes(a, b Scope) bool {
	for _, t := range ResourceTypes() {
		if !slices.Equal(a.IDs(t), b.IDs(t)) {
			return false
		}
	}
	return true
}
