package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg config
	fs := newFlagSet("serve", stderr)
	cfg.bindServe(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(true); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	logger := newLogger(&cfg, stderr)

	tel, err := setupTelemetry(ctx, logger)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	}()

	dbURL := cfg.databaseURL()
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("open database %s: %w", redactURL(dbURL), err)
	}
	defer func() {
		if err := db.Close(); err != nil {
			logger.Warn("close database", "err", err)
		}
	}()
	if cfg.Migrate {
		if err := db.MigrateUp(ctx); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}

	modules, err := readPolicies(cfg.PolicyDir)
	if err != nil {
		return err
	}
	engine, err := authz.NewEngine(ctx, modules, authz.EngineOptions{Observer: tel.observer, DecisionCacheSize: cfg.DecisionCache})
	if err != nil {
		return fmt.Errorf("load policies: %w", err)
	}
	logDecisionCaching(engine, logger)

	secret, devSecret, err := jwtSecret(&cfg)
	if err != nil {
		return err
	}
	jwtCfg := jwtConfig(&cfg, secret)
	verifier, err := server.NewJWTVerifier(ctx, jwtCfg)
	if err != nil {
		return fmt.Errorf("management JWTs: %w", err)
	}

	keyStore := storage.NewKeyStore(db)
	auditStore := storage.NewAuditStore(db)
	auditWriter := authz.NewAuditWriter(auditStore, authz.AuditWriterOptions{
		Buffer: cfg.AuditBuffer, Interval: cfg.FlushInterval, Logger: logger})
	usageWriter := authz.NewUsageWriter(keyStore, cfg.FlushInterval, logger)
	keyCache := authz.NewKeyCache(keyStore, authz.KeyCacheOptions{
		MaxEntries: cfg.KeyCacheSize, TTL: cfg.KeyCacheTTL, NegativeTTL: cfg.NegativeTTL})
	startKeyChangeFeed(ctx, db, keyCache, logger)
	svc := &authz.KeyService{
		Store:    keyStore,
		AuditLog: auditStore,
		Policy:   engine,
		Lookup:   keyCache,
		Notifier: keyCache,
		Events:   auditWriter,
		Usage:    usageWriter,
	}
	mcpGW, err := startMCP(ctx, &cfg, db, svc, auditWriter, tel, logger)
	if err != nil {
		return fmt.Errorf("MCP gateway: %w", err)
	}
	srv, err := server.New(server.Config{
		Keys:           svc,
		JWT:            verifier,
		Ready:          readiness(db),
		Logger:         logger,
		TrustedProxies: cfg.trustedProxies(),
		TracerProvider: tel.httpTracerProvider(),
		Version:        version,
		MCP:            mcpGW.service,
		Mounts:         mcpGW.mounts(),
	})
	if err != nil {
		return err
	}

	if _, err := startDebug(ctx, cfg.DebugAddr, logger); err != nil {
		return fmt.Errorf("debug listener: %w", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	mcpGW.attach(httpSrv)
	addr := ln.Addr().String()
	logger.Info("keygate serving", "addr", "http://"+addr, "database", redactURL(dbURL), "version", version,
		"policies", policySource(cfg.PolicyDir))
	if devSecret {
		token, err := server.SignHS256(jwtCfg, "default", "admin", []string{authz.RoleAdmin}, cfg.TokenTTL)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nkeygate is listening on http://%s\n\nDevelopment admin JWT for tenant \"default\" (valid %s, signed with %s):\n\n    export KEYGATE_TOKEN=%s\n\nMore tokens: keygate token --tenant T --user U [--role admin]\n\n",
			addr, cfg.TokenTTL, "the development secret in "+cfg.DataDir, token)
	}

	if cfg.PolicyDir != "" {
		go reloadOnSIGHUP(ctx, engine, cfg.PolicyDir, logger)
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := httpSrv.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
	}
	if err := mcpGW.close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("MCP gateway: %w", err))
	}
	if err := auditWriter.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("flush audit events: %w", err))
	}
	if err := usageWriter.Close(sctx); err != nil {
		errs = append(errs, fmt.Errorf("flush last_used_at: %w", err))
	}
	if n := auditWriter.Dropped(); n > 0 {
		logger.Warn("audit events were dropped during this run", "dropped", n)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

func readPolicies(dir string) (map[string]string, error) {
	if dir == "" {
		return authz.ReadPolicies(policies.FS())
	}
	modules, err := authz.ReadPolicies(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("read policies from %s: %w", dir, err)
	}
	return modules, nil
}

func policySource(dir string) string {
	if dir == "" {
		return "embedded"
	}
	return dir
}

// reloadOnSIGHUP recompiles the policy folder on SIGHUP; a policy that does
// not compile is logged and the running one stays.
func reloadOnSIGHUP(ctx context.Context, engine *authz.Engine, dir string, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			modules, err := readPolicies(dir)
			if err == nil {
				err = engine.Load(ctx, modules)
			}
			if err != nil {
				logger.Error("policy reload failed; keeping the running policies", "err", err)
				continue
			}
			logger.Info("policies reloaded", "dir", dir, "modules", len(modules))
			logDecisionCaching(engine, logger)
		}
	}
}

// logDecisionCaching says whether policy answers are cached, and if not why,
// so a policy author sees the price of reading the request's time.
func logDecisionCaching(engine *authz.Engine, logger *slog.Logger) {
	if on, why := engine.DecisionCaching(); on {
		logger.Info("policy answers are cached: the policy depends only on principal, resource and action")
	} else {
		logger.Info("policy answers are not cached", "why", why)
	}
}

// redactURL drops credentials from a database URL before it is logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable database URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery = "" // may carry a password parameter
	return u.String()
}
