package mcp

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/authz"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// TestUpstreamHealth: the upstreams gauge follows the latest sync of each
// enabled server, forgets deleted and disabled ones, and the syncs counter
// counts every outcome but a sync overtaken by a change.
func TestUpstreamHealth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	u, err := newUpstreamHealth(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := &authz.MCPServer{ID: "a"}, &authz.MCPServer{ID: "b"}, &authz.MCPServer{ID: "c"}
	u.synced(ctx, a, nil, false)
	u.synced(ctx, b, authz.Errorf(authz.EUNAVAILABLE, "unreachable"), false)
	u.synced(ctx, c, nil, false)
	u.synced(ctx, c, errors.New("database is locked"), false) // keeps c's last known state
	u.synced(ctx, a, authz.Errorf(authz.ECONFLICT, "changed"), false)
	want := func(note string, states map[string]int64, syncs map[string]int64) {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		gotStates, gotSyncs := map[string]int64{}, map[string]int64{}
		for _, m := range rm.ScopeMetrics[0].Metrics {
			switch data := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, dp := range data.DataPoints {
					v, _ := dp.Attributes.Value("state")
					gotStates[v.AsString()] = dp.Value
				}
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					v, _ := dp.Attributes.Value("outcome")
					gotSyncs[v.AsString()] = dp.Value
				}
			}
		}
		if !equalCounts(gotStates, states) || !equalCounts(gotSyncs, syncs) {
			t.Fatalf("%s: upstreams %v, syncs %v; want %v, %v", note, gotStates, gotSyncs, states, syncs)
		}
	}
	want("after the syncs", map[string]int64{"available": 2, "unavailable": 1}, map[string]int64{"ok": 2, "unavailable": 1, "error": 1})
	u.synced(ctx, b, nil, true) // deleted
	u.retain([]*authz.MCPServer{a})
	want("b deleted, c disabled", map[string]int64{"available": 1, "unavailable": 0}, map[string]int64{"ok": 2, "unavailable": 1, "error": 1})
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
