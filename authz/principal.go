package authz

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// PrincipalTypeAPIKey is the only principal type today: a request made with
// an API key.
const PrincipalTypeAPIKey = "api_key"

// Principal is who an authenticated API key speaks for, the subject of every
// decision. A principal is a snapshot: it is never changed once made (a
// changed key yields a new one), which is what lets decisions about it be
// cached.
type Principal struct {
	KeyID     string     `json:"key_id"`
	KeyName   string     `json:"name"`
	TenantID  string     `json:"tenant_id"`
	UserID    string     `json:"user_id"`
	Scope     Scope      `json:"permission_scope"`
	ExpiresAt *time.Time `json:"expires_at"`

	// ExternalID and Meta are what the platform keeps with the key ("" and
	// nil: none); the policy reads them as input.principal.external_id and
	// input.principal.meta. Meta is shared and must not be changed.
	ExternalID string          `json:"external_id,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`

	// RateLimit bounds the key's decision requests (nil: none); Credits
	// says the key has usage credits, which each allowed check spends.
	RateLimit *RateLimit `json:"-"`
	Credits   bool       `json:"-"`

	// snapshot is the key cache entry the principal was made from; the
	// principals made from one entry are one snapshot, so caches of what
	// was decided about it are keyed by the entry. self tells the
	// principal the cache made from a copy of it, which may have been
	// changed and is a principal of its own.
	snapshot *cacheEntry
	self     *Principal
}

// identity is what caches of decisions about p are keyed by: its cache
// entry, or p itself when it comes from no cache or is a copy.
func (p *Principal) identity() any {
	if p.snapshot != nil && p.self == p {
		return p.snapshot
	}
	return p
}

// cached reports whether p is the principal of a key cache entry, a
// snapshot that other requests share and a change to the key replaces.
func (p *Principal) cached() bool { return p.snapshot != nil && p.self == p }

// Roles the management policy gives meaning to.
const (
	RoleAdmin         = "admin"          // manages every key of its tenant
	RolePlatformAdmin = "platform_admin" // may offboard whole tenants
)

// Actor is a person acting through the management API, as the identity
// provider's JWT describes them.
type Actor struct {
	TenantID string   `json:"tenant_id"`
	UserID   string   `json:"user_id"`
	Roles    []string `json:"roles"`
}

// HasRole reports whether the actor holds role.
func (a *Actor) HasRole(role string) bool {
	return slices.Contains(a.Roles, role)
}

// RequestInfo describes the request an operation serves, for audit events
// and logs. It never holds a credential.
type RequestInfo struct {
	IP        string
	UserAgent string
	RequestID string
	TraceID   string
}

type contextKey int

const (
	actorContextKey contextKey = iota + 1
	principalContextKey
	requestInfoContextKey
)

// NewContextWithActor returns ctx carrying the acting user.
func NewContextWithActor(ctx context.Context, a *Actor) context.Context {
	return context.WithValue(ctx, actorContextKey, a)
}

// ActorFromContext returns the acting user, or nil.
func ActorFromContext(ctx context.Context) *Actor {
	a, _ := ctx.Value(actorContextKey).(*Actor)
	return a
}

// NewContextWithPrincipal returns ctx carrying an authenticated key.
func NewContextWithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalContextKey, p)
}

// PrincipalFromContext returns the authenticated key, or nil.
func PrincipalFromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalContextKey).(*Principal)
	return p
}

// NewContextWithRequestInfo returns ctx carrying request metadata.
func NewContextWithRequestInfo(ctx context.Context, info RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoContextKey, info)
}

// RequestInfoFromContext returns the request metadata, empty when absent.
func RequestInfoFromContext(ctx context.Context) RequestInfo {
	info, _ := ctx.Value(requestInfoContextKey).(RequestInfo)
	return info
}
