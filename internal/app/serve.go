package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// maxHeaderBytes bounds a request's headers; the timeouts and the
// connection cap are settings (Config.HTTP*).
const maxHeaderBytes = 64 << 10

// Listen opens the configured listen address, and the metrics and
// ext_authz listeners when configured (MetricsAddr, GRPCAddr report
// theirs).
func (a *App) Listen(ctx context.Context) (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.Config.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (KEYGATE_ADDR): %w", a.Config.Addr, err)
	}
	if err := a.listenExtra(ctx); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve serves the API and /mcp on ln, the profiler on DebugAddr, metrics
// on MetricsAddr and ext_authz on GRPCAddr when set, until ctx ends; then it stops accepting connections, ends MCP
// sessions and waits up to ShutdownTimeout for requests in flight. Call
// Close after it returns, to write what is queued.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	logger := a.Config.logger()
	debugCtx, stopDebug := context.WithCancel(ctx)
	defer stopDebug()
	if _, err := startDebug(debugCtx, debugOptions{Addr: a.Config.DebugAddr, MutexFraction: a.Config.DebugMutexFraction, BlockRate: a.Config.DebugBlockRate}, logger); err != nil {
		_ = ln.Close()
		return fmt.Errorf("debug listener (KEYGATE_DEBUG_ADDR): %w", err)
	}
	if err := a.listenExtra(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	stopExtra, err := a.serveExtra(logger)
	if err != nil {
		_ = ln.Close()
		return err
	}
	cfg := a.Config
	limited, err := newLimitListener(ln, cfg.HTTPMaxConnections, a.telemetry.meterProvider, "keygate.http.connections",
		"HTTP connections open; at most KEYGATE_HTTP_MAX_CONNECTIONS")
	if err != nil {
		_ = ln.Close()
		stopExtra(ctx)
		return err
	}
	ln = limited
	// A client must send its headers within ReadHeaderTimeout and its
	// whole request within ReadTimeout, take its answer within
	// HTTPWriteTimeout (set per request: MCP event streams have none), and
	// an idle keep-alive connection is closed after IdleTimeout.
	srv := &http.Server{
		Handler:           withWriteDeadline(a.Handler(), cfg.HTTPWriteTimeout),
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// MCP event streams never finish on their own, and Shutdown waits for
	// every request: end the sessions as soon as shutdown starts.
	srv.RegisterOnShutdown(a.Gateway.EndSessions)

	serveErr := make(chan error, 1)
	if a.cert != nil {
		srv.TLSConfig = a.cert.tlsConfig()
		go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { serveErr <- srv.Serve(ln) }()
	}
	select {
	case err := <-serveErr:
		stopExtra(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	defer stopExtra(sctx)
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
