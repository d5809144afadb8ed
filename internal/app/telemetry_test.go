package app

import (
	"context"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestDecisionTelemetry: every policy evaluation is a span, and decisions
// are counted by outcome, cached ones too, with their latency recorded.
func TestDecisionTelemetry(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	obs, err := newDecisionObserver(tp.Tracer("test"), mp)
	if err != nil {
		t.Fatal(err)
	}
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	engine, err := authz.NewEngine(ctx, modules, authz.EngineOptions{Observer: obs, DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	p := &authz.Principal{KeyID: "k1", TenantID: "t1", UserID: "u1", Scope: authz.Scope{FlowIDs: []string{"f1"}}}
	for _, id := range []string{"f1", "f2", "f1"} { // the second f1 comes from the cache
		if _, err := engine.Decide(ctx, p, authz.Resource{Type: authz.ResourceFlow, ID: id}, "read", authz.DecisionContext{}); err != nil {
			t.Fatal(err)
		}
	}
	ended := spans.Ended()
	if len(ended) != 2 || ended[0].Name() != "policy.evaluate" {
		t.Fatalf("%d spans (first %q), want 2 policy.evaluate spans: cached answers make none", len(ended), ended[0].Name())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{}
	histograms := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range data.DataPoints {
					outcome, _ := dp.Attributes.Value("outcome")
					cached, _ := dp.Attributes.Value("cached")
					counts[outcome.AsString()+map[bool]string{true: "/cached"}[cached.AsBool()]] += dp.Value
				}
			case metricdata.Histogram[float64]:
				for _, dp := range data.DataPoints {
					histograms += int(dp.Count)
				}
			}
		}
	}
	if counts["allowed"] != 1 || counts["denied"] != 1 || counts["allowed/cached"] != 1 || histograms != 2 {
		t.Fatalf("decisions %v, %d latencies: want one allowed, one denied, one cached allowed and 2 latencies", counts, histograms)
	}
}
