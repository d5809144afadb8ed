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

// Listen opens the configured listen address.
func (a *App) Listen(ctx context.Context) (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.Config.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (KEYGATE_ADDR): %w", a.Config.Addr, err)
	}
	return ln, nil
}

// Serve serves the API and /mcp on ln, and the profiler on DebugAddr when
// set, until ctx ends; then it stops accepting connections, ends MCP
// sessions and waits up to ShutdownTimeout for requests in flight. Call
// Close after it returns, to write what is queued.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	logger := a.Config.logger()
	debugCtx, stopDebug := context.WithCancel(ctx)
	defer stopDebug()
	if _, err := startDebug(debugCtx, a.Config.DebugAddr, logger); err != nil {
		_ = ln.Close()
		return fmt.Errorf("debug listener (KEYGATE_DEBUG_ADDR): %w", err)
	}
	cfg := a.Config
	limited, err := newLimitListener(ln, cfg.HTTPMaxConnections, a.telemetry.meterProvider)
	if err != nil {
		_ = ln.Close()
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
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}
