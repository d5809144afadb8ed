package client

import (
	"encoding/json"
	"time"
)

// The types below are the schemas of the OpenAPI document (docs/api.md),
// by the same names.

// Scope is what a key may reach: ids of each resource type, exact or globs
// where * matches any run of characters. An empty list reaches nothing.
type Scope struct {
	AgentIDs       []string `json:"agent_ids,omitempty"`
	FlowIDs        []string `json:"flow_ids,omitempty"`
	MCPToolIDs     []string `json:"mcp_tool_ids,omitempty"`
	VectorStoreIDs []string `json:"vector_store_ids,omitempty"`
}

// Setter is who made a decision about a key, and whether as an admin.
type Setter struct {
	UserID string `json:"user_id"`
	Admin  bool   `json:"admin"`
}

// Key is an API key, never its token.
type Key struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Start           string     `json:"start"` // the token's first 8 characters
	TenantID        string     `json:"tenant_id"`
	UserID          string     `json:"user_id"`
	PermissionScope Scope      `json:"permission_scope"`
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	LastUsedAt      *time.Time `json:"last_used_at"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	// ExternalID is the platform's own id for the key's customer or owner,
	// Meta the JSON object it keeps with the key; nil when none.
	ExternalID *string        `json:"external_id"`
	Meta       map[string]any `json:"meta"`
	// RateLimit and Credits bound the key's use; nil: unbounded.
	RateLimit *RateLimit `json:"rate_limit"`
	Credits   *Credits   `json:"credits"`
	// RotatedAt is when the token was last replaced; the one it replaced
	// works until PreviousTokenExpiresAt.
	RotatedAt              *time.Time `json:"rotated_at"`
	PreviousTokenExpiresAt *time.Time `json:"previous_token_expires_at"`
	DisabledBy             *Setter    `json:"disabled_by"`
	ExpiresAtSetBy         *Setter    `json:"expires_at_set_by"`
	RateLimitSetBy         *Setter    `json:"rate_limit_set_by"`
	CreditsSetBy           *Setter    `json:"credits_set_by"`
}

// RateLimit is at most Limit decision requests per WindowMS milliseconds,
// in bursts of up to Limit.
type RateLimit struct {
	Limit    int64 `json:"limit"`     // 1 to 1,000,000
	WindowMS int64 `json:"window_ms"` // 1,000 to 86,400,000
}

// CreditRefill tops a key's credits up to Amount every IntervalMS
// milliseconds (never lowering them).
type CreditRefill struct {
	Amount     int64 `json:"amount"`      // 1 to 10^12
	IntervalMS int64 `json:"interval_ms"` // 60,000 to 31,622,400,000
}

// CreditsRequest sets a key's credits: each allowed check spends one, and
// a key at 0 is refused USAGE_EXCEEDED. Setting them sets the balance anew.
type CreditsRequest struct {
	Remaining int64         `json:"remaining"` // 0 to 10^12
	Refill    *CreditRefill `json:"refill,omitempty"`
}

// Credits are a key's credits as last written; RefilledAt is when they
// were last set or refilled.
type Credits struct {
	Remaining  int64         `json:"remaining"`
	Refill     *CreditRefill `json:"refill"`
	RefilledAt *time.Time    `json:"refilled_at"`
}

// CreatedKey is a key just created or rotated, with its token: keygate
// shows it this once.
type CreatedKey struct {
	Key
	Token string `json:"token"`
}

// CreateKeyRequest creates a key.
type CreateKeyRequest struct {
	Name            string          `json:"name"`
	PermissionScope Scope           `json:"permission_scope"`
	ExpiresAt       *time.Time      `json:"expires_at,omitempty"`
	ExternalID      string          `json:"external_id,omitempty"` // 1 to 200 bytes
	Meta            map[string]any  `json:"meta,omitempty"`        // at most 4 KiB as compact JSON
	RateLimit       *RateLimit      `json:"rate_limit,omitempty"`
	Credits         *CreditsRequest `json:"credits,omitempty"`
}

// UpdateKeyRequest changes a key; nil fields stay as they are, and each
// Clear field removes what it names (winning over a new value).
type UpdateKeyRequest struct {
	Name            *string
	Enabled         *bool
	ExpiresAt       *time.Time // a new expiry
	ClearExpiresAt  bool       // remove the expiry
	PermissionScope *Scope     // replaces the whole scope
	ExternalID      *string
	ClearExternalID bool
	Meta            map[string]any // replaces the whole meta
	ClearMeta       bool
	RateLimit       *RateLimit
	ClearRateLimit  bool
	Credits         *CreditsRequest // sets the balance anew (a top-up) and the refill
	ClearCredits    bool
}

// MarshalJSON sends only what changes; a Clear field sends null.
func (u UpdateKeyRequest) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if u.Name != nil {
		m["name"] = *u.Name
	}
	if u.Enabled != nil {
		m["enabled"] = *u.Enabled
	}
	if u.PermissionScope != nil {
		m["permission_scope"] = u.PermissionScope
	}
	for _, f := range []struct {
		name  string
		clear bool
		value any
		set   bool
	}{
		{"expires_at", u.ClearExpiresAt, u.ExpiresAt, u.ExpiresAt != nil},
		{"external_id", u.ClearExternalID, u.ExternalID, u.ExternalID != nil},
		{"meta", u.ClearMeta, u.Meta, u.Meta != nil},
		{"rate_limit", u.ClearRateLimit, u.RateLimit, u.RateLimit != nil},
		{"credits", u.ClearCredits, u.Credits, u.Credits != nil},
	} {
		switch {
		case f.clear:
			m[f.name] = nil
		case f.set:
			m[f.name] = f.value
		}
	}
	return json.Marshal(m)
}

// Granularities of a key's usage history.
const (
	GranularityHour = "hour"
	GranularityDay  = "day"
)

// KeyUsageParams selects a key's usage history: [Since, Until) in
// intervals of Granularity. Zero values take keygate's defaults: hours,
// up to the end of the current interval, the last 24 hours or 30 days.
type KeyUsageParams struct {
	Granularity string // GranularityHour or GranularityDay
	Since       time.Time
	Until       time.Time
}

// UsageCounts are a key's decision requests by outcome.
type UsageCounts struct {
	Allowed       int64 `json:"allowed"`
	Denied        int64 `json:"denied"`         // by the policy
	RateLimited   int64 `json:"rate_limited"`   // over the key's rate limit
	UsageExceeded int64 `json:"usage_exceeded"` // too few credits
	Refused       int64 `json:"refused"`        // the key itself refused
}

// UsageInterval is one interval's counts, from Start.
type UsageInterval struct {
	Start time.Time `json:"start"`
	UsageCounts
}

// UsageReport is a key's usage history: every interval of the range,
// oldest first, and their total.
type UsageReport struct {
	KeyID       string          `json:"key_id"`
	Granularity string          `json:"granularity"`
	Since       time.Time       `json:"since"`
	Until       time.Time       `json:"until"`
	Data        []UsageInterval `json:"data"`
	Total       UsageCounts     `json:"total"`
}

// PolicyStatus is the policy an instance serves. LastError says why its
// latest reload was refused (the live policy kept serving); nil when it was
// not.
type PolicyStatus struct {
	Revision       string     `json:"revision"`
	Source         string     `json:"source"`
	BundleRevision string     `json:"bundle_revision,omitempty"`
	LoadedAt       time.Time  `json:"loaded_at"`
	LastError      *string    `json:"last_error"`
	LastErrorAt    *time.Time `json:"last_error_at"`
}

// ListKeysParams filters and pages a key listing.
type ListKeysParams struct {
	Limit      int    // per page, 1 to 100; 0: keygate's default (20)
	Cursor     string // the previous page's NextCursor
	Enabled    *bool
	UserID     string
	ExternalID string // the keys of this external id
}

// KeyPage is a page of keys; NextCursor is empty on the last.
type KeyPage struct {
	Data       []Key  `json:"data"`
	NextCursor string `json:"next_cursor"`
}

// AuditEvent is one line of the audit trail.
type AuditEvent struct {
	ID         string         `json:"id"`
	OccurredAt time.Time      `json:"occurred_at"`
	TenantID   string         `json:"tenant_id"`
	ActorType  string         `json:"actor_type"`
	ActorID    string         `json:"actor_id"`
	Action     string         `json:"action"`
	TargetType string         `json:"target_type"`
	TargetID   string         `json:"target_id"`
	Outcome    string         `json:"outcome"`
	Reason     string         `json:"reason"`
	IP         string         `json:"ip"`
	UserAgent  string         `json:"user_agent"`
	RequestID  string         `json:"request_id"`
	TraceID    string         `json:"trace_id"`
	Details    map[string]any `json:"details"`
}

// ListAuditEventsParams filters and pages the audit trail.
type ListAuditEventsParams struct {
	Limit      int
	Cursor     string
	Action     string    // such as "api_key.created"
	KeyID      string    // events about this key
	Since      time.Time // zero: no bound
	Until      time.Time // zero: no bound
	Tenantless bool      // the events of no tenant (role platform_admin)
}

// AuditEventPage is a page of the audit trail, newest first.
type AuditEventPage struct {
	Data       []AuditEvent `json:"data"`
	NextCursor string       `json:"next_cursor"`
}

// ScopeCeiling is the scope every key of a user must stay within.
type ScopeCeiling struct {
	TenantID        string    `json:"tenant_id"`
	UserID          string    `json:"user_id"`
	PermissionScope Scope     `json:"permission_scope"`
	UpdatedBy       string    `json:"updated_by"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// MCPServer is an upstream MCP server; its headers are never shown.
type MCPServer struct {
	ID           string     `json:"id"`
	TenantID     string     `json:"tenant_id"`
	UserID       string     `json:"user_id"`
	Name         string     `json:"name"`
	URL          string     `json:"url"`
	Enabled      bool       `json:"enabled"`
	TimeoutMS    int        `json:"timeout_ms"`
	LastSyncedAt *time.Time `json:"last_synced_at"`
	SyncError    string     `json:"sync_error"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// CreateMCPServerRequest registers an upstream MCP server.
type CreateMCPServerRequest struct {
	Name      string            `json:"name"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"` // the upstream's credentials; write-only
	Enabled   *bool             `json:"enabled,omitempty"` // true when nil
	TimeoutMS *int              `json:"timeout_ms,omitempty"`
}

// UpdateMCPServerRequest changes a server; nil fields stay as they are.
type UpdateMCPServerRequest struct {
	Name         *string
	URL          *string
	Enabled      *bool
	TimeoutMS    *int
	Headers      map[string]string // non-nil: replaces every header
	ClearHeaders bool              // remove every header; wins over Headers
}

// MarshalJSON sends only what changes; ClearHeaders sends null.
func (u UpdateMCPServerRequest) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if u.Name != nil {
		m["name"] = *u.Name
	}
	if u.URL != nil {
		m["url"] = *u.URL
	}
	if u.Enabled != nil {
		m["enabled"] = *u.Enabled
	}
	if u.TimeoutMS != nil {
		m["timeout_ms"] = *u.TimeoutMS
	}
	switch {
	case u.ClearHeaders:
		m["headers"] = nil
	case u.Headers != nil:
		m["headers"] = u.Headers
	}
	return json.Marshal(m)
}

// ListMCPServersParams filters and pages the servers.
type ListMCPServersParams struct {
	Limit  int
	Cursor string
	UserID string
}

// MCPServerPage is a page of servers.
type MCPServerPage struct {
	Data       []MCPServer `json:"data"`
	NextCursor string      `json:"next_cursor"`
}

// MCPTool is one tool of an upstream's synced catalog.
type MCPTool struct {
	ServerID     string          `json:"server_id"`
	ServerName   string          `json:"server_name"`
	TenantID     string          `json:"tenant_id"`
	Name         string          `json:"name"`
	ExposedName  string          `json:"exposed_name"` // <server>__<tool>, the id mcp_tool_ids names
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"input_schema"`
	OutputSchema json.RawMessage `json:"output_schema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
	Available    bool            `json:"available"`
}

// ListMCPToolsParams filters and pages the catalog.
type ListMCPToolsParams struct {
	Limit    int
	Cursor   string
	ServerID string
	UserID   string
}

// MCPToolPage is a page of the catalog, in exposed-name order.
type MCPToolPage struct {
	Data       []MCPTool `json:"data"`
	NextCursor string    `json:"next_cursor"`
}

// SyncReport is a sync's outcome: the server as saved, its catalog, and
// the exposed names of the tools added, removed, changed and skipped.
type SyncReport struct {
	Server  MCPServer `json:"server"`
	Tools   []MCPTool `json:"tools"`
	Added   []string  `json:"added"`
	Removed []string  `json:"removed"`
	Changed []string  `json:"changed"`
	Skipped []string  `json:"skipped"`
}

// Resource types.
const (
	ResourceAgent       = "agent"
	ResourceFlow        = "flow"
	ResourceMCPTool     = "mcp_tool"
	ResourceVectorStore = "vector_store"
)

// Decision codes.
const (
	DecisionAllowed     = "ALLOWED"
	DecisionDenied      = "DENIED"
	DecisionKeyInvalid  = "KEY_INVALID"
	DecisionKeyDisabled = "KEY_DISABLED"
	DecisionKeyExpired  = "KEY_EXPIRED"
	// The key's own limits refused the request: over its rate limit, or
	// too few credits for the allowed checks.
	DecisionRateLimited   = "RATE_LIMITED"
	DecisionUsageExceeded = "USAGE_EXCEEDED"
)

// Resource is what a decision is about.
type Resource struct {
	Type     string `json:"type"` // one of the Resource constants
	ID       string `json:"id"`
	TenantID string `json:"tenant_id,omitempty"` // another than the key's is denied
}

// Check is one question of a batch.
type Check struct {
	Resource Resource `json:"resource"`
	Action   string   `json:"action"`
}

// AuthorizeRequest asks whether APIKey may do Action on Resource.
type AuthorizeRequest struct {
	APIKey   string   `json:"api_key"`
	Resource Resource `json:"resource"`
	Action   string   `json:"action"`
}

// Principal is who a key speaks for.
type Principal struct {
	Type       string         `json:"type"`
	KeyID      string         `json:"key_id"`
	Name       string         `json:"name"`
	TenantID   string         `json:"tenant_id"`
	UserID     string         `json:"user_id"`
	ExternalID *string        `json:"external_id"` // nil when the key has none
	Meta       map[string]any `json:"meta"`
}

// RateLimitState is where a key with a rate limit stands after a request.
type RateLimitState struct {
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"` // requests it may still send at once
	ResetAt   time.Time `json:"reset_at"`  // when its whole burst is back
	// RetryAfterMS, with DecisionRateLimited, is how long until a request
	// is allowed.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
}

// Decision answers one question. Code is one of the Decision constants; a
// refused key, or one its own limits refuse, is a Decision too, never an
// error.
type Decision struct {
	Allowed    bool       `json:"allowed"`
	Code       string     `json:"code"`
	Reasons    []string   `json:"reasons"`
	DecisionID string     `json:"decision_id"`
	Principal  *Principal `json:"principal,omitempty"`
	// RateLimit is set for a key with a rate limit; CreditsRemaining for a
	// key with credits when the request spent some or had too few.
	RateLimit        *RateLimitState `json:"rate_limit,omitempty"`
	CreditsRemaining *int64          `json:"credits_remaining,omitempty"`
}

// CheckResult answers one check of a batch.
type CheckResult struct {
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
}

// BatchDecision answers a batch, one result per check in order.
type BatchDecision struct {
	Results          []CheckResult   `json:"results"`
	Code             string          `json:"code"`
	DecisionID       string          `json:"decision_id"`
	Principal        *Principal      `json:"principal,omitempty"`
	RateLimit        *RateLimitState `json:"rate_limit,omitempty"`
	CreditsRemaining *int64          `json:"credits_remaining,omitempty"`
}

// ForwardAuthRequest is a request a gateway forwards: its method and URI
// (path and query), as Traefik names them in X-Forwarded-Method and
// X-Forwarded-Uri.
type ForwardAuthRequest struct {
	APIKey string
	Method string
	URI    string
}

// ForwardAuthResult is forward auth's allowed answer: the headers a
// gateway passes to the upstream.
type ForwardAuthResult struct {
	KeyID      string // X-Keygate-Key-Id
	TenantID   string // X-Keygate-Tenant-Id
	UserID     string // X-Keygate-User-Id
	DecisionID string // X-Keygate-Decision-Id
}

// Identity is an API key as it describes itself.
type Identity struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	TenantID        string         `json:"tenant_id"`
	UserID          string         `json:"user_id"`
	PermissionScope Scope          `json:"permission_scope"`
	ExpiresAt       *time.Time     `json:"expires_at"`
	ExternalID      *string        `json:"external_id"`
	Meta            map[string]any `json:"meta"`
}

// Health is /healthz's answer.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// Readiness is /readyz's answer: Status "ready" or "unavailable" with
// Detail saying why, and the state of the change feed, the audit trail
// and where per-key rate limits are counted.
type Readiness struct {
	Status     string         `json:"status"`
	Detail     string         `json:"detail,omitempty"`
	ChangeFeed map[string]any `json:"change_feed,omitempty"`
	Audit      map[string]any `json:"audit,omitempty"`
	RateLimits map[string]any `json:"rate_limits,omitempty"`
}
