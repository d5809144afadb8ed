package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HTTP server bounds: a client must send its headers within
// ReadHeaderTimeout and its body within ReadTimeout; an idle keep-alive
// connection is closed after IdleTimeout.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

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
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		IdleTimeout:       idleTimeout,
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
