package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
)

// mcpGateway is serve's MCP side: the upstream registry behind
// /api/v1/mcp-servers and the gateway at /mcp, with the scheduler that keeps
// catalogs fresh.
type mcpGateway struct {
	service *authz.MCPServerService
	gateway *mcp.Gateway
	stop    context.CancelFunc
	done    chan struct{}
}

// startMCP wires the registry and the gateway and starts the scheduler,
// which syncs every enabled upstream now and every --mcp-sync-interval.
func startMCP(ctx context.Context, cfg *config, db *storage.DB, keys *authz.KeyService, audit authz.AuditRecorder, tel *telemetry, logger *slog.Logger) (*mcpGateway, error) {
	svc := &authz.MCPServerService{Store: storage.NewMCPStore(db), Policy: keys.Policy}
	gw, err := mcp.New(mcp.Options{
		Keys:           keys,
		Catalog:        svc,
		Audit:          audit,
		Logger:         logger,
		TracerProvider: tel.tracerProvider,
		MeterProvider:  tel.meterProvider,
		SyncInterval:   cfg.MCPSyncInterval,
		Version:        version,
	})
	if err != nil {
		return nil, err
	}
	// Each needs the other: the service syncs through the gateway's upstream
	// sessions and tells it of every change; the gateway reads catalogs and
	// records syncs through the service. Both are wired before either serves.
	svc.Upstreams, svc.Notifier = gw, gw
	runCtx, stop := context.WithCancel(ctx)
	m := &mcpGateway{service: svc, gateway: gw, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		gw.Run(runCtx)
	}()
	return m, nil
}

// mounts puts the gateway on keygate's port.
func (m *mcpGateway) mounts() map[string]http.Handler {
	return map[string]http.Handler{"/mcp": m.gateway.Handler()}
}

// attach ends MCP sessions as soon as srv starts shutting down: their event
// streams never finish on their own, and Shutdown waits for every request.
func (m *mcpGateway) attach(srv *http.Server) {
	srv.RegisterOnShutdown(m.gateway.EndSessions)
}

// close stops the scheduler and closes upstream sessions, waiting for syncs
// in flight until ctx ends. Call it before the audit writer closes, so the
// last calls' events are written.
func (m *mcpGateway) close(ctx context.Context) error {
	m.stop()
	select {
	case <-m.done:
	case <-ctx.Done():
	}
	return m.gateway.Close(ctx)
}
