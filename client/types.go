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
	DisabledBy      *Setter    `json:"disabled_by"`
	ExpiresAtSetBy  *Setter    `json:"expires_at_set_by"`
}

// CreatedKey is a key just created, with its token: keygate shows it this
// once.
type CreatedKey struct {
	Key
	Token string `json:"token"`
}

// CreateKeyRequest creates a key.
type CreateKeyRequest struct {
	Name            string     `json:"name"`
	PermissionScope Scope      `json:"permission_scope"`
	ExpiresAt       *time.Time `json:"expires_at,omitempty"`
}

// UpdateKeyRequest changes a key; nil fields stay as they are.
type UpdateKeyRequest struct {
	Name            *string
	Enabled         *bool
	ExpiresAt       *time.Time // a new expiry
	ClearExpiresAt  bool       // remove the expiry; wins over ExpiresAt
	PermissionScope *Scope     // replaces the whole scope
}

// MarshalJSON sends only what changes; ClearExpiresAt sends null.
func (u UpdateKeyRequest) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if u.Name != nil {
		m["name"] = *u.Name
	}
	if u.Enabled != nil {
		m["enabled"] = *u.Enabled
	}
	switch {
	case u.ClearExpiresAt:
		m["expires_at"] = nil
	case u.ExpiresAt != nil:
		m["expires_at"] = u.ExpiresAt
	}
	if u.PermissionScope != nil {
		m["permission_scope"] = u.PermissionScope
	}
	return json.Marshal(m)
}

// ListKeysParams filters and pages a key listing.
type ListKeysParams struct {
	Limit   int    // per page, 1 to 100; 0: keygate's default (20)
	Cursor  string // the previous page's NextCursor
	Enabled *bool
	UserID  string
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
	Type     string `json:"type"`
	KeyID    string `json:"key_id"`
	Name     string `json:"name"`
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
}

// Decision answers one question. Code is one of the Decision constants; a
// refused key is a Decision too, never an error.
type Decision struct {
	Allowed    bool       `json:"allowed"`
	Code       string     `json:"code"`
	Reasons    []string   `json:"reasons"`
	DecisionID string     `json:"decision_id"`
	Principal  *Principal `json:"principal,omitempty"`
}

// CheckResult answers one check of a batch.
type CheckResult struct {
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
}

// BatchDecision answers a batch, one result per check in order.
type BatchDecision struct {
	Results    []CheckResult `json:"results"`
	Code       string        `json:"code"`
	DecisionID string        `json:"decision_id"`
	Principal  *Principal    `json:"principal,omitempty"`
}

// Identity is an API key as it describes itself.
type Identity struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	TenantID        string     `json:"tenant_id"`
	UserID          string     `json:"user_id"`
	PermissionScope Scope      `json:"permission_scope"`
	ExpiresAt       *time.Time `json:"expires_at"`
}

// Health is /healthz's answer.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// Readiness is /readyz's answer: Status "ready" or "unavailable" with
// Detail saying why, and the state of the change feed and the audit trail.
type Readiness struct {
	Status     string         `json:"status"`
	Detail     string         `json:"detail,omitempty"`
	ChangeFeed map[string]any `json:"change_feed,omitempty"`
	Audit      map[string]any `json:"audit,omitempty"`
}
