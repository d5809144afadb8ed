package app

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// BenchmarkDecisionMetrics measures what the always-on metrics add to one
// decision answered from the decision cache: the request counted by
// source and code with its latency, and the cached answer counted.
func BenchmarkDecisionMetrics(b *testing.B) {
	ctx := context.Background()
	tel, err := setupTelemetry(ctx, slog.New(slog.DiscardHandler), "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tel.shutdown(ctx) }()
	m, err := newDecisionMetrics(tel.meterProvider)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("request", func(b *testing.B) { // keygate.decision.requests and its latency
		b.ReportAllocs()
		for b.Loop() {
			m.Decided(ctx, authz.SourceAuthorize, authz.CodeAllowed, 9*time.Microsecond)
		}
	})
	b.Run("cached-answer", func(b *testing.B) { // keygate.decisions{cached="true"}
		b.ReportAllocs()
		for b.Loop() {
			tel.observer.CachedDecisions(ctx, authz.QueryDecision, 1, 1)
		}
	})
}
