// Package app is keygate's composition root: from one Config it builds the
// whole service (database, policy engine, caches, writers, the key and MCP
// server services, the MCP gateway and the HTTP router) and runs it.
// `keygate serve` and every test harness build keygate here, so there is one
// wiring to get right.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/spool"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
)

// App is one keygate instance, built and wired. Its parts are exported for
// tests and tools; New builds them and Close releases them.
type App struct {
	Config    Config
	DB        *storage.DB
	Engine    *authz.Engine
	KeyCache  *authz.KeyCache
	Keys      *authz.KeyService
	MCP       *authz.MCPServerService
	Gateway   *mcp.Gateway
	Server    *server.Server
	Audit     *authz.AuditWriter // nil when Config.AuditRecorder stands in
	Usage     *authz.UsageWriter
	Feed      *storage.KeyChangeFeed // nil on SQLite
	JWT       server.JWTConfig
	DevSecret bool // JWTs are signed with the development secret in the data folder

	// Refusals folds refused credentials into one audit event per address
	// and reason a minute, in front of Audit (or Config.AuditRecorder).
	Refusals *authz.RefusalAggregator
	// AuthLimiter budgets failed authentications per address; nil when
	// Config.AuthFailureBurst is 0.
	AuthLimiter *authz.FailureLimiter
	// Retention deletes audit events past Config.AuditRetention; nil when
	// they are kept forever.
	Retention *authz.AuditRetention
	// Rollups counts every decision of a key for its usage history.
	Rollups *authz.UsageRollupWriter

	limits *keyLimits // keys' rate limits, credits and usage history
	// DecisionLog records every decision; nil when Config.DecisionLog is
	// off.
	DecisionLog *authz.DecisionLogWriter

	telemetry *telemetry
	policy    *policyManager
	spool     *spool.Audit // nil when off or when Config.AuditRecorder stands in
	cert      *certificate // nil: plain HTTP
	ownDB     bool
	started   atomic.Bool
	bgStop    context.CancelFunc
	bgDone    chan struct{}

	// The listeners beside the main one (listeners.go), opened by Listen
	// or Serve.
	metricsLn, grpcLn net.Listener
	extraServed       bool
}

// New builds an instance from cfg: it opens and migrates the database,
// loads the policies and wires every part. Nothing serves until Serve;
// background work (the change feed, catalog syncs) starts with Start.
func New(ctx context.Context, cfg Config) (_ *App, err error) {
	if err := cfg.ReadSecretFiles(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.logger()
	a := &App{Config: cfg}
	defer func() {
		if err != nil {
			_ = a.Close(context.Background())
		}
	}()

	if cfg.TLSCertFile != "" {
		if a.cert, err = newCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	if a.telemetry, err = setupTelemetry(ctx, logger, cfg.Version); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	keyring, err := cfg.Keyring()
	if err != nil {
		return nil, err
	}
	if err := a.openDB(ctx); err != nil {
		return nil, err
	}
	if a.policy, err = newPolicyManager(cfg, logger, a.telemetry.meterProvider); err != nil {
		return nil, err
	}
	set, err := a.policy.initial(ctx)
	if err != nil {
		return nil, err
	}
	a.Engine, err = authz.NewEngineFromSet(ctx, set, authz.EngineOptions{Observer: a.telemetry.observer, DecisionCacheSize: cfg.DecisionCacheSize})
	if err != nil {
		return nil, fmt.Errorf("load policies from %s: %w", a.policy.source, err)
	}
	a.policy.started(a.Engine, set)
	a.JWT, a.DevSecret, err = cfg.JWT()
	if err != nil {
		return nil, err
	}
	verifier, err := server.NewJWTVerifier(ctx, a.JWT)
	if err != nil {
		return nil, fmt.Errorf("management JWTs: %w", err)
	}

	keyStore, auditStore := storage.NewKeyStore(a.DB), storage.NewAuditStore(a.DB)
	events := cfg.AuditRecorder
	if events == nil {
		if err := a.openAuditSpool(); err != nil {
			return nil, err
		}
		opts := authz.AuditWriterOptions{Buffer: cfg.AuditBuffer, Interval: cfg.FlushInterval, Logger: logger}
		if a.spool != nil {
			opts.Spool = a.spool
		}
		a.Audit = authz.NewAuditWriter(auditStore, opts)
		events = a.Audit
	}
	a.Refusals = authz.NewRefusalAggregator(events, authz.RefusalAggregatorOptions{Now: cfg.Now})
	events = a.Refusals
	if a.AuthLimiter, err = newAuthLimiter(cfg, logger, a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("failed-authentication limit: %w", err)
	}
	if a.Retention, err = newAuditRetention(cfg, auditStore, logger, a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("audit retention: %w", err)
	}
	a.Usage = authz.NewUsageWriter(keyStore, cfg.FlushInterval, logger)
	a.KeyCache = authz.NewKeyCache(keyStore, authz.KeyCacheOptions{MaxEntries: cfg.KeyCacheSize, TTL: cfg.KeyCacheTTL,
		Staleness: cfg.KeyCacheStaleness, NegativeTTL: cfg.NegativeCacheTTL, Now: cfg.Now})
	a.newFeed()
	decisions, err := newDecisionMetrics(a.telemetry.meterProvider)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	a.Keys = &authz.KeyService{
		Store:    keyStore,
		AuditLog: auditStore,
		Policy:   a.Engine,
		Lookup:   a.KeyCache,
		Notifier: a.KeyCache,
		Events:   events,
		Usage:    a.Usage,
		Now:      cfg.Now,
		Limiter:  a.AuthLimiter,
		Metrics:  decisions,
	}
	if a.limits, err = newKeyLimits(cfg, a.DB, keyStore, logger, a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("per-key limits: %w", err)
	}
	a.limits.wire(a.Keys, storage.NewUsageStore(a.DB))
	a.Rollups = a.limits.rollups
	if err := a.openDecisionLog(); err != nil {
		return nil, err
	}
	mcpStore := storage.NewMCPStore(a.DB, keyring)
	// Headers stored before they were sealed are sealed now.
	if n, err := mcpStore.SealHeaders(ctx, true); err != nil {
		return nil, fmt.Errorf("seal stored MCP server headers: %w", err)
	} else if n > 0 {
		logger.Info("sealed the stored headers of MCP servers", "servers", n, "key_id", keyring.CurrentID())
	}
	a.MCP = &authz.MCPServerService{Store: mcpStore, Policy: a.Engine, Now: cfg.Now}
	a.Gateway, err = mcp.New(mcp.Options{
		Keys:            a.Keys,
		Catalog:         a.MCP,
		Audit:           events,
		Logger:          logger,
		TracerProvider:  a.telemetry.tracerProvider,
		MeterProvider:   a.telemetry.meterProvider,
		Transport:       cfg.MCPTransport,
		AllowedNetworks: cfg.MCPAllowedNetworks,
		SyncInterval:    cfg.MCPSyncInterval,
		Version:         cfg.Version,
		Now:             cfg.Now,

		SessionTimeout:    cfg.MCPSessionIdleTimeout,
		MaxSessionsPerKey: cfg.MCPMaxSessionsPerKey,
		MaxSessions:       cfg.MCPMaxSessions,
		MaxResponseBytes:  cfg.MCPMaxResponseBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("MCP gateway: %w", err)
	}
	// Each needs the other: the service syncs through the gateway's
	// upstream sessions and tells it of every change; the gateway reads
	// catalogs and records syncs through the service.
	a.MCP.Upstreams, a.MCP.Notifier, a.MCP.Addresses = a.Gateway, a.Gateway, a.Gateway

	var metricsRoute http.Handler
	if cfg.metricsOnMain() {
		metricsRoute = a.telemetry.metrics
	}
	cfg.logMetricsPlacement(logger)
	a.Server, err = server.New(server.Config{
		Keys:           a.Keys,
		JWT:            verifier,
		Ready:          a.ready,
		ReadyDetails:   a.readyDetails,
		Logger:         logger,
		TrustedProxies: cfg.TrustedProxies,
		TracerProvider: a.telemetry.httpTracerProvider(),
		Version:        cfg.Version,
		MCP:            a.MCP,
		Mounts:         map[string]http.Handler{"/mcp": a.Gateway.Handler()},
		AuthLimiter:    a.AuthLimiter,
		PolicyStatus:   &authz.PolicyStatusService{Policy: a.Engine, Status: a.policy.Status},
		Metrics:        metricsRoute,
	})
	if err != nil {
		return nil, err
	}
	if err := a.registerOutageMetrics(a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if err := a.registerDecisionLogMetrics(a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if err := a.registerCacheMetrics(a.telemetry.meterProvider); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if !a.Engine.MapsHTTP() {
		logger.Warn("the policy does not define data.keygate.http.decision: forward auth and ext_authz deny every request")
	}
	logDecisionCaching(a.Engine, logger)
	return a, nil
}

func (a *App) openDB(ctx context.Context) error {
	if a.Config.DB != nil {
		a.DB = a.Config.DB
	} else {
		dbURL := a.Config.DatabaseURLOrDefault()
		db, err := storage.Open(ctx, dbURL)
		if err != nil {
			return fmt.Errorf("open database %s: %w", RedactURL(dbURL), err)
		}
		a.DB, a.ownDB = db, true
	}
	if a.Config.Migrate {
		if err := a.DB.MigrateUp(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// Handler is the instance's HTTP handler: the whole API and /mcp.
func (a *App) Handler() http.Handler { return a.Server }

// Start runs the background work until ctx ends or Close: the key change
// feed on Postgres (so a key changed on another instance leaves this one's
// cache at once), the scheduler that syncs every enabled upstream MCP
// catalog now and every MCPSyncInterval, the audit and usage retentions,
// and the watch on the policy folder or the polls of the policy bundle.
func (a *App) Start(ctx context.Context) {
	ctx, a.bgStop = context.WithCancel(ctx)
	a.bgDone = make(chan struct{})
	a.started.Store(true)
	feed := a.Feed
	watch := a.policy.watch()
	go func() {
		defer close(a.bgDone)
		done := make(chan struct{})
		if feed != nil {
			go func() {
				defer close(done)
				feed.Run(ctx)
			}()
		} else {
			close(done)
		}
		pruned := make(chan struct{})
		go func() {
			defer close(pruned)
			if a.Retention != nil {
				a.Retention.Run(ctx)
			}
		}()
		usagePruned := make(chan struct{})
		go func() {
			defer close(usagePruned)
			if a.limits.retention != nil {
				a.limits.retention.Run(ctx)
			}
		}()
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			if watch != nil {
				watch(ctx)
			}
		}()
		a.Gateway.Run(ctx)
		<-done
		<-pruned
		<-usagePruned
		<-watched
	}()
}

// ready answers /readyz: the database must answer. A change feed that is
// reconnecting does not make an instance unready (the body says so): a
// cached key is then trusted for KEYGATE_KEY_CACHE_STALENESS only, and the
// cache is emptied once the feed is back.
func (a *App) ready(ctx context.Context) error {
	if err := a.DB.Ping(ctx); err != nil {
		return authz.Errorf(authz.EUNAVAILABLE, "the database does not answer")
	}
	return nil
}

// DevAdminToken signs an admin JWT for tenant "default" with the
// development secret, as `keygate serve` prints at start.
func (a *App) DevAdminToken() (string, error) {
	if !a.DevSecret {
		return "", errors.New("no development secret: JWTs come from the configured secret or identity provider")
	}
	return server.SignHS256(a.JWT, "default", "admin", []string{authz.RoleAdmin}, a.Config.TokenTTL)
}

// Close stops background work, ends MCP sessions, writes every queued audit
// event and last-used time, and closes what New opened, waiting at most
// until ctx ends. Stop serving HTTP first (Serve returns when it has).
func (a *App) Close(ctx context.Context) error {
	var errs []error
	a.closeExtra()
	if a.bgStop != nil {
		a.bgStop()
		a.bgStop = nil
		select {
		case <-a.bgDone:
		case <-ctx.Done():
		}
	}
	if a.Gateway != nil {
		if err := a.Gateway.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("MCP gateway: %w", err))
		}
	}
	if a.Refusals != nil {
		if err := a.Refusals.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush refused credentials: %w", err))
		}
	}
	if a.DecisionLog != nil {
		if err := a.DecisionLog.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush decision logs: %w", err))
		}
		if st := a.DecisionLog.Stats(); st.Dropped+st.Failed > 0 {
			a.Config.logger().Warn("decision log events were lost during this run", "dropped", st.Dropped, "failed", st.Failed)
		}
		a.DecisionLog = nil
	}
	if a.Audit != nil {
		if err := a.Audit.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush audit events: %w", err))
		}
		if n := a.Audit.Dropped(); n > 0 {
			a.Config.logger().Warn("audit events were dropped during this run", "dropped", n)
		}
	}
	if a.spool != nil {
		if n := a.spool.Len(); n > 0 {
			a.Config.logger().Warn("audit events left in the spool for the next start", "events", n, "dir", a.Config.AuditSpoolDir())
		}
		if err := a.spool.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the audit spool: %w", err))
		}
		a.spool = nil
	}
	if a.limits != nil {
		if err := a.limits.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.Usage != nil {
		switch err := a.Usage.Close(ctx); {
		case authz.ErrorCode(err) == authz.EUNAVAILABLE: // a stop during an outage: a hint lost, not a fault
			a.Config.logger().Warn("last_used_at not written: the database does not answer", "err", err)
		case err != nil:
			errs = append(errs, fmt.Errorf("flush last_used_at: %w", err))
		}
	}
	if a.ownDB && a.DB != nil {
		a.ownDB = false
		if err := a.DB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database: %w", err))
		}
	}
	if a.telemetry != nil {
		if err := a.telemetry.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ParseNetworks reads KEYGATE_MCP_ALLOWED_NETWORKS: comma-separated CIDRs.
func ParseNetworks(s string) ([]netip.Prefix, error) { return mcp.ParseNetworks(s) }

// RedactURL drops credentials and the query (which may carry a password)
// from a URL before it is logged.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery = ""
	return u.String()
}
