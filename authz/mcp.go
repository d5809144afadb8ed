package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"reflect"
	"slices"
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
// Enabled defaults to true and TimeoutMS (0) to DefaultMCPTimeoutMS.
type CreateMCPServerInput struct {
	Name      string
	URL       string
	Headers   map[string]string
	Enabled   *bool
	TimeoutMS int
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
	if in.TimeoutMS != 0 {
		add("timeout_ms", validMCPTimeout(in.TimeoutMS))
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

// MCPCatalogNotifier hears that a tenant's servers or catalog changed, so the
// gateway serves the change at once.
type MCPCatalogNotifier interface {
	MCPCatalogChanged(ctx context.Context, tenantID string)
}

// MCPServerService registers tenants' upstream MCP servers and keeps their
// tool catalogs. Management methods act for the Actor in the context and ask
// the management policy (target type mcp_server, owner user_id) before
// touching anything; the methods without an actor serve the gateway and its
// scheduler.
type MCPServerService struct {
	Store     MCPStore
	Policy    Decider
	Upstreams MCPUpstreams       // nil: every sync fails as unavailable
	Notifier  MCPCatalogNotifier // nil: nobody listens
	Now       func() time.Time   // nil: time.Now
	Rand      io.Reader          // nil: crypto/rand
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

func (s *MCPServerService) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// CreateServer registers a server owned by the acting user and, when it is
// enabled, syncs its catalog; an upstream that cannot be reached is recorded
// in SyncError, not returned as an error. Returns EUNAUTHORIZED without an
// actor, EINVALID for bad input, EFORBIDDEN when the policy refuses and
// ECONFLICT for a name the tenant already uses.
func (s *MCPServerService) CreateServer(ctx context.Context, in CreateMCPServerInput) (*MCPServer, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	target := ManagementTarget{Type: TargetMCPServer, TenantID: actor.TenantID, UserID: actor.UserID}
	if err := s.allow(ctx, actor, ActionCreate, target); err != nil {
		return nil, err
	}
	now := s.now()
	id, err := NewID(now, s.Rand)
	if err != nil {
		return nil, err
	}
	srv := &MCPServer{
		ID:        id,
		TenantID:  actor.TenantID,
		UserID:    actor.UserID,
		Name:      in.Name,
		URL:       in.URL,
		Headers:   maps.Clone(in.Headers),
		Enabled:   in.Enabled == nil || *in.Enabled,
		TimeoutMS: in.TimeoutMS,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if srv.TimeoutMS == 0 {
		srv.TimeoutMS = DefaultMCPTimeoutMS
	}
	if srv.Headers == nil {
		srv.Headers = map[string]string{}
	}
	ev := s.serverEvent(ctx, actor, AuditMCPServerCreated, srv, map[string]any{"name": srv.Name})
	if err := s.Store.CreateMCPServer(ctx, srv, ev); err != nil {
		return nil, err
	}
	if srv.Enabled {
		srv, err = s.syncAfterChange(ctx, actor, srv)
		if err != nil {
			return nil, err
		}
	}
	s.changed(ctx, srv.TenantID)
	return srv, nil
}

// syncAfterChange syncs a server just created or reconfigured. The change
// stands whatever the upstream answers: an unreachable upstream is recorded
// in SyncError, and a sync overtaken by a newer change gives way to it.
func (s *MCPServerService) syncAfterChange(ctx context.Context, actor *Actor, srv *MCPServer) (*MCPServer, error) {
	report, err := s.sync(ctx, actor, srv)
	switch code := ErrorCode(err); {
	case code == EUNAVAILABLE || code == ECONFLICT:
	case err != nil:
		return nil, err
	}
	if report != nil {
		return report.Server, nil
	}
	return srv, nil
}

// Server returns one server of the actor's tenant. Returns ENOTFOUND when
// absent or in another tenant and EFORBIDDEN when the policy refuses.
func (s *MCPServerService) Server(ctx context.Context, id string) (*MCPServer, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	srv, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	if err := s.allowServer(ctx, actor, ActionRead, srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// ListServers lists servers of the actor's tenant: an admin sees every
// server, anyone else their own unless they filter by another user, which is
// EFORBIDDEN without the right. Returns EINVALID for a bad cursor.
func (s *MCPServerService) ListServers(ctx context.Context, filter MCPServerFilter) (*MCPServerPage, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	filter.TenantID = actor.TenantID
	filter.Limit = clampLimit(filter.Limit)
	if filter.UserID, err = listScope(ctx, s.Policy, actor, TargetMCPServer, filter.UserID); err != nil {
		return nil, err
	}
	return s.Store.FindMCPServers(ctx, filter)
}

// UpdateServer changes a server and records which fields changed (a header
// change by name only). A new URL or headers, or enabling the server, syncs
// its catalog again. Returns ENOTFOUND, EFORBIDDEN, EINVALID and ECONFLICT as
// CreateServer and Server do.
func (s *MCPServerService) UpdateServer(ctx context.Context, id string, upd MCPServerUpdate) (*MCPServer, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	if err := upd.Validate(); err != nil {
		return nil, err
	}
	current, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	if err := s.allowServer(ctx, actor, ActionUpdate, current); err != nil {
		return nil, err
	}
	now := s.now()
	var changed []string
	srv, err := s.Store.UpdateMCPServer(ctx, actor.TenantID, id, func(srv *MCPServer) ([]string, []AuditEvent, error) {
		changed = srv.Apply(upd, now)
		if len(changed) == 0 {
			return nil, nil, nil
		}
		ev := s.serverEvent(ctx, actor, AuditMCPServerUpdated, srv, map[string]any{"changed": changed})
		return changed, []AuditEvent{ev}, nil
	})
	if err != nil {
		return nil, err
	}
	if len(changed) == 0 {
		return srv, nil
	}
	resync := slices.Contains(changed, "url") || slices.Contains(changed, "headers") ||
		slices.Contains(changed, "enabled") && srv.Enabled
	if resync {
		if srv, err = s.syncAfterChange(ctx, actor, srv); err != nil {
			return nil, err
		}
	}
	s.changed(ctx, srv.TenantID)
	return srv, nil
}

// DeleteServer removes a server and its catalog; its tools disappear from
// the gateway at once. Returns ENOTFOUND and EFORBIDDEN as Server does.
func (s *MCPServerService) DeleteServer(ctx context.Context, id string) error {
	actor, err := requireActor(ctx)
	if err != nil {
		return err
	}
	srv, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, id)
	if err != nil {
		return err
	}
	if err := s.allowServer(ctx, actor, ActionDelete, srv); err != nil {
		return err
	}
	ev := s.serverEvent(ctx, actor, AuditMCPServerDeleted, srv, map[string]any{"name": srv.Name})
	if err := s.Store.DeleteMCPServer(ctx, actor.TenantID, id, ev); err != nil {
		return err
	}
	s.changed(ctx, srv.TenantID)
	return nil
}

// SyncServer refreshes a server's catalog from its upstream now (the policy
// action is update) and reports what changed. A failure is recorded in the
// server's SyncError, hiding its tools, and returned as EUNAVAILABLE. Returns
// ENOTFOUND and EFORBIDDEN as Server does and ECONFLICT for a disabled
// server.
func (s *MCPServerService) SyncServer(ctx context.Context, id string) (*MCPSyncReport, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	srv, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	if err := s.allowServer(ctx, actor, ActionUpdate, srv); err != nil {
		return nil, err
	}
	if !srv.Enabled {
		return nil, Errorf(ECONFLICT, "MCP server %q is disabled; enable it to sync", srv.Name)
	}
	report, err := s.sync(ctx, actor, srv)
	if report != nil {
		s.changed(ctx, srv.TenantID)
	}
	return report, err
}

// ListTools lists the catalog of the actor's tenant as ListServers lists
// servers: an admin sees every server's tools, anyone else their own
// servers' tools; with ServerID, the tools of that server if the actor may
// read it. Returns ENOTFOUND for another tenant's server and EINVALID for a
// bad cursor.
func (s *MCPServerService) ListTools(ctx context.Context, filter MCPToolFilter) (*MCPToolPage, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return nil, err
	}
	filter.TenantID = actor.TenantID
	filter.Limit = clampLimit(filter.Limit)
	if filter.ServerID != "" {
		srv, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, filter.ServerID)
		if err != nil {
			return nil, err
		}
		if err := s.allowServer(ctx, actor, ActionRead, srv); err != nil {
			return nil, err
		}
	} else if filter.UserID, err = listScope(ctx, s.Policy, actor, TargetMCPServer, filter.UserID); err != nil {
		return nil, err
	}
	return s.Store.FindMCPTools(ctx, filter)
}

// Catalog returns what the gateway serves for a tenant, headers included.
// It checks no policy: the gateway decides per key.
func (s *MCPServerService) Catalog(ctx context.Context, tenantID string) (*MCPCatalog, error) {
	return s.Store.FindMCPCatalog(ctx, tenantID)
}

// EnabledServers returns every enabled server of every tenant, for the
// scheduler.
func (s *MCPServerService) EnabledServers(ctx context.Context) ([]*MCPServer, error) {
	return s.Store.FindEnabledMCPServers(ctx)
}

// Resync refreshes a server's catalog for keygate itself (the scheduler, an
// upstream's tools/list_changed, a failed call). It audits only what
// changed, so a quiet catalog leaves no trail. A disabled server is left
// alone. Returns ENOTFOUND for an absent server and EUNAVAILABLE, after
// recording it, when the upstream cannot be reached.
func (s *MCPServerService) Resync(ctx context.Context, tenantID, id string) (*MCPSyncReport, error) {
	srv, err := s.Store.FindMCPServerByID(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	if !srv.Enabled {
		return nil, nil
	}
	report, err := s.sync(ctx, nil, srv)
	if report != nil {
		s.changed(ctx, tenantID)
	}
	return report, err
}

// errStaleSync stops a sync whose server was reconfigured while its
// upstream was being asked: the tools may be the old URL's, and the change
// started its own sync.
var errStaleSync = errors.New("the server changed during the sync")

// sync asks the upstream for its tools, bounded by the server's timeout, and
// saves the outcome with an audit event: always for an actor, for keygate
// itself only when the catalog or the server's health changed. The report
// is nil when nothing was saved.
func (s *MCPServerService) sync(ctx context.Context, actor *Actor, srv *MCPServer) (*MCPSyncReport, error) {
	fetched, fetchErr := s.fetchTools(ctx, srv)
	tools, skipped := s.catalogFrom(srv, fetched)
	if fetchErr == nil && len(tools) > MaxMCPToolsPerServer {
		fetchErr = Errorf(EUNAVAILABLE, "the upstream offers %d tools; at most %d are served", len(tools), MaxMCPToolsPerServer)
	}
	now := s.now()
	report := &MCPSyncReport{Skipped: skipped}
	saved, err := s.Store.SaveMCPSync(ctx, srv.TenantID, srv.ID, func(cur *MCPServer, old []*MCPTool) (*MCPSync, error) {
		if !cur.SameConfig(srv) || !cur.UpdatedAt.Equal(srv.UpdatedAt) {
			return nil, errStaleSync
		}
		wasAvailable, prevErr := cur.Available(), cur.SyncError
		cur.LastSyncedAt = &now
		out := &MCPSync{}
		if fetchErr != nil {
			cur.SyncError = ErrorMessage(fetchErr)
			report.Tools = old
		} else {
			cur.SyncError = ""
			report.Tools = tools
			report.Added, report.Removed, report.Changed = diffTools(old, tools)
		}
		catalogChanged := len(report.Added)+len(report.Removed)+len(report.Changed) > 0
		if catalogChanged {
			// An unchanged catalog is not rewritten on every scheduled sync.
			out.Tools = tools
		}
		if actor == nil && !catalogChanged && cur.Available() == wasAvailable && cur.SyncError == prevErr {
			// Nothing a person needs to know; keep the trail quiet.
			return out, nil
		}
		details := map[string]any{
			"name": cur.Name, "tools": len(report.Tools),
			"added": nonNil(report.Added), "removed": nonNil(report.Removed), "changed": nonNil(report.Changed),
		}
		if len(skipped) > 0 {
			details["skipped"] = skipped
		}
		var ev AuditEvent
		if actor != nil {
			ev = s.serverEvent(ctx, actor, AuditMCPServerSynced, cur, details)
		} else {
			ev = s.systemEvent(ctx, AuditMCPServerSynced, cur, details)
		}
		if fetchErr != nil {
			ev.Outcome, ev.Reason = OutcomeFailure, cur.SyncError
		}
		out.Events = []AuditEvent{ev}
		return out, nil
	})
	if errors.Is(err, errStaleSync) {
		return nil, Errorf(ECONFLICT, "MCP server %q changed during the sync; its new settings are synced instead", srv.Name)
	}
	if err != nil {
		return nil, err
	}
	report.Server = saved
	for _, t := range report.Tools {
		t.ServerName, t.Available = saved.Name, saved.Available()
		t.ExposedName = ExposedToolName(saved.Name, t.Name)
	}
	if report.Tools == nil {
		report.Tools = []*MCPTool{}
	}
	report.Added, report.Removed, report.Changed, report.Skipped =
		nonNil(report.Added), nonNil(report.Removed), nonNil(report.Changed), nonNil(report.Skipped)
	if fetchErr != nil {
		return report, Errorf(EUNAVAILABLE, "MCP server %q could not be synced: %s", srv.Name, saved.SyncError)
	}
	return report, nil
}

func (s *MCPServerService) fetchTools(ctx context.Context, srv *MCPServer) ([]*MCPTool, error) {
	if s.Upstreams == nil {
		return nil, Errorf(EUNAVAILABLE, "no MCP gateway is running to reach the upstream")
	}
	ctx, cancel := context.WithTimeout(ctx, srv.Timeout())
	defer cancel()
	tools, err := s.Upstreams.ListMCPTools(ctx, srv)
	if err != nil {
		if ErrorCode(err) != EUNAVAILABLE {
			// Only the gateway's own, scrubbed messages are kept.
			return nil, Errorf(EUNAVAILABLE, "the upstream could not be reached")
		}
		return nil, err
	}
	return tools, nil
}

// catalogFrom turns an upstream's tools into srv's catalog, leaving out (and
// naming, with why) the tools keygate cannot expose: a name outside the MCP
// specification's characters or too long to be a scope entry, a duplicate,
// an input schema that is not an object schema, a definition over
// MaxMCPToolBytes.
func (s *MCPServerService) catalogFrom(srv *MCPServer, fetched []*MCPTool) ([]*MCPTool, []string) {
	tools := make([]*MCPTool, 0, len(fetched))
	var skipped []string
	seen := make(map[string]bool, len(fetched))
	for _, f := range fetched {
		if f == nil {
			continue
		}
		if why := validUpstreamTool(srv.Name, f); why != "" {
			skipped = append(skipped, fmt.Sprintf("%.140q: %s", f.Name, why))
			continue
		}
		if seen[f.Name] {
			skipped = append(skipped, fmt.Sprintf("%q: listed twice", f.Name))
			continue
		}
		seen[f.Name] = true
		tools = append(tools, &MCPTool{
			ServerID:     srv.ID,
			ServerName:   srv.Name,
			TenantID:     srv.TenantID,
			Name:         f.Name,
			ExposedName:  ExposedToolName(srv.Name, f.Name),
			Title:        f.Title,
			Description:  f.Description,
			InputSchema:  compactJSON(f.InputSchema),
			OutputSchema: compactJSON(f.OutputSchema),
			Annotations:  compactJSON(f.Annotations),
		})
	}
	slices.SortFunc(tools, func(a, b *MCPTool) int { return strings.Compare(a.Name, b.Name) })
	return tools, skipped
}

func validUpstreamTool(server string, t *MCPTool) string {
	if t.Name == "" || len(t.Name) > MaxMCPToolNameLen {
		return fmt.Sprintf("a tool name must be 1 to %d characters", MaxMCPToolNameLen)
	}
	for i := 0; i < len(t.Name); i++ {
		if !isAlnum(t.Name[i]) && strings.IndexByte("_-.", t.Name[i]) < 0 {
			return "a tool name may only contain A-Z a-z 0-9 _ - ."
		}
	}
	if n := len(ExposedToolName(server, t.Name)); n > MaxResourceIDLen {
		return fmt.Sprintf("the exposed name would be %d characters; scope entries hold at most %d", n, MaxResourceIDLen)
	}
	var schema map[string]any
	if err := json.Unmarshal(t.InputSchema, &schema); err != nil || schema == nil || schema["type"] != "object" {
		return `the input schema must be a JSON object with "type": "object"`
	}
	for _, raw := range []json.RawMessage{t.OutputSchema, t.Annotations} {
		if len(raw) > 0 && !json.Valid(raw) {
			return "the output schema or annotations are not valid JSON"
		}
	}
	if size := len(t.Title) + len(t.Description) + len(t.InputSchema) + len(t.OutputSchema) + len(t.Annotations); size > MaxMCPToolBytes {
		return fmt.Sprintf("the definition is %d bytes; at most %d are kept", size, MaxMCPToolBytes)
	}
	return ""
}

// diffTools names the tools added, removed and changed between two
// catalogs. Schemas compare as JSON values, since a database may reorder an
// object's members.
func diffTools(old, cur []*MCPTool) (added, removed, changed []string) {
	before := make(map[string]*MCPTool, len(old))
	for _, t := range old {
		before[t.Name] = t
	}
	for _, t := range cur {
		o, ok := before[t.Name]
		switch {
		case !ok:
			added = append(added, t.Name)
		case !sameTool(o, t):
			changed = append(changed, t.Name)
		}
		delete(before, t.Name)
	}
	for name := range before {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	return added, removed, changed
}

func sameTool(a, b *MCPTool) bool {
	return a.Title == b.Title && a.Description == b.Description &&
		SameJSON(a.InputSchema, b.InputSchema) && SameJSON(a.OutputSchema, b.OutputSchema) &&
		SameJSON(a.Annotations, b.Annotations)
}

// SameJSON reports whether two JSON documents hold the same value; empty and
// null are the same absent value.
func SameJSON(a, b json.RawMessage) bool {
	absent := func(r json.RawMessage) bool { r = bytes.TrimSpace(r); return len(r) == 0 || string(r) == "null" }
	if absent(a) || absent(b) {
		return absent(a) == absent(b)
	}
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// compactJSON drops insignificant space; absent and null become nil.
func compactJSON(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *MCPServerService) allowServer(ctx context.Context, actor *Actor, action string, srv *MCPServer) error {
	return s.allow(ctx, actor, action, ManagementTarget{Type: TargetMCPServer, TenantID: srv.TenantID, UserID: srv.UserID})
}

// allow asks the management policy. It borrows KeyService's check so both
// services turn a refusal into the same EFORBIDDEN with the policy's reasons.
func (s *MCPServerService) allow(ctx context.Context, actor *Actor, action string, target ManagementTarget) error {
	return allowManagement(ctx, s.Policy, actor, action, target)
}

// serverEvent is a management event about srv, built as key events are.
func (s *MCPServerService) serverEvent(ctx context.Context, actor *Actor, action string, srv *MCPServer, details map[string]any) AuditEvent {
	ev := (&KeyService{Now: s.Now}).event(ctx, actor, action, TargetMCPServer, srv.ID, details)
	ev.TenantID = srv.TenantID
	return ev
}

func (s *MCPServerService) systemEvent(ctx context.Context, action string, srv *MCPServer, details map[string]any) AuditEvent {
	info := RequestInfoFromContext(ctx)
	return AuditEvent{
		OccurredAt: s.now(),
		TenantID:   srv.TenantID,
		ActorType:  ActorTypeSystem,
		ActorID:    "keygate",
		Action:     action,
		TargetType: TargetMCPServer,
		TargetID:   srv.ID,
		Outcome:    OutcomeSuccess,
		RequestID:  info.RequestID,
		TraceID:    info.TraceID,
		Details:    details,
	}
}

func (s *MCPServerService) changed(ctx context.Context, tenantID string) {
	if s.Notifier != nil {
		s.Notifier.MCPCatalogChanged(ctx, tenantID)
	}
}

// AuthorizeListing decides checks for a listing, such as the gateway's
// tools/list, in one evaluation however many there are. A deny there means
// "not shown", not a refused attempt, so unlike Authorize it records no
// denial; and the list is the caller's own, so MaxBatchChecks does not
// apply. Returns EUNAUTHORIZED without a principal and EINVALID for a bad
// check.
func (s *KeyService) AuthorizeListing(ctx context.Context, p *Principal, checks []Check) (*AuthorizeResult, error) {
	if p == nil {
		return nil, Errorf(EUNAUTHORIZED, "no authenticated API key")
	}
	now := s.now()
	decisionID, err := NewID(now, s.Rand)
	if err != nil {
		return nil, err
	}
	if len(checks) == 0 {
		return &AuthorizeResult{DecisionID: decisionID, Decisions: []Decision{}}, nil
	}
	var fields []FieldError
	for i, c := range checks {
		fields = append(fields, c.Validate(fmt.Sprintf("checks[%d]", i))...)
	}
	if len(fields) > 0 {
		return nil, Invalid(fields...)
	}
	dc := DecisionContext{Time: now, IP: RequestInfoFromContext(ctx).IP}
	decisions, err := s.Policy.DecideBatch(ctx, p, checks, dc)
	if err != nil {
		return nil, err
	}
	return &AuthorizeResult{DecisionID: decisionID, Decisions: decisions}, nil
}

func validMCPServerName(name string) string {
	if name == "" || len(name) > MaxMCPServerNameLen {
		return fmt.Sprintf("must be 1 to %d characters of a-z 0-9 -", MaxMCPServerNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '-' && (!isAlnum(c) || 'A' <= c && c <= 'Z') {
			return fmt.Sprintf("must be 1 to %d characters of a-z 0-9 -", MaxMCPServerNameLen)
		}
	}
	return ""
}

// validMCPURL accepts an absolute http or https URL without credentials in
// it (they belong in headers, which are never shown) or a fragment. The URL
// is never echoed back, as its query may hold a secret.
func validMCPURL(raw string) string {
	if raw == "" || len(raw) > MaxMCPURLLen {
		return fmt.Sprintf("must be an http or https URL of at most %d characters", MaxMCPURLLen)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "must not contain spaces or control characters"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must use http or https"
	case u.Host == "" || u.Hostname() == "":
		return "must be absolute, with a host"
	case u.User != nil:
		return "must not carry credentials; put them in headers"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	}
	return ""
}

func validMCPTimeout(ms int) string {
	if ms < MinMCPTimeoutMS || ms > MaxMCPTimeoutMS {
		return fmt.Sprintf("must be from %d to %d milliseconds", MinMCPTimeoutMS, MaxMCPTimeoutMS)
	}
	return ""
}

// reservedMCPHeaders are set by the transport, or identify the session, and
// cannot be configured.
var reservedMCPHeaders = []string{
	"accept", "connection", "content-length", "content-type", "host", "keep-alive",
	"last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
}

// validMCPHeaders checks header names and values. Messages name the header
// (a name is not a secret) but never quote a value.
func validMCPHeaders(h map[string]string) []FieldError {
	var fields []FieldError
	if len(h) > MaxMCPHeaders {
		return []FieldError{{Field: "headers", Message: fmt.Sprintf("at most %d headers", MaxMCPHeaders)}}
	}
	total := 0
	seen := make(map[string]bool, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		value := h[name]
		field := "headers." + name
		total += len(name) + len(value)
		lower := strings.ToLower(name)
		switch {
		case !validHeaderName(name):
			fields = append(fields, FieldError{Field: "headers", Message: fmt.Sprintf("a header name must be 1 to %d characters of an HTTP token", MaxMCPHeaderNameLen)})
		case slices.Contains(reservedMCPHeaders, lower):
			fields = append(fields, FieldError{Field: field, Message: "is set by the MCP transport and cannot be configured"})
		case seen[lower]:
			fields = append(fields, FieldError{Field: field, Message: "is given twice (header names ignore case)"})
		case len(value) > MaxMCPHeaderValueLen:
			fields = append(fields, FieldError{Field: field, Message: fmt.Sprintf("the value must be at most %d bytes", MaxMCPHeaderValueLen)})
		case !validHeaderValue(value):
			fields = append(fields, FieldError{Field: field, Message: "the value must not contain CR, LF or other control characters"})
		}
		seen[lower] = true
	}
	if total > MaxMCPHeadersBytes {
		fields = append(fields, FieldError{Field: "headers", Message: fmt.Sprintf("names and values must total at most %d bytes", MaxMCPHeadersBytes)})
	}
	return fields
}

// validHeaderName reports whether s is an HTTP token (RFC 9110, 5.6.2).
func validHeaderName(s string) bool {
	if s == "" || len(s) > MaxMCPHeaderNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte("!#$%&'*+-.^_`|~", s[i]) < 0 {
			return false
		}
	}
	return true
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validHeaderValue refuses control characters but horizontal tab, so no
// value can split a header line.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
