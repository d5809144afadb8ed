package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// The listeners beside the main one: Prometheus metrics and Envoy's
// ext_authz over gRPC.

// Values of MetricsAddr that are not addresses.
const (
	MetricsOnMain = "main" // /metrics on the main listener, whatever its address
	MetricsOff    = "off"  // no /metrics
)

// Bounds of the ext_authz gRPC listener (docs/operations.md, "Limits and
// abuse"): Envoy sends a request's headers, and its body only when told to.
const (
	grpcMaxMessageBytes = 1 << 20
	grpcMaxHeaderBytes  = 64 << 10
	grpcMaxStreams      = 256 // concurrent Checks per connection
	grpcMaxConnections  = 1024
)

// metricsOnMain reports whether /metrics is served on the main listener:
// when asked to, or by default when that listener is on loopback. A public
// main listener does not serve metrics unless told to: they name upstream
// servers of every tenant.
func (c *Config) metricsOnMain() bool {
	switch c.MetricsAddr {
	case MetricsOnMain:
		return true
	case "":
		return loopbackAddr(c.Addr)
	}
	return false
}

// metricsListenAddr is the metrics listener's own address, "" when none.
func (c *Config) metricsListenAddr() string {
	if c.MetricsAddr == "" || c.MetricsAddr == MetricsOnMain || c.MetricsAddr == MetricsOff {
		return ""
	}
	return c.MetricsAddr
}

// loopbackAddr reports whether addr (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logMetricsPlacement says at start where /metrics is, or why it is not.
func (c *Config) logMetricsPlacement(logger *slog.Logger) {
	switch {
	case c.MetricsAddr == "" && !c.metricsOnMain():
		logger.Warn("GET /metrics is not served: KEYGATE_ADDR is not a loopback address and metrics name every tenant's upstream servers; " +
			"set KEYGATE_METRICS_ADDR to a private address (or to main, to serve them on KEYGATE_ADDR)")
	case c.MetricsAddr == MetricsOff:
		logger.Info("GET /metrics is off (KEYGATE_METRICS_ADDR=off)")
	}
}

// listenExtra opens the metrics and ext_authz listeners the configuration
// asks for, once: Listen opens them with the main one, so their addresses
// are known before Serve.
func (a *App) listenExtra(ctx context.Context) error {
	if addr := a.Config.metricsListenAddr(); addr != "" && a.metricsLn == nil {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s (KEYGATE_METRICS_ADDR): %w", addr, err)
		}
		a.metricsLn = ln
	}
	if addr := a.Config.GRPCAddr; addr != "" && a.grpcLn == nil {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s (KEYGATE_GRPC_ADDR): %w", addr, err)
		}
		a.grpcLn = ln
	}
	return nil
}

// MetricsAddr is the address of the metrics listener once Listen opened
// it; "" when metrics have no listener of their own.
func (a *App) MetricsAddr() string { return addrOf(a.metricsLn) }

// GRPCAddr is the address of the ext_authz gRPC listener once Listen
// opened it; "" when it is off.
func (a *App) GRPCAddr() string { return addrOf(a.grpcLn) }

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// serveExtra serves the metrics and ext_authz listeners until the
// returned function stops them, waiting until ctx ends for Checks in
// flight.
func (a *App) serveExtra(logger *slog.Logger) (func(ctx context.Context), error) {
	var stops []func(context.Context)
	stop := func(ctx context.Context) {
		for _, f := range stops {
			f(ctx)
		}
	}
	a.extraServed = true
	if ln := a.metricsLn; ln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.telemetry.metrics)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Warn("metrics listener stopped", "err", err)
			}
		}()
		logger.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
		stops = append(stops, func(ctx context.Context) { _ = srv.Shutdown(ctx) })
	}
	if ln := a.grpcLn; ln != nil {
		limited, err := newLimitListener(ln, grpcMaxConnections, a.telemetry.meterProvider, "keygate.grpc.connections",
			"ext_authz gRPC connections open; at most 1024")
		if err != nil {
			_ = ln.Close()
			stop(context.Background())
			return nil, err
		}
		srv := a.newGRPCServer(logger)
		go func() {
			if err := srv.Serve(limited); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				logger.Warn("ext_authz gRPC listener stopped", "err", err)
			}
		}()
		logger.Info("Envoy ext_authz (gRPC) listening", "addr", ln.Addr().String(), "tls", a.cert != nil)
		stops = append(stops, func(ctx context.Context) { stopGRPC(ctx, srv) })
	}
	return stop, nil
}

// closeExtra closes the extra listeners Listen opened when Serve never
// served them.
func (a *App) closeExtra() {
	if a.extraServed {
		return
	}
	for _, ln := range []net.Listener{a.metricsLn, a.grpcLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// newGRPCServer is the ext_authz server: bounded messages, headers,
// streams and idle connections; TLS with the main listener's certificate
// when it has one; a panic answers Internal rather than ending the process.
func (a *App) newGRPCServer(logger *slog.Logger) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(grpcMaxMessageBytes),
		grpc.MaxSendMsgSize(grpcMaxMessageBytes),
		grpc.MaxHeaderListSize(grpcMaxHeaderBytes),
		grpc.MaxConcurrentStreams(grpcMaxStreams),
		grpc.ConnectionTimeout(a.Config.HTTPReadHeaderTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: a.Config.HTTPIdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (_ any, err error) {
			defer func() {
				if r := recover(); r != nil {
					logger.Error("panic serving a gRPC call", "method", info.FullMethod, "panic", r)
					err = status.Error(codes.Internal, "internal error")
				}
			}()
			return h(ctx, req)
		}),
	}
	if a.cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(a.cert.tlsConfig())))
	}
	srv := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(srv, a.Server.ExtAuthz())
	return srv
}

// stopGRPC lets Checks in flight finish until ctx ends, then stops.
func stopGRPC(ctx context.Context, srv *grpc.Server) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
	}
}
