package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// serverFor gives the SDK the server of the authenticated key's tenant.
func (g *Gateway) serverFor(r *http.Request) *sdk.Server {
	ra := authFrom(auth.TokenInfoFromContext(r.Context()))
	if ra == nil {
		return nil
	}
	t := g.tenant(ra.principal.TenantID)
	if t.view.Load() == nil {
		// Load the catalog before the tenant's first session exists, so
		// registering its tools sends nobody a change notification. A
		// failure is retried by the first list or call.
		_, _ = g.reload(r.Context(), t, false)
	}
	return t.server
}

// tenant is one tenant's SDK server and the catalog it serves. The server
// holds the tools of reachable upstreams only, so the SDK's own listing and
// change notifications follow health as well as the catalog.
type tenant struct {
	id     string
	server *sdk.Server
	dirty  atomic.Bool          // the catalog changed since view was read
	view   atomic.Pointer[view] // what calls and lists are served from
	load   sync.Mutex           // serializes reloads; guards listed
	listed map[string]*authz.MCPTool
}

// view is a tenant's catalog as read at loadedAt; never changed once
// published.
type view struct {
	loadedAt time.Time
	servers  map[string]*authz.MCPServer // by id
	tools    map[string]*authz.MCPTool   // by exposed name
}

func (g *Gateway) tenant(id string) *tenant {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tenants[id]
	if t == nil {
		t = &tenant{id: id, listed: map[string]*authz.MCPTool{}}
		t.server = sdk.NewServer(&sdk.Implementation{Name: "keygate", Version: g.opts.Version}, &sdk.ServerOptions{
			// Tools only, announced with change notifications; no logging
			// capability, which the SDK would otherwise advertise.
			Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{ListChanged: true}},
			Logger:       g.sdkLogger(),
		})
		t.server.AddReceivingMiddleware(captureSession, g.middleware(t))
		g.tenants[id] = t
	}
	return t
}

func (g *Gateway) existingTenant(id string) *tenant {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.tenants[id]
}

// catalog returns the tenant's current view, reading it again when it is
// older than CatalogRefresh or a change was announced.
func (g *Gateway) catalog(ctx context.Context, t *tenant) (*view, error) {
	if v := t.view.Load(); v != nil && !t.dirty.Load() && g.now().Sub(v.loadedAt) < g.opts.CatalogRefresh {
		return v, nil
	}
	return g.reload(ctx, t, false)
}

// reload reads the tenant's catalog and brings its SDK server in line:
// tools of reachable upstreams registered, others removed (which notifies
// connected clients). When the read fails, a view already held is served.
func (g *Gateway) reload(ctx context.Context, t *tenant, force bool) (*view, error) {
	t.load.Lock()
	defer t.load.Unlock()
	if v := t.view.Load(); !force && v != nil && !t.dirty.Load() && g.now().Sub(v.loadedAt) < g.opts.CatalogRefresh {
		return v, nil // another request reloaded it meanwhile
	}
	t.dirty.Store(false)
	cat, err := g.opts.Catalog.Catalog(ctx, t.id)
	if err != nil {
		t.dirty.Store(true)
		if v := t.view.Load(); v != nil {
			g.logger.Warn("MCP catalog not read; serving the previous one", "tenant_id", t.id, "err", err)
			return v, nil
		}
		return nil, err
	}
	v := &view{loadedAt: g.now(), servers: make(map[string]*authz.MCPServer, len(cat.Servers)), tools: make(map[string]*authz.MCPTool, len(cat.Tools))}
	for _, s := range cat.Servers {
		v.servers[s.ID] = s
	}
	for _, tool := range cat.Tools {
		if _, ok := v.servers[tool.ServerID]; ok {
			v.tools[tool.ExposedName] = tool
		}
	}
	g.reconcile(t, v)
	t.view.Store(v)
	g.pool.retain(t.id, v.servers)
	return v, nil
}

// reconcile registers on the tenant's SDK server exactly the tools of v
// whose server is available. The caller holds t.load.
func (g *Gateway) reconcile(t *tenant, v *view) {
	want := make(map[string]*authz.MCPTool, len(v.tools))
	for name, tool := range v.tools {
		if v.servers[tool.ServerID].Available() {
			want[name] = tool
		}
	}
	var gone []string
	for name := range t.listed {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		t.server.RemoveTools(gone...)
	}
	for name, tool := range want {
		if old, ok := t.listed[name]; ok && old.SameDefinition(tool) {
			continue
		}
		if err := g.addTool(t.server, tool); err != nil {
			g.logger.Warn("MCP tool not served", "tenant_id", t.id, "tool", name, "err", err)
			delete(want, name)
		}
	}
	t.listed = want
}

// addTool registers tool under its exposed name. The SDK panics on a schema
// it refuses; the sync already checked schemas, and a refusal here costs
// the tool, not the process.
func (g *Gateway) addTool(s *sdk.Server, tool *authz.MCPTool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the SDK refused its definition: %v", r)
		}
	}()
	st := &sdk.Tool{
		Name:        tool.ExposedName,
		Title:       tool.Title,
		Description: tool.Description,
		InputSchema: tool.InputSchema,
	}
	if len(tool.OutputSchema) > 0 {
		st.OutputSchema = tool.OutputSchema
	}
	if len(tool.Annotations) > 0 {
		var a sdk.ToolAnnotations
		if json.Unmarshal(tool.Annotations, &a) == nil {
			st.Annotations = &a
		}
	}
	s.AddTool(st, g.proxy)
	return nil
}

// MCPCatalogChanged serves a change at once: the tenant's catalog is read
// again and sessions of removed or reconfigured upstreams are closed.
func (g *Gateway) MCPCatalogChanged(ctx context.Context, tenantID string) {
	if t := g.existingTenant(tenantID); t != nil {
		t.dirty.Store(true)
		if _, err := g.reload(ctx, t, true); err != nil {
			g.logger.Warn("MCP catalog not reloaded after a change", "tenant_id", tenantID, "err", err)
		}
		return
	}
	cat, err := g.opts.Catalog.Catalog(ctx, tenantID)
	if err != nil {
		g.logger.Warn("MCP catalog not read after a change", "tenant_id", tenantID, "err", err)
		return
	}
	servers := make(map[string]*authz.MCPServer, len(cat.Servers))
	for _, s := range cat.Servers {
		servers[s.ID] = s
	}
	g.pool.retain(tenantID, servers)
}

// ListMCPTools implements authz.MCPUpstreams on the pooled session of srv.
func (g *Gateway) ListMCPTools(ctx context.Context, srv *authz.MCPServer) ([]*authz.MCPTool, error) {
	ctx, span := g.tracer.Start(ctx, "mcp.upstream.tools/list", trace.WithAttributes(attribute.String("mcp.server.name", srv.Name)))
	defer span.End()
	tools, err := g.pool.listTools(ctx, srv)
	if err != nil {
		if why, tooLarge := tooLargeReason(err); tooLarge {
			err = authz.Errorf(authz.EUNAVAILABLE, "%s", why)
		} else {
			err = unavailable(err, srv)
		}
		span.SetStatus(codes.Error, authz.ErrorMessage(err))
		return nil, err
	}
	span.SetAttributes(attribute.Int("mcp.tools", len(tools)))
	return tools, nil
}
