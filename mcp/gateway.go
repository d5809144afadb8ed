// Package mcp is keygate's MCP gateway: the streamable-HTTP MCP server that
// MCP clients reach at /mcp with an API key. A tenant's upstream MCP servers
// are aggregated into one catalog whose tools are exposed as
// "<server>__<tool>"; each key is shown only the tools its scope allows, and
// every call is decided by the policy before it is proxied upstream.
//
// Built on github.com/modelcontextprotocol/go-sdk for both sides:
//
//   - Every HTTP request passes the SDK's bearer-token middleware, which asks
//     keygate's key service about the key each time, so a session is never a
//     credential: a key revoked mid-session is refused on its next request.
//     The principal rides on the request's auth.TokenInfo, which the SDK
//     hands to the method handlers of that request.
//   - Each tenant has one SDK server holding the tools of its reachable
//     upstreams, so the SDK routes calls, paginates lists and tells
//     connected clients when the catalog changes. A receiving middleware
//     filters tools/list by one policy evaluation for the whole page and
//     decides tools/call before the SDK routes it.
//   - Upstreams are reached through one pooled client session per server,
//     with the server's configured headers and never the client's key.
package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// CodeToolDenied is the JSON-RPC error code of a call the policy refused.
// It sits in the implementation-defined range, clear of the codes the MCP
// specification and SDKs give meaning to (-32000 to -32005 for connections
// and transports, -32020 to -32022, -32042). An unknown tool is -32602
// (invalid params), as the MCP specification says.
const CodeToolDenied = -32030

// Defaults of Options.
const (
	DefaultSyncInterval   = 5 * time.Minute
	DefaultCatalogRefresh = 30 * time.Second
	DefaultResyncBackoff  = 10 * time.Second
	DefaultSessionTimeout = 30 * time.Minute
	defaultSyncWorkers    = 4
)

// Keys authenticates API keys and decides what they may do;
// *authz.KeyService implements it.
type Keys interface {
	// Authenticate returns KeyInvalid, KeyDisabled or KeyExpired for a
	// refused token and EUNAVAILABLE when keys cannot be looked up.
	Authenticate(ctx context.Context, token string) (*authz.Principal, error)
	// Authorize decides a call; a denial is recorded in the audit trail.
	Authorize(ctx context.Context, p *authz.Principal, checks []authz.Check) (*authz.AuthorizeResult, error)
	// AuthorizeListing decides a listing in one evaluation, recording no
	// denials.
	AuthorizeListing(ctx context.Context, p *authz.Principal, checks []authz.Check) (*authz.AuthorizeResult, error)
}

// Catalog is keygate's record of tenants' upstreams;
// *authz.MCPServerService implements it.
type Catalog interface {
	// Catalog returns a tenant's enabled servers and their tools.
	Catalog(ctx context.Context, tenantID string) (*authz.MCPCatalog, error)
	// EnabledServers returns every enabled server, for the scheduler.
	EnabledServers(ctx context.Context) ([]*authz.MCPServer, error)
	// Resync refreshes one server's catalog from its upstream and records
	// the outcome; EUNAVAILABLE when the upstream cannot be reached.
	Resync(ctx context.Context, tenantID, id string) (*authz.MCPSyncReport, error)
}

// Options configures a Gateway; zero values take the defaults.
type Options struct {
	Keys    Keys    // required
	Catalog Catalog // required
	// Audit receives one event per tools/call; nil: calls are not audited.
	Audit          authz.AuditRecorder
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Transport carries requests to upstreams; nil: a pooled default.
	Transport http.RoundTripper
	// SyncInterval is how often Run refreshes every enabled catalog.
	SyncInterval time.Duration
	// CatalogRefresh is how long a tenant's catalog is served before it is
	// read again, so changes made through another instance arrive.
	CatalogRefresh time.Duration
	// ResyncBackoff is the least time between two health checks that
	// failed calls trigger for one upstream.
	ResyncBackoff time.Duration
	// SessionTimeout closes a client's session after this long without a
	// request.
	SessionTimeout time.Duration
	Version        string           // reported to clients and upstreams
	Now            func() time.Time // nil: time.Now
}

// Gateway serves /mcp and keeps upstream catalogs fresh. It implements
// authz.MCPUpstreams (the service syncs through its sessions) and
// authz.MCPCatalogNotifier (it serves a change as soon as it is made).
type Gateway struct {
	opts    Options
	logger  *slog.Logger
	tracer  trace.Tracer
	calls   metric.Int64Counter
	latency metric.Float64Histogram
	pool    *pool
	handler http.Handler
	slots   chan struct{} // bounds concurrent syncs

	mu      sync.Mutex
	tenants map[string]*tenant
	resyncs map[string]*resyncState
	closed  bool
	bg      sync.WaitGroup // background syncs
	bgCtx   context.Context
	bgStop  context.CancelFunc
}

var (
	_ authz.MCPUpstreams       = (*Gateway)(nil)
	_ authz.MCPCatalogNotifier = (*Gateway)(nil)
)

// New returns a gateway. Call Run to keep catalogs fresh and Close to stop.
func New(opts Options) (*Gateway, error) {
	if opts.Keys == nil || opts.Catalog == nil {
		return nil, authz.Errorf(authz.EINVALID, "the MCP gateway needs Keys and a Catalog")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = tracenoop.NewTracerProvider()
	}
	if opts.MeterProvider == nil {
		opts.MeterProvider = metricnoop.NewMeterProvider()
	}
	if opts.Transport == nil {
		opts.Transport = defaultTransport()
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.CatalogRefresh <= 0 {
		opts.CatalogRefresh = DefaultCatalogRefresh
	}
	if opts.ResyncBackoff <= 0 {
		opts.ResyncBackoff = DefaultResyncBackoff
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = DefaultSessionTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	meter := opts.MeterProvider.Meter("github.com/keygate/keygate/mcp")
	calls, err := meter.Int64Counter("keygate.mcp.tool_calls",
		metric.WithDescription("MCP tool calls through the gateway, by outcome"), metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	latency, err := meter.Float64Histogram("keygate.mcp.tool_call.duration",
		metric.WithDescription("Time to decide and proxy an MCP tool call"), metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:    opts,
		logger:  opts.Logger,
		tracer:  opts.TracerProvider.Tracer("github.com/keygate/keygate/mcp"),
		calls:   calls,
		latency: latency,
		slots:   make(chan struct{}, defaultSyncWorkers),
		tenants: make(map[string]*tenant),
		resyncs: make(map[string]*resyncState),
	}
	g.bgCtx, g.bgStop = context.WithCancel(context.Background())
	g.pool = newPool(opts.Transport, opts.Version, g.sdkLogger(), func(srv *authz.MCPServer) {
		g.logger.Info("MCP upstream says its tools changed; syncing", "server_id", srv.ID, "server", srv.Name)
		g.triggerResync(srv, resyncChanged)
	})
	g.handler = g.newHandler()
	return g, nil
}

func (g *Gateway) now() time.Time { return g.opts.Now() }

// Handler is the /mcp endpoint: the SDK's streamable-HTTP handler behind its
// bearer-token middleware.
func (g *Gateway) Handler() http.Handler { return g.handler }

// extraKey names keygate's entry in auth.TokenInfo.Extra.
const extraKey = "keygate"

// requestAuth is what authentication learned about one HTTP request. Method
// handlers read it from that request's TokenInfo; their context belongs to
// the session (it outlives the request that opened it), so the request's id,
// address and span must come from here, not from the context.
type requestAuth struct {
	principal *authz.Principal
	info      authz.RequestInfo
	span      trace.SpanContext
}

// authState carries how authentication failed out of the SDK's middleware
// to challengeWriter.
type authState struct{ unavailable bool }

type authStateKey struct{}

// tokenError is a refused key; it unwraps to auth.ErrInvalidToken so the
// SDK answers 401, with keygate's reason as the body.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return e.msg }
func (e *tokenError) Unwrap() error { return auth.ErrInvalidToken }

func (g *Gateway) newHandler() http.Handler {
	streamable := sdk.NewStreamableHTTPHandler(g.serverFor, &sdk.StreamableHTTPOptions{
		Logger:         g.sdkLogger(),
		SessionTimeout: g.opts.SessionTimeout,
		// The SDK refuses a loopback connection whose Host is not loopback,
		// against DNS rebinding of unauthenticated local servers. Every
		// request here needs an API key a browser never attaches on its own,
		// and keygate commonly sits behind a proxy on the same host, so the
		// check would refuse real clients and protect nothing.
		DisableLocalhostProtection: true,
	})
	// No ResourceMetadataURL and no scopes: the 401 names no OAuth metadata,
	// so clients do not start an OAuth flow keygate does not offer.
	bearer := auth.RequireBearerToken(g.verify, &auth.RequireBearerTokenOptions{
		// A key's expiry is checked by the key service on keygate's clock;
		// TokenInfo carries none.
		AllowMissingExpiration: true,
	})
	inner := bearer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cw, ok := w.(*challengeWriter); ok {
			w = cw.ResponseWriter // authenticated: streams need no wrapper
		}
		streamable.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &authState{}
		r = r.WithContext(context.WithValue(r.Context(), authStateKey{}, st))
		inner.ServeHTTP(&challengeWriter{ResponseWriter: w, state: st}, r)
	})
}

// verify is the SDK's TokenVerifier: it runs on every HTTP request.
func (g *Gateway) verify(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	p, err := g.opts.Keys.Authenticate(ctx, token)
	if err != nil {
		switch code := authz.ErrorCode(err); code {
		case authz.KeyInvalid, authz.KeyDisabled, authz.KeyExpired, authz.EUNAUTHORIZED:
			return nil, &tokenError{msg: authz.ErrorMessage(err)}
		case authz.EUNAVAILABLE:
			if st, ok := ctx.Value(authStateKey{}).(*authState); ok {
				st.unavailable = true
			}
		default:
			g.requestLogger(authz.RequestInfoFromContext(ctx)).Error("MCP authentication failed", "err", err)
		}
		return nil, errors.New(authz.ErrorMessage(err))
	}
	return &auth.TokenInfo{
		// The SDK binds a session to the UserID that opened it, so another
		// key cannot ride on a session it did not start.
		UserID: p.KeyID,
		Extra: map[string]any{extraKey: &requestAuth{
			principal: p,
			info:      authz.RequestInfoFromContext(ctx),
			span:      trace.SpanContextFromContext(ctx),
		}},
	}, nil
}

// challengeWriter completes the SDK's authentication answers: a 401 names
// keygate's realm, as RFC 6750 asks, and keys that cannot be looked up are a
// 503 the client may retry rather than a 500.
type challengeWriter struct {
	http.ResponseWriter
	state *authState
	wrote bool
}

func (w *challengeWriter) WriteHeader(status int) {
	if !w.wrote {
		w.wrote = true
		switch {
		case status == http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="keygate"`)
		case status == http.StatusInternalServerError && w.state.unavailable:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *challengeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *challengeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *challengeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func authFrom(ti *auth.TokenInfo) *requestAuth {
	if ti == nil {
		return nil
	}
	ra, _ := ti.Extra[extraKey].(*requestAuth)
	return ra
}

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
		t.server.AddReceivingMiddleware(g.middleware(t))
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
		if old, ok := t.listed[name]; ok && sameDefinition(old, tool) {
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

func sameDefinition(a, b *authz.MCPTool) bool {
	return a.Title == b.Title && a.Description == b.Description &&
		authz.SameJSON(a.InputSchema, b.InputSchema) && authz.SameJSON(a.OutputSchema, b.OutputSchema) &&
		authz.SameJSON(a.Annotations, b.Annotations)
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
		err = unavailable(err, srv)
		span.SetStatus(codes.Error, authz.ErrorMessage(err))
		return nil, err
	}
	span.SetAttributes(attribute.Int("mcp.tools", len(tools)))
	return tools, nil
}

// middleware puts the policy in front of the SDK's tools/list and
// tools/call for one tenant's server.
func (g *Gateway) middleware(t *tenant) sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			switch method {
			case "tools/list":
				return g.listTools(ctx, t, next, method, req)
			case "tools/call":
				return g.callTool(ctx, t, next, method, req)
			}
			return next(ctx, method, req)
		}
	}
}

// requestContext returns the request's authentication and ctx carrying the
// request's facts (id, address, span) in place of the session's.
func (g *Gateway) requestContext(ctx context.Context, t *tenant, req sdk.Request) (*requestAuth, context.Context, error) {
	var ra *requestAuth
	if extra := req.GetExtra(); extra != nil {
		ra = authFrom(extra.TokenInfo)
	}
	if ra == nil || ra.principal == nil || ra.principal.TenantID != t.id {
		// Unreachable behind the bearer middleware; refuse rather than guess.
		return nil, ctx, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "the request carries no API key"}
	}
	ctx = authz.NewContextWithRequestInfo(ctx, ra.info)
	ctx = authz.NewContextWithPrincipal(ctx, ra.principal)
	if ra.span.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, ra.span)
	}
	return ra, ctx, nil
}

// sdkLogger is the logger handed to the go-sdk: warnings and errors only,
// since it logs every session's start and end at info, a line per client
// that keygate's request log already covers.
func (g *Gateway) sdkLogger() *slog.Logger {
	return slog.New(minLevel{Handler: g.logger.Handler(), min: slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

func (g *Gateway) requestLogger(info authz.RequestInfo) *slog.Logger {
	return g.logger.With(slog.String("request_id", info.RequestID))
}

func internalError(msg string) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: msg}
}

func toolCheck(p *authz.Principal, name string) authz.Check {
	return authz.Check{
		Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: name, TenantID: p.TenantID},
		Action:   authz.ActionMCPToolCall,
	}
}

// listTools answers tools/list with the page of the tenant's reachable tools
// the key may call, decided in one policy evaluation.
func (g *Gateway) listTools(ctx context.Context, t *tenant, next sdk.MethodHandler, method string, req sdk.Request) (sdk.Result, error) {
	ra, ctx, err := g.requestContext(ctx, t, req)
	if err != nil {
		return nil, err
	}
	ctx, span := g.tracer.Start(ctx, "mcp.tools/list")
	defer span.End()
	if _, err := g.catalog(ctx, t); err != nil {
		g.requestLogger(ra.info).Error("MCP catalog not read", "err", err)
		span.SetStatus(codes.Error, "catalog")
		return nil, internalError("the tool catalog cannot be read right now")
	}
	res, err := next(ctx, method, req)
	if err != nil {
		return nil, err
	}
	page, ok := res.(*sdk.ListToolsResult)
	if !ok || len(page.Tools) == 0 {
		return res, nil
	}
	p := ra.principal
	checks := make([]authz.Check, len(page.Tools))
	for i, tool := range page.Tools {
		checks[i] = toolCheck(p, tool.Name)
	}
	decided, err := g.opts.Keys.AuthorizeListing(ctx, p, checks)
	if err != nil {
		g.requestLogger(ra.info).Error("MCP tool list not decided", "err", err)
		span.SetStatus(codes.Error, "decision")
		return nil, internalError("the tool list cannot be decided right now")
	}
	// A new result: the page's tools belong to the SDK server.
	out := &sdk.ListToolsResult{Meta: page.Meta, NextCursor: page.NextCursor, Tools: make([]*sdk.Tool, 0, len(page.Tools))}
	for i, tool := range page.Tools {
		if decided.Decisions[i].Allow {
			out.Tools = append(out.Tools, tool)
		}
	}
	span.SetAttributes(attribute.Int("mcp.tools.offered", len(page.Tools)), attribute.Int("mcp.tools.listed", len(out.Tools)),
		attribute.String("keygate.decision_id", decided.DecisionID))
	if g.logger.Enabled(ctx, slog.LevelDebug) {
		g.requestLogger(ra.info).Debug("MCP tools listed", "key_id", p.KeyID, "offered", len(page.Tools), "listed", len(out.Tools), "decision_id", decided.DecisionID)
	}
	return out, nil
}

// Results of a tool call, the "result" of its audit event and the outcome
// attribute of keygate.mcp.tool_calls.
const (
	resultOK            = "ok"             // proxied; the tool succeeded
	resultToolError     = "tool_error"     // proxied; the tool reported an error
	resultDenied        = "denied"         // the policy refused
	resultUnknown       = "unknown_tool"   // no such tool in the catalog
	resultUnavailable   = "unavailable"    // the upstream could not be reached
	resultTimeout       = "timeout"        // the upstream did not answer in time
	resultUpstreamError = "upstream_error" // the upstream refused the call
	resultError         = "error"          // keygate failed
)

// callRecord follows one tools/call from the decision through the proxy to
// its audit event.
type callRecord struct {
	name       string // as the client sent it
	allowed    bool
	decisionID string
	reasons    []string
	tool       *authz.MCPTool
	server     *authz.MCPServer
	result     string
	reason     string // why it failed, scrubbed of secrets
}

type callRecordKey struct{}

// callTool decides tools/call first: a denied or unknown tool is a JSON-RPC
// error and the upstream is not contacted. An allowed call goes to the SDK,
// which routes it to proxy.
func (g *Gateway) callTool(ctx context.Context, t *tenant, next sdk.MethodHandler, method string, req sdk.Request) (res sdk.Result, err error) {
	start := time.Now()
	ra, ctx, err := g.requestContext(ctx, t, req)
	if err != nil {
		return nil, err
	}
	params, _ := req.GetParams().(*sdk.CallToolParamsRaw)
	if params == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "tools/call needs params"}
	}
	rec := &callRecord{name: params.Name}
	ctx, span := g.tracer.Start(ctx, "mcp.tools/call", trace.WithAttributes(attribute.String("mcp.tool.name", truncate(params.Name, authz.MaxResourceIDLen))))
	defer func() { g.finishCall(ctx, span, ra, rec, start, err) }()

	v, err := g.catalog(ctx, t)
	if err != nil {
		rec.result, rec.reason = resultError, "the catalog could not be read"
		g.requestLogger(ra.info).Error("MCP catalog not read", "err", err)
		return nil, internalError("the tool catalog cannot be read right now")
	}
	decided, err := g.opts.Keys.Authorize(ctx, ra.principal, []authz.Check{toolCheck(ra.principal, params.Name)})
	if err != nil {
		if authz.ErrorCode(err) == authz.EINVALID {
			rec.result, rec.reason = resultUnknown, "the tool name is not valid"
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %.200q: a tool name is 1 to %d characters", params.Name, authz.MaxResourceIDLen)}
		}
		rec.result, rec.reason = resultError, "the call could not be decided"
		g.requestLogger(ra.info).Error("MCP tool call not decided", "err", err)
		return nil, internalError("the call cannot be decided right now")
	}
	rec.decisionID, rec.reasons = decided.DecisionID, decided.Decisions[0].Reasons
	if !decided.Allowed() {
		rec.result, rec.reason = resultDenied, strings.Join(rec.reasons, "; ")
		return nil, deniedError(params.Name, decided)
	}
	rec.allowed = true
	tool := v.tools[params.Name]
	if tool == nil {
		rec.result, rec.reason = resultUnknown, "no such tool in the tenant's catalog"
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", params.Name)}
	}
	srv := v.servers[tool.ServerID]
	rec.tool, rec.server = tool, srv
	if !srv.Available() {
		// Hidden since its last sync failed: say so without contacting it,
		// and let a (rate-limited) health check bring it back.
		g.triggerResync(srv, resyncFailure)
		rec.result, rec.reason = resultUnavailable, "hidden since its last sync failed: "+srv.SyncError
		return errorResult(fmt.Sprintf("tool %q is unavailable: MCP server %q could not be reached at its last sync; try again later", params.Name, srv.Name)), nil
	}
	res, err = next(context.WithValue(ctx, callRecordKey{}, rec), method, req)
	if rec.result == "" {
		// The SDK answered without reaching proxy: the tool left its
		// registry between the decision and the call.
		rec.result, rec.reason = resultUnknown, "the tool left the catalog during the call"
	}
	return res, err
}

// deniedError is the JSON-RPC error of a refused call: which tool, why, and
// the decision id to find it in the audit trail.
func deniedError(name string, d *authz.AuthorizeResult) error {
	reasons := d.Decisions[0].Reasons
	why := strings.Join(reasons, "; ")
	if why == "" {
		why = "the policy gave no reason"
	}
	data, _ := json.Marshal(map[string]any{"tool": name, "reasons": reasons, "decision_id": d.DecisionID})
	return &jsonrpc.Error{
		Code:    CodeToolDenied,
		Message: fmt.Sprintf("tool %q is not allowed for this API key: %s", name, why),
		Data:    data,
	}
}

func errorResult(text string) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}}
}

// proxy is the SDK tool handler of every exposed tool: it forwards the call
// callTool allowed to the tool's upstream, within the server's timeout, and
// hands back the upstream's result as it came. An upstream that is down or
// slow is an error result for this call alone.
func (g *Gateway) proxy(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	rec, _ := ctx.Value(callRecordKey{}).(*callRecord)
	if rec == nil || !rec.allowed || rec.server == nil {
		// Never forward a call that did not pass the decision.
		return nil, internalError("the call was not decided")
	}
	srv := rec.server
	cctx, cancel := context.WithTimeout(ctx, srv.Timeout())
	defer cancel()
	res, err := g.pool.call(cctx, srv, rec.tool.Name, req.Params.Arguments)
	rpcErr, answered := upstreamAnswer(err)
	switch {
	case err == nil:
		rec.result = resultOK
		if res.IsError {
			rec.result = resultToolError
		}
		return &sdk.CallToolResult{Meta: res.Meta, Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}, nil
	case callTimeout(cctx, err):
		rec.result, rec.reason = resultTimeout, upstreamError(context.DeadlineExceeded, srv)
		return errorResult(fmt.Sprintf("tool %q timed out: MCP server %q did not answer within %s", rec.name, srv.Name, srv.Timeout())), nil
	case answered:
		rec.result, rec.reason = resultUpstreamError, upstreamError(rpcErr, srv)
		return nil, &jsonrpc.Error{Code: rpcErr.Code, Message: rpcErr.Message, Data: rpcErr.Data}
	default:
		rec.result, rec.reason = resultUnavailable, upstreamError(err, srv)
		g.triggerResync(srv, resyncFailure)
		return errorResult(fmt.Sprintf("tool %q is unavailable: MCP server %q could not be reached; try again later", rec.name, srv.Name)), nil
	}
}

// finishCall records a call: its audit event, the counter, the span and a
// log line. Arguments and results are never recorded.
func (g *Gateway) finishCall(ctx context.Context, span trace.Span, ra *requestAuth, rec *callRecord, start time.Time, err error) {
	elapsed := time.Since(start)
	if rec.result == "" {
		rec.result = resultError
	}
	outcome := authz.OutcomeFailure
	switch rec.result {
	case resultOK, resultToolError:
		outcome = authz.OutcomeSuccess
	case resultDenied:
		outcome = authz.OutcomeDenied
	}
	name := truncate(rec.name, authz.MaxResourceIDLen)
	attrs := []attribute.KeyValue{attribute.String("outcome", rec.result)}
	g.calls.Add(ctx, 1, metric.WithAttributes(attrs...))
	g.latency.Record(ctx, elapsed.Seconds(), metric.WithAttributes(attrs...))
	span.SetAttributes(attribute.String("mcp.call.result", rec.result), attribute.Bool("keygate.allowed", rec.allowed),
		attribute.String("keygate.decision_id", rec.decisionID))
	if outcome == authz.OutcomeFailure {
		span.SetStatus(codes.Error, rec.result)
	}
	span.End()

	details := map[string]any{
		"result":      rec.result,
		"allowed":     rec.allowed,
		"duration_ms": float64(elapsed.Microseconds()) / 1000,
		"decision_id": rec.decisionID,
	}
	if rec.server != nil {
		details["server"], details["server_id"], details["tool"] = rec.server.Name, rec.server.ID, rec.tool.Name
	}
	p := ra.principal
	if g.opts.Audit != nil {
		g.opts.Audit.Record(authz.AuditEvent{
			OccurredAt: g.now(),
			TenantID:   p.TenantID,
			ActorType:  authz.ActorTypeAPIKey,
			ActorID:    p.KeyID,
			Action:     authz.AuditMCPToolCalled,
			TargetType: string(authz.ResourceMCPTool),
			TargetID:   name,
			Outcome:    outcome,
			Reason:     rec.reason,
			IP:         ra.info.IP,
			UserAgent:  ra.info.UserAgent,
			RequestID:  ra.info.RequestID,
			TraceID:    ra.info.TraceID,
			Details:    details,
		})
	}
	level := slog.LevelDebug
	switch rec.result {
	case resultDenied, resultUnknown:
		level = slog.LevelInfo
	case resultUnavailable, resultTimeout, resultError:
		level = slog.LevelWarn
	}
	if !g.logger.Enabled(ctx, level) {
		return
	}
	g.requestLogger(ra.info).LogAttrs(ctx, level, "MCP tool call",
		slog.String("key_id", p.KeyID), slog.String("tool", name), slog.String("result", rec.result),
		slog.Duration("duration", elapsed), slog.String("reason", rec.reason))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Kinds of resync.
const (
	resyncScheduled = iota // the scheduler: skipped while one runs
	resyncChanged          // the upstream announced a change: runs again after one in flight
	resyncFailure          // a call failed: at most once per ResyncBackoff
)

type resyncState struct {
	running bool
	again   bool
	last    time.Time
}

// triggerResync syncs srv in the background, one sync per server at a time
// and at most defaultSyncWorkers at once.
func (g *Gateway) triggerResync(srv *authz.MCPServer, kind int) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	st := g.resyncs[srv.ID]
	if st == nil {
		st = &resyncState{}
		g.resyncs[srv.ID] = st
	}
	now := g.now()
	switch {
	case st.running:
		st.again = st.again || kind == resyncChanged
		g.mu.Unlock()
		return
	case kind == resyncFailure && !st.last.IsZero() && now.Sub(st.last) < g.opts.ResyncBackoff:
		g.mu.Unlock()
		return
	}
	st.running, st.last = true, now
	g.bg.Add(1)
	g.mu.Unlock()
	go g.runResync(srv, st)
}

func (g *Gateway) runResync(srv *authz.MCPServer, st *resyncState) {
	defer g.bg.Done()
	for {
		select {
		case g.slots <- struct{}{}:
		case <-g.bgCtx.Done():
			g.mu.Lock()
			st.running = false
			g.mu.Unlock()
			return
		}
		// Bounded by the server's timeout inside; this bounds the database.
		ctx, cancel := context.WithTimeout(g.bgCtx, srv.Timeout()+30*time.Second)
		_, err := g.opts.Catalog.Resync(ctx, srv.TenantID, srv.ID)
		cancel()
		<-g.slots
		switch code := authz.ErrorCode(err); {
		case err == nil:
		case code == authz.EUNAVAILABLE:
			g.logger.Info("MCP upstream unreachable; its tools are hidden", "server_id", srv.ID, "server", srv.Name, "reason", authz.ErrorMessage(err))
		case code == authz.ENOTFOUND || code == authz.ECONFLICT:
		default:
			g.logger.Warn("MCP sync failed", "server_id", srv.ID, "server", srv.Name, "err", err)
		}
		g.mu.Lock()
		if st.again && !g.closed {
			st.again, st.last = false, g.now()
			g.mu.Unlock()
			continue
		}
		st.running = false
		g.mu.Unlock()
		return
	}
}

// SyncAll starts a sync of every enabled server in the background, at most
// a few at a time, skipping servers already syncing.
func (g *Gateway) SyncAll(ctx context.Context) error {
	servers, err := g.opts.Catalog.EnabledServers(ctx)
	if err != nil {
		return err
	}
	for _, srv := range servers {
		g.triggerResync(srv, resyncScheduled)
	}
	return nil
}

// Run syncs every enabled server now and every SyncInterval until ctx ends.
func (g *Gateway) Run(ctx context.Context) {
	ticker := time.NewTicker(g.opts.SyncInterval)
	defer ticker.Stop()
	for {
		if err := g.SyncAll(ctx); err != nil && ctx.Err() == nil {
			g.logger.Warn("MCP scheduled sync not started", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// WaitIdle waits until the background syncs started so far are done.
func (g *Gateway) WaitIdle() { g.bg.Wait() }

// EndSessions closes every client session, ending their event streams, so
// an HTTP server shutting down is not held open by them.
func (g *Gateway) EndSessions() {
	g.mu.Lock()
	servers := make([]*sdk.Server, 0, len(g.tenants))
	for _, t := range g.tenants {
		servers = append(servers, t.server)
	}
	g.mu.Unlock()
	for _, s := range servers {
		for ss := range s.Sessions() {
			_ = ss.Close()
		}
	}
}

// Close stops background syncs, ends client sessions and closes upstream
// sessions, waiting for syncs in flight until ctx ends.
func (g *Gateway) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.bgStop()
	g.EndSessions()
	done := make(chan struct{})
	go func() {
		g.bg.Wait()
		g.pool.closeAll()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
