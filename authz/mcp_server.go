package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"strings"
	"time"
)

// Bounds on MCP servers and their catalogs.
const (
	MaxMCPServerNameLen  = 32
	MaxMCPURLLen         = 2048
	MaxMCPHeaders        = 32
	MaxMCPHeaderNameLen  = 256
	MaxMCPHeaderValueLen = 8192
	MaxMCPHeadersBytes   = 16 << 10 // names and values together
	MinMCPTimeoutMS      = 100
	MaxMCPTimeoutMS      = 120_000
	DefaultMCPTimeoutMS  = 30_000
	MaxMCPToolsPerServer = 1000
	MaxMCPToolNameLen    = 128       // the MCP specification's bound
	MaxMCPToolBytes      = 256 << 10 // a tool's definition, schemas included
)

// MCPToolSeparator joins a server's name and a tool's upstream name into the
// name keygate exposes. Server names cannot contain "_", so the exposed name
// splits unambiguously at the first separator.
const MCPToolSeparator = "__"

// ActionMCPToolCall is the policy action of a tools/call.
const ActionMCPToolCall = "call"

// Audit actions of the MCP gateway.
const (
	AuditMCPServerCreated = "mcp_server.created"
	AuditMCPServerUpdated = "mcp_server.updated"
	AuditMCPServerDeleted = "mcp_server.deleted"
	AuditMCPServerSynced  = "mcp_server.synced"
	AuditMCPToolCalled    = "mcp_tool.called"
)

// ActorTypeSystem is keygate itself acting, as when the scheduler syncs a
// catalog.
const ActorTypeSystem = "system"

// MCPServer is an upstream MCP server a tenant registered. Headers carry the
// upstream's credentials: they are write-only, never serialized, logged or
// put in an error or audit event.
type MCPServer struct {
	ID           string            `json:"id"`
	TenantID     string            `json:"tenant_id"`
	UserID       string            `json:"user_id"`
	Name         string            `json:"name"`
	URL          string            `json:"url"`
	Headers      map[string]string `json:"-"`
	Enabled      bool              `json:"enabled"`
	TimeoutMS    int               `json:"timeout_ms"`
	LastSyncedAt *time.Time        `json:"last_synced_at"`
	SyncError    string            `json:"sync_error"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// MarshalJSON shows the server with its URL's query values redacted
// (?apikey=REDACTED): a query often carries a credential, and the URL is
// read by everyone who may read the server.
func (s MCPServer) MarshalJSON() ([]byte, error) {
	type plain MCPServer
	p := plain(s)
	p.URL = RedactURL(s.URL)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// RedactURL replaces every query value of raw with REDACTED, keeping the
// names, so an operator still sees which parameters a URL carries. A URL
// that does not parse is shown without anything after "?".
func RedactURL(raw string) string {
	base, query, ok := strings.Cut(raw, "?")
	if !ok {
		return raw
	}
	if _, err := url.ParseQuery(query); err != nil {
		return base + "?REDACTED"
	}
	parts := strings.Split(query, "&")
	for i, part := range parts {
		name, _, _ := strings.Cut(part, "=")
		if part != "" {
			parts[i] = name + "=REDACTED"
		}
	}
	return base + "?" + strings.Join(parts, "&")
}

// Timeout is the bound on one call to the upstream.
func (s *MCPServer) Timeout() time.Duration {
	return time.Duration(s.TimeoutMS) * time.Millisecond
}

// Available reports whether the gateway lists the server's tools: it is
// enabled and its last sync succeeded. A server whose upstream went away is
// hidden until a sync reaches it again.
func (s *MCPServer) Available() bool {
	return s.Enabled && s.LastSyncedAt != nil && s.SyncError == ""
}

// SameConfig reports whether s and o reach the upstream the same way, so a
// session opened for one serves the other.
func (s *MCPServer) SameConfig(o *MCPServer) bool {
	return s.ID == o.ID && s.URL == o.URL && s.TimeoutMS == o.TimeoutMS && maps.Equal(s.Headers, o.Headers)
}

// MCPTool is one tool of an upstream's synced catalog. ExposedName,
// "<server>__<tool>", is the name clients see and the id scopes name in
// mcp_tool_ids. The schemas and annotations are the upstream's JSON.
type MCPTool struct {
	ServerID     string          `json:"server_id"`
	ServerName   string          `json:"server_name"`
	TenantID     string          `json:"tenant_id"`
	Name         string          `json:"name"`
	ExposedName  string          `json:"exposed_name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"input_schema"`
	OutputSchema json.RawMessage `json:"output_schema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
	// Available is whether the gateway lists the tool now (its server is
	// enabled and reachable at the last sync); filled in by stores.
	Available bool `json:"available"`
}

// ExposedToolName is the name a tool of server is exposed as.
func ExposedToolName(server, tool string) string {
	return server + MCPToolSeparator + tool
}

// CreateMCPServerInput is what a caller supplies to register a server.
// Enabled defaults to true and TimeoutMS to DefaultMCPTimeoutMS.
type CreateMCPServerInput struct {
	Name      string
	URL       string
	Headers   map[string]string
	Enabled   *bool
	TimeoutMS *int
}

// Validate checks the input's fields.
func (in CreateMCPServerInput) Validate() error {
	var fields []FieldError
	add := func(field, msg string) {
		if msg != "" {
			fields = append(fields, FieldError{Field: field, Message: msg})
		}
	}
	add("name", validMCPServerName(in.Name))
	add("url", validMCPURL(in.URL))
	fields = append(fields, validMCPHeaders(in.Headers)...)
	if in.TimeoutMS != nil {
		add("timeout_ms", validMCPTimeout(*in.TimeoutMS))
	}
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// MCPServerUpdate is a partial change; nil fields stay as they are. Headers
// applies only when SetHeaders is true, replacing every header (nil clears
// them), since a header's value is never read back to merge with.
type MCPServerUpdate struct {
	Name       *string
	URL        *string
	SetHeaders bool
	Headers    map[string]string
	Enabled    *bool
	TimeoutMS  *int
}

// Validate checks the fields the update sets.
func (u MCPServerUpdate) Validate() error {
	var fields []FieldError
	add := func(field, msg string) {
		if msg != "" {
			fields = append(fields, FieldError{Field: field, Message: msg})
		}
	}
	if u.Name != nil {
		add("name", validMCPServerName(*u.Name))
	}
	if u.URL != nil {
		add("url", validMCPURL(*u.URL))
	}
	if u.SetHeaders {
		fields = append(fields, validMCPHeaders(u.Headers)...)
	}
	if u.TimeoutMS != nil {
		add("timeout_ms", validMCPTimeout(*u.TimeoutMS))
	}
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

// Apply makes the update on s and returns the names of the fields that
// changed, in a fixed order; UpdatedAt moves to now when any did. A header
// change is named ("headers") but its values never are.
func (s *MCPServer) Apply(u MCPServerUpdate, now time.Time) []string {
	var changed []string
	if u.Name != nil && *u.Name != s.Name {
		s.Name = *u.Name
		changed = append(changed, "name")
	}
	if u.URL != nil && *u.URL != s.URL {
		s.URL = *u.URL
		changed = append(changed, "url")
	}
	if u.SetHeaders && !maps.Equal(s.Headers, u.Headers) {
		s.Headers = maps.Clone(u.Headers)
		changed = append(changed, "headers")
	}
	if u.Enabled != nil && *u.Enabled != s.Enabled {
		s.Enabled = *u.Enabled
		changed = append(changed, "enabled")
	}
	if u.TimeoutMS != nil && *u.TimeoutMS != s.TimeoutMS {
		s.TimeoutMS = *u.TimeoutMS
		changed = append(changed, "timeout_ms")
	}
	if len(changed) > 0 {
		s.UpdatedAt = now
	}
	return changed
}

// MCPServerFilter selects a page of one tenant's servers.
type MCPServerFilter struct {
	TenantID string
	UserID   *string
	Cursor   string
	Limit    int
}

// MCPServerPage is one page of servers, newest first, and the next cursor.
type MCPServerPage struct {
	Servers    []*MCPServer
	NextCursor string
}

// MCPToolFilter selects a page of one tenant's catalog: every tool, the
// tools of one server, or those of the servers one user owns.
type MCPToolFilter struct {
	TenantID string
	ServerID string
	UserID   *string
	Cursor   string
	Limit    int
}

// MCPToolPage is one page of tools in exposed-name order and the next cursor.
type MCPToolPage struct {
	Tools      []*MCPTool
	NextCursor string
}

// MCPCatalog is what the gateway serves for a tenant: its enabled servers,
// headers included, and every tool they had at their last successful sync.
type MCPCatalog struct {
	Servers []*MCPServer
	Tools   []*MCPTool
}

// MCPSync is what a sync decided to save: the new catalog (nil keeps the
// current one, as when the upstream could not be reached) and the events to
// write with it.
type MCPSync struct {
	Tools  []*MCPTool
	Events []AuditEvent
}

// MCPStore persists MCP servers and their catalogs. A method that changes
// data also writes the audit events given to it, in the same transaction.
type MCPStore interface {
	// CreateMCPServer inserts srv, creating its tenant and user on first
	// use. Returns ECONFLICT when the tenant has a server of that name.
	CreateMCPServer(ctx context.Context, srv *MCPServer, events ...AuditEvent) error

	// FindMCPServerByID returns ENOTFOUND when the server is absent or
	// belongs to another tenant.
	FindMCPServerByID(ctx context.Context, tenantID, id string) (*MCPServer, error)

	// FindMCPServers returns a page of the filter's tenant's servers, newest
	// first. Returns EINVALID for a cursor it did not issue.
	FindMCPServers(ctx context.Context, filter MCPServerFilter) (*MCPServerPage, error)

	// UpdateMCPServer loads the server inside a transaction and passes it to
	// fn; when fn returns changed fields, it saves the server and the events
	// fn returns. Returns ENOTFOUND like FindMCPServerByID, ECONFLICT for a
	// taken name and any error fn returns.
	UpdateMCPServer(ctx context.Context, tenantID, id string, fn func(*MCPServer) (changed []string, events []AuditEvent, err error)) (*MCPServer, error)

	// DeleteMCPServer removes a server and its catalog. Returns ENOTFOUND
	// like FindMCPServerByID.
	DeleteMCPServer(ctx context.Context, tenantID, id string, events ...AuditEvent) error

	// SaveMCPSync records a sync in one transaction: it loads the server and
	// its catalog, passes them to fn, then saves the server's last_synced_at
	// and sync_error as fn left them, replaces the catalog when fn returns
	// tools, and writes fn's events. fn returning nil saves nothing. Returns
	// ENOTFOUND like FindMCPServerByID and any error fn returns.
	SaveMCPSync(ctx context.Context, tenantID, id string, fn func(srv *MCPServer, tools []*MCPTool) (*MCPSync, error)) (*MCPServer, error)

	// FindMCPTools returns a page of the filter's tenant's catalog in
	// exposed-name order. Returns EINVALID for a cursor it did not issue.
	FindMCPTools(ctx context.Context, filter MCPToolFilter) (*MCPToolPage, error)

	// FindMCPCatalog returns a tenant's enabled servers and their tools.
	FindMCPCatalog(ctx context.Context, tenantID string) (*MCPCatalog, error)

	// FindEnabledMCPServers returns every enabled server of every tenant,
	// for the scheduler that keeps catalogs fresh.
	FindEnabledMCPServers(ctx context.Context) ([]*MCPServer, error)
}

// MCPUpstreams reaches upstream MCP servers; the gateway implements it.
type MCPUpstreams interface {
	// ListMCPTools returns the tools srv offers now, with Name, Title,
	// Description, the schemas and Annotations set. Returns EUNAVAILABLE,
	// with a message that holds neither the URL's query nor a header, when
	// the upstream cannot be reached or answers with an error.
	ListMCPTools(ctx context.Context, srv *MCPServer) ([]*MCPTool, error)
}

// MCPAddressChecker refuses, when a server is saved, a URL the gateway
// would not connect to; the gateway implements it.
type MCPAddressChecker interface {
	// CheckMCPURL returns EINVALID naming the field "url" and the setting
	// to change for an address upstreams may not use.
	CheckMCPURL(ctx context.Context, rawURL string) error
}

// MCPCatalogNotifier hears that a tenant's servers or catalog changed, so the
// gateway serves the change at once.
type MCPCatalogNotifier interface {
	MCPCatalogChanged(ctx context.Context, tenantID string)
}

// MCPSyncReport is the outcome of a sync: the server as saved, its catalog,
// and which tools were added, removed, changed or skipped (upstream tools
// keygate cannot expose, with why).
type MCPSyncReport struct {
	Server  *MCPServer `json:"server"`
	Tools   []*MCPTool `json:"tools"`
	Added   []string   `json:"added"`
	Removed []string   `json:"removed"`
	Changed []string   `json:"changed"`
	Skipped []string   `json:"skipped"`
}
