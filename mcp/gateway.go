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
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/keygate/keygate/authz"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// CodeToolDenied is the JSON-RPC error code of a call the policy refused.
// It sits in the implementation-defined range, clear of the codes the MCP
// specification and SDKs give meaning to (-32000 to -32005 for connections
// and transports, -32020 to -32022, -32042). An unknown tool is -32602
// (invalid params), as the MCP specification says.
const CodeToolDenied = -32030

// CodeUpstreamTooLarge is the JSON-RPC error code of a call whose upstream
// answered with more than Options.MaxResponseBytes.
const CodeUpstreamTooLarge = -32031

// CodeRateLimited and CodeUsageExceeded are the JSON-RPC error codes of a
// call refused by the key's rate limit or for lack of credits; the error's
// data says when to try again (retry_after_ms) when that is known.
const (
	CodeRateLimited   = -32032
	CodeUsageExceeded = -32033
)

// Defaults of Options.
const (
	DefaultSyncInterval   = 5 * time.Minute
	DefaultCatalogRefresh = 30 * time.Second
	DefaultResyncBackoff  = 10 * time.Second
	DefaultSessionTimeout = 10 * time.Minute
	// DefaultMaxSessionsPerKey and DefaultMaxSessions bound the client
	// sessions open at once on one instance.
	DefaultMaxSessionsPerKey = 32
	DefaultMaxSessions       = 10_000
	defaultSyncWorkers       = 4
)

// Keys authenticates API keys and decides what they may do;
// *authz.KeyService implements it.
type Keys interface {
	// Authenticate returns KeyInvalid, KeyDisabled or KeyExpired for a
	// refused token and EUNAVAILABLE when keys cannot be looked up.
	Authenticate(ctx context.Context, token string) (*authz.Principal, error)
	// Decide decides a call (a denial is recorded in the audit trail) or,
	// with Listing, what tools/list shows, in one evaluation and recording
	// no denials.
	Decide(ctx context.Context, req authz.DecisionRequest) (*authz.DecisionResult, error)
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
	// Transport carries requests to upstreams; nil: a pooled default that
	// refuses non-public addresses outside AllowedNetworks at dial time.
	// A Transport given here replaces that guard: it must bring its own.
	Transport http.RoundTripper
	// AllowedNetworks are the non-public networks upstreams may be reached
	// in (KEYGATE_MCP_ALLOWED_NETWORKS); none by default.
	AllowedNetworks []netip.Prefix
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

	// MaxSessionsPerKey and MaxSessions bound the client sessions open at
	// once, per key and in all; past either an initialize is refused with
	// 429, and no open session is closed to make room.
	MaxSessionsPerKey int
	MaxSessions       int
	// MaxResponseBytes bounds every answer read from an upstream.
	MaxResponseBytes int64
}

// Gateway serves /mcp and keeps upstream catalogs fresh. It implements
// authz.MCPUpstreams (the service syncs through its sessions) and
// authz.MCPCatalogNotifier (it serves a change as soon as it is made).
type Gateway struct {
	opts     Options
	logger   *slog.Logger
	tracer   trace.Tracer
	calls    metric.Int64Counter
	latency  metric.Float64Histogram
	health   *upstreamHealth
	pool     *pool
	sessions *sessionLimiter
	handler  http.Handler
	slots    chan struct{} // bounds concurrent syncs

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
	_ authz.MCPAddressChecker  = (*Gateway)(nil)
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
		opts.Transport = defaultTransport(opts.AllowedNetworks)
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
	if opts.MaxSessionsPerKey <= 0 {
		opts.MaxSessionsPerKey = DefaultMaxSessionsPerKey
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	meter := opts.MeterProvider.Meter("github.com/keygate/keygate/mcp")
	calls, err := meter.Int64Counter("keygate.mcp.tool_calls",
		metric.WithDescription("MCP tool calls through the gateway, by outcome, tenant_id and upstream"), metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	latency, err := meter.Float64Histogram("keygate.mcp.tool_call.duration",
		metric.WithDescription("Time to decide and proxy an MCP tool call"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(callBuckets...))
	if err != nil {
		return nil, err
	}
	health, err := newUpstreamHealth(meter)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:    opts,
		logger:  opts.Logger,
		tracer:  opts.TracerProvider.Tracer("github.com/keygate/keygate/mcp"),
		calls:   calls,
		latency: latency,
		health:  health,
		slots:   make(chan struct{}, defaultSyncWorkers),
		tenants: make(map[string]*tenant),
		resyncs: make(map[string]*resyncState),
	}
	g.bgCtx, g.bgStop = context.WithCancel(context.Background())
	upstream := &limitTransport{base: opts.Transport, max: opts.MaxResponseBytes}
	g.pool = newPool(upstream, opts.Version, g.sdkLogger(), func(srv *authz.MCPServer) {
		g.logger.Info("MCP upstream says its tools changed; syncing", "server_id", srv.ID, "server", srv.Name)
		g.triggerResync(srv, resyncChanged)
	})
	g.pool.maxResponse = opts.MaxResponseBytes
	if g.sessions, err = newSessionLimiter(opts, meter, g.logger); err != nil {
		return nil, err
	}
	g.handler = g.newHandler()
	return g, nil
}

func (g *Gateway) now() time.Time { return g.opts.Now() }

// Handler is the /mcp endpoint: the SDK's streamable-HTTP handler behind its
// bearer-token middleware.
func (g *Gateway) Handler() http.Handler { return g.handler }

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

// SyncAll starts a sync of every enabled server in the background, at most
// a few at a time, skipping servers already syncing.
func (g *Gateway) SyncAll(ctx context.Context) error {
	servers, err := g.opts.Catalog.EnabledServers(ctx)
	if err != nil {
		return err
	}
	g.health.retain(servers)
	for _, srv := range servers {
		g.triggerResync(srv, resyncScheduled)
	}
	return nil
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
