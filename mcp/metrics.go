package mcp

import (
	"context"
	"sync"

	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// callBuckets are the bounds, in seconds, of tool call latencies: from a
// refusal in microseconds to the longest timeout a server may set.
var callBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// Outcomes of the syncs keygate runs itself (keygate.mcp.syncs).
const (
	syncOK          = "ok"
	syncUnavailable = "unavailable" // the upstream could not be reached or read; its tools are hidden
	syncError       = "error"       // keygate could not record the sync
)

// upstreamHealth keeps what the latest sync keygate ran itself said of each
// enabled upstream, for the keygate.mcp.upstreams gauge: one entry per
// server, dropped when the server is deleted or disabled.
type upstreamHealth struct {
	syncs metric.Int64Counter

	mu        sync.Mutex
	available map[string]bool // by server id
}

func newUpstreamHealth(meter metric.Meter) (*upstreamHealth, error) {
	syncs, err := meter.Int64Counter("keygate.mcp.syncs",
		metric.WithDescription("Catalog syncs keygate ran itself (schedule, change notices, failed calls), by outcome (ok, unavailable, error)"),
		metric.WithUnit("{sync}"))
	if err != nil {
		return nil, err
	}
	u := &upstreamHealth{syncs: syncs, available: map[string]bool{}}
	available, unavailable := attribute.NewSet(attribute.String("state", "available")), attribute.NewSet(attribute.String("state", "unavailable"))
	_, err = meter.Int64ObservableGauge("keygate.mcp.upstreams",
		metric.WithDescription("Enabled upstream MCP servers by the state their latest sync left them in (available, unavailable)"),
		metric.WithUnit("{server}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			up, down := u.counts()
			o.Observe(up, metric.WithAttributeSet(available))
			o.Observe(down, metric.WithAttributeSet(unavailable))
			return nil
		}))
	return u, err
}

// synced records the outcome of a sync of srv: err as Resync returned it,
// gone when the server is deleted or disabled.
func (u *upstreamHealth) synced(ctx context.Context, srv *authz.MCPServer, err error, gone bool) {
	outcome := syncOK
	switch code := authz.ErrorCode(err); {
	case code == authz.ECONFLICT:
		return // overtaken by a change, whose own sync follows
	case gone:
	case err == nil:
	case code == authz.EUNAVAILABLE:
		outcome = syncUnavailable
	default:
		outcome = syncError
	}
	u.mu.Lock()
	switch {
	case gone:
		delete(u.available, srv.ID)
	case outcome != syncError:
		u.available[srv.ID] = outcome == syncOK
	}
	u.mu.Unlock()
	if !gone {
		u.syncs.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	}
}

// retain forgets servers that are no longer enabled.
func (u *upstreamHealth) retain(enabled []*authz.MCPServer) {
	keep := make(map[string]bool, len(enabled))
	for _, s := range enabled {
		keep[s.ID] = true
	}
	u.mu.Lock()
	for id := range u.available {
		if !keep[id] {
			delete(u.available, id)
		}
	}
	u.mu.Unlock()
}

func (u *upstreamHealth) counts() (available, unavailable int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, ok := range u.available {
		if ok {
			available++
		} else {
			unavailable++
		}
	}
	return available, unavailable
}

// callAttrs are the attributes of a tool call's metrics: its outcome, and
// the upstream with its tenant (the cardinality limit of the meter
// provider bounds the series however many upstreams tenants register).
func callAttrs(rec *callRecord, tenantID string) metric.MeasurementOption {
	return metric.WithAttributes(attribute.String("outcome", rec.result), attribute.String("tenant_id", tenantID),
		attribute.String("upstream", rec.upstream))
}
