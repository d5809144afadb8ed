package authz

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"time"
)

// MCPServerService registers tenants' upstream MCP servers and keeps their
// tool catalogs. Management methods act for the Actor in the context and ask
// the management policy (target type mcp_server, owner user_id) before
// touching anything; the methods without an actor serve the gateway and its
// scheduler.
type MCPServerService struct {
	Store     MCPStore
	Policy    Policy
	Upstreams MCPUpstreams       // nil: every sync fails as unavailable
	Notifier  MCPCatalogNotifier // nil: nobody listens
	Addresses MCPAddressChecker  // nil: URLs are checked only when dialled
	Now       func() time.Time   // nil: time.Now
	Rand      io.Reader          // nil: crypto/rand
}

func (s *MCPServerService) now() time.Time { return clock(s.Now) }

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
	if err := allowManagement(ctx, s.Policy, actor, ActionCreate, target); err != nil {
		return nil, err
	}
	if err := s.checkURL(ctx, in.URL); err != nil {
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
		TimeoutMS: DefaultMCPTimeoutMS,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if in.TimeoutMS != nil {
		srv.TimeoutMS = *in.TimeoutMS
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
	srv, err := s.serverFor(ctx, actor, id, ActionRead)
	if err != nil {
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
	if _, err := s.serverFor(ctx, actor, id, ActionUpdate); err != nil {
		return nil, err
	}
	if upd.URL != nil {
		if err := s.checkURL(ctx, *upd.URL); err != nil {
			return nil, err
		}
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
	srv, err := s.serverFor(ctx, actor, id, ActionDelete)
	if err != nil {
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
	srv, err := s.serverFor(ctx, actor, id, ActionUpdate)
	if err != nil {
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
		if _, err := s.serverFor(ctx, actor, filter.ServerID, ActionRead); err != nil {
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
	tools, skipped := catalogFrom(srv, fetched)
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
			"added": NonNil(report.Added), "removed": NonNil(report.Removed), "changed": NonNil(report.Changed),
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
		NonNil(report.Added), NonNil(report.Removed), NonNil(report.Changed), NonNil(report.Skipped)
	if fetchErr != nil {
		return report, Errorf(EUNAVAILABLE, "MCP server %q could not be synced: %s", srv.Name, saved.SyncError)
	}
	return report, nil
}

// checkURL refuses early a URL the gateway would not connect to.
func (s *MCPServerService) checkURL(ctx context.Context, raw string) error {
	if s.Addresses == nil {
		return nil
	}
	return s.Addresses.CheckMCPURL(ctx, raw)
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

// serverFor loads a server of the actor's tenant the policy lets the actor
// take action on. Returns ENOTFOUND when absent or in another tenant and
// EFORBIDDEN when the policy refuses.
func (s *MCPServerService) serverFor(ctx context.Context, actor *Actor, id, action string) (*MCPServer, error) {
	srv, err := s.Store.FindMCPServerByID(ctx, actor.TenantID, id)
	if err != nil {
		return nil, err
	}
	target := ManagementTarget{Type: TargetMCPServer, TenantID: srv.TenantID, UserID: srv.UserID}
	if err := allowManagement(ctx, s.Policy, actor, action, target); err != nil {
		return nil, err
	}
	return srv, nil
}

// serverEvent is a management event about srv, built as key events are.
func (s *MCPServerService) serverEvent(ctx context.Context, actor *Actor, action string, srv *MCPServer, details map[string]any) AuditEvent {
	return managementEvent(ctx, s.now(), actor, action, TargetMCPServer, srv.ID, srv.TenantID, details)
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
