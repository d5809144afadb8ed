package authz_test

import (
	"context"
	"testing"

	"github.com/keygate/keygate/authz"
)

// BenchmarkDecisionLogEvent is the work the decision log's goroutine does
// for one decision: the event built from the entry (the input the policy
// saw, the result), masked by the embedded data.system.log.mask, and
// encoded.
func BenchmarkDecisionLogEvent(b *testing.B) {
	ctx := context.Background()
	engine, err := authz.NewEngineFromSet(ctx, embeddedSet(b), authz.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	p := benchPrincipal()
	en := authz.DecisionLogEntry{DecisionID: "0193d1a4-7c2e-7d4a-9f1e-2b3c4d5e6f70", Time: fixedTime, Source: authz.SourceAuthorize,
		Principal: p, Code: authz.CodeAllowed, Revision: engine.Revision(), RequestID: "req-1",
		Checks:    []authz.Check{{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, Action: "read"}},
		Context:   authz.DecisionContext{Time: fixedTime, IP: "192.0.2.7"},
		Decisions: []authz.Decision{{Allow: true, Reasons: []string{`flow "f1" matches "f1" in the key's flow_ids`}}}}
	b.ReportAllocs()
	size := 0
	for b.Loop() {
		ev, err := engine.DecisionLogEvent(ctx, en)
		if err != nil {
			b.Fatal(err)
		}
		data, err := ev.MarshalJSON() // as the writer encodes it
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size), "bytes/event")
}
