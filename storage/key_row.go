package storage

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/uptrace/bun"
)

type apiKeyRow struct {
	bun.BaseModel `bun:"table:api_keys,alias:k"`

	ID              string     `bun:"id,pk"`
	TenantID        string     `bun:"tenant_id,notnull"`
	UserID          string     `bun:"user_id,notnull"`
	Name            string     `bun:"name,notnull"`
	KeyHash         string     `bun:"key_hash,notnull"`
	Start           string     `bun:"start,notnull"`
	PermissionScope string     `bun:"permission_scope,notnull"` // JSON, encoded here
	Enabled         bool       `bun:"enabled,notnull"`
	ExpiresAt       *time.Time `bun:"expires_at"`
	LastUsedAt      *time.Time `bun:"last_used_at"`
	CreatedAt       time.Time  `bun:"created_at,notnull"`
	UpdatedAt       time.Time  `bun:"updated_at,notnull"`

	DisabledBy          string `bun:"disabled_by,notnull"`
	DisabledByAdmin     bool   `bun:"disabled_by_admin,notnull"`
	ExpiresAtSetBy      string `bun:"expires_at_set_by,notnull"`
	ExpiresAtSetByAdmin bool   `bun:"expires_at_set_by_admin,notnull"`
	RateLimitSetBy      string `bun:"rate_limit_set_by,notnull"`
	RateLimitSetByAdmin bool   `bun:"rate_limit_set_by_admin,notnull"`
	CreditsSetBy        string `bun:"credits_set_by,notnull"`
	CreditsSetByAdmin   bool   `bun:"credits_set_by_admin,notnull"`

	PreviousKeyHash   string     `bun:"previous_key_hash,notnull"`
	PreviousExpiresAt *time.Time `bun:"previous_expires_at"`
	RotatedAt         *time.Time `bun:"rotated_at"`
	ExternalID        *string    `bun:"external_id"`
	Meta              *string    `bun:"meta"` // a JSON object, kept as text: read back as written
	RateLimit         *int64     `bun:"rate_limit"`
	RateLimitWindowMS *int64     `bun:"rate_limit_window_ms"`
	creditColumns
}

// creditColumns are a key's credits; credits_remaining NULL: none.
type creditColumns struct {
	CreditsRemaining        *int64     `bun:"credits_remaining"`
	CreditsRefillAmount     *int64     `bun:"credits_refill_amount"`
	CreditsRefillIntervalMS *int64     `bun:"credits_refill_interval_ms"`
	CreditsRefilledAt       *time.Time `bun:"credits_refilled_at"`
}

// keyLifecycleColumns are what UpdateKey saves besides the original
// columns: rotation, external id, meta, limits and who set them.
var keyLifecycleColumns = []string{
	"key_hash", "start", "previous_key_hash", "previous_expires_at", "rotated_at",
	"external_id", "meta", "rate_limit", "rate_limit_window_ms",
	"credits_remaining", "credits_refill_amount", "credits_refill_interval_ms", "credits_refilled_at",
	"rate_limit_set_by", "rate_limit_set_by_admin", "credits_set_by", "credits_set_by_admin",
}

func newCreditColumns(c *authz.Credits) creditColumns {
	if c == nil {
		return creditColumns{}
	}
	out := creditColumns{CreditsRemaining: &c.Remaining, CreditsRefilledAt: utcPtr(c.RefilledAt)}
	if r := c.Refill; r != nil {
		out.CreditsRefillAmount, out.CreditsRefillIntervalMS = &r.Amount, &r.IntervalMS
	}
	return out
}

func (c *creditColumns) credits() *authz.Credits {
	if c.CreditsRemaining == nil {
		return nil
	}
	out := &authz.Credits{Remaining: *c.CreditsRemaining, RefilledAt: utcPtr(c.CreditsRefilledAt)}
	if c.CreditsRefillAmount != nil && c.CreditsRefillIntervalMS != nil {
		out.Refill = &authz.CreditRefill{Amount: *c.CreditsRefillAmount, IntervalMS: *c.CreditsRefillIntervalMS}
	}
	return out
}

// setterColumns stores a Setter as a user id ("" for none) and a flag.
func setterColumns(by *authz.Setter) (string, bool) {
	if by == nil {
		return "", false
	}
	return by.UserID, by.Admin
}

func setterOf(userID string, admin bool) *authz.Setter {
	if userID == "" {
		return nil
	}
	return &authz.Setter{UserID: userID, Admin: admin}
}

// newAPIKeyRow converts k for storage: scope as JSON, times in UTC.
func newAPIKeyRow(k *authz.APIKey) (*apiKeyRow, error) {
	if !authz.ValidID(k.ID) {
		return nil, fmt.Errorf("store key: id %q is not a canonical UUID", k.ID)
	}
	scope, err := json.Marshal(k.Scope)
	if err != nil {
		return nil, fmt.Errorf("encode the scope of key %s: %w", k.ID, err)
	}
	row := &apiKeyRow{
		ID:              k.ID,
		TenantID:        k.TenantID,
		UserID:          k.UserID,
		Name:            k.Name,
		KeyHash:         k.Hash,
		Start:           k.Start,
		PermissionScope: string(scope),
		Enabled:         k.Enabled,
		ExpiresAt:       utcPtr(k.ExpiresAt),
		LastUsedAt:      utcPtr(k.LastUsedAt),
		CreatedAt:       utc(k.CreatedAt),
		UpdatedAt:       utc(k.UpdatedAt),
	}
	row.DisabledBy, row.DisabledByAdmin = setterColumns(k.DisabledBy)
	row.ExpiresAtSetBy, row.ExpiresAtSetByAdmin = setterColumns(k.ExpiresAtSetBy)
	row.RateLimitSetBy, row.RateLimitSetByAdmin = setterColumns(k.RateLimitSetBy)
	row.CreditsSetBy, row.CreditsSetByAdmin = setterColumns(k.CreditsSetBy)
	row.PreviousKeyHash, row.PreviousExpiresAt, row.RotatedAt = k.PreviousHash, utcPtr(k.PreviousExpiresAt), utcPtr(k.RotatedAt)
	row.ExternalID = k.ExternalID
	if k.Meta != nil {
		meta := string(k.Meta)
		row.Meta = &meta
	}
	if r := k.RateLimit; r != nil {
		row.RateLimit, row.RateLimitWindowMS = &r.Limit, &r.WindowMS
	}
	row.creditColumns = newCreditColumns(k.Credits)
	return row, nil
}

// key converts a stored row back into the domain type.
func (r *apiKeyRow) key() (*authz.APIKey, error) {
	var scope authz.Scope
	if err := json.Unmarshal([]byte(r.PermissionScope), &scope); err != nil {
		return nil, fmt.Errorf("decode the scope of key %s: %w", r.ID, err)
	}
	k := &authz.APIKey{
		ID:         r.ID,
		Name:       r.Name,
		Start:      r.Start,
		TenantID:   r.TenantID,
		UserID:     r.UserID,
		Scope:      nonNilScope(scope),
		Enabled:    r.Enabled,
		ExpiresAt:  utcPtr(r.ExpiresAt),
		LastUsedAt: utcPtr(r.LastUsedAt),
		CreatedAt:  utc(r.CreatedAt),
		UpdatedAt:  utc(r.UpdatedAt),
		Hash:       r.KeyHash,

		DisabledBy:     setterOf(r.DisabledBy, r.DisabledByAdmin),
		ExpiresAtSetBy: setterOf(r.ExpiresAtSetBy, r.ExpiresAtSetByAdmin),
		RateLimitSetBy: setterOf(r.RateLimitSetBy, r.RateLimitSetByAdmin),
		CreditsSetBy:   setterOf(r.CreditsSetBy, r.CreditsSetByAdmin),

		PreviousHash:      r.PreviousKeyHash,
		PreviousExpiresAt: utcPtr(r.PreviousExpiresAt),
		RotatedAt:         utcPtr(r.RotatedAt),
		ExternalID:        r.ExternalID,
		Credits:           r.credits(),
	}
	if r.Meta != nil {
		k.Meta = json.RawMessage(*r.Meta)
	}
	if r.RateLimit != nil && r.RateLimitWindowMS != nil {
		k.RateLimit = &authz.RateLimit{Limit: *r.RateLimit, WindowMS: *r.RateLimitWindowMS}
	}
	return k, nil
}

// nonNilScope turns absent lists into empty ones, as the scope document
// always has all four.
func nonNilScope(s authz.Scope) authz.Scope {
	for _, l := range []*[]string{&s.AgentIDs, &s.FlowIDs, &s.MCPToolIDs, &s.VectorStoreIDs} {
		if *l == nil {
			*l = []string{}
		}
	}
	return s
}

// storedForm sets k's times and scope to what the database keeps (UTC,
// microseconds, empty lists rather than nil), so the caller's copy of a
// key it just wrote equals the one it would read back.
func storedForm(k *authz.APIKey) {
	k.Scope = nonNilScope(k.Scope)
	k.ExpiresAt = utcPtr(k.ExpiresAt)
	k.LastUsedAt = utcPtr(k.LastUsedAt)
	k.CreatedAt = utc(k.CreatedAt)
	k.UpdatedAt = utc(k.UpdatedAt)
	k.PreviousExpiresAt = utcPtr(k.PreviousExpiresAt)
	k.RotatedAt = utcPtr(k.RotatedAt)
	if k.Credits != nil {
		k.Credits.RefilledAt = utcPtr(k.Credits.RefilledAt)
	}
}
