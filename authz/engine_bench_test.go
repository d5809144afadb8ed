package authz_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

func benchEngine(b testing.TB) *authz.Engine {
	b.Helper()
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	e, err := authz.NewEngine(context.Background(), modules, authz.EngineOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// benchIDs is n ids of a kind, the last few of them globs, as a key with a
// realistic scope holds.
func benchIDs(prefix string, n int) []string {
	ids := make([]string, 0, n)
	for i := range n - 3 {
		ids = append(ids, fmt.Sprintf("%s-%02d", prefix, i))
	}
	return append(ids, prefix+"-team-*", "github__*", prefix+"_*.prod")
}

func benchPrincipal() *authz.Principal {
	return &authz.Principal{
		KeyID:    "0193d1a4-7c2e-7d4a-9f1e-2b3c4d5e6f70",
		TenantID: "t1",
		UserID:   "u1",
		Scope: authz.Scope{
			AgentIDs:       benchIDs("agent", 20),
			FlowIDs:        benchIDs("flow", 20),
			MCPToolIDs:     benchIDs("mcp", 20),
			VectorStoreIDs: benchIDs("vs", 20),
		},
	}
}

var benchContext = authz.DecisionContext{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), IP: "10.0.0.7"}

// BenchmarkDecide is one check of a key with 20 entries per scope list,
// three of them globs: an id listed exactly (the common case), an id only a
// glob matches (every entry is tried), and an id nothing matches.
func BenchmarkDecide(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	p := benchPrincipal()
	for _, bc := range []struct {
		name  string
		id    string
		allow bool
	}{
		{"exact", "mcp-07", true},
		{"glob", "github__create_issue", true},
		{"denied", "slack__post_message", false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := authz.Resource{Type: authz.ResourceMCPTool, ID: bc.id, TenantID: "t1"}
			b.ReportAllocs()
			for b.Loop() {
				d, err := e.Decide(ctx, p, r, "call", benchContext)
				if err != nil || d.Allow != bc.allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}

// BenchmarkDecideBatch100 is a tools/list of 100 tools, half of them allowed.
func BenchmarkDecideBatch100(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	p := benchPrincipal()
	checks := make([]authz.Check, 100)
	for i := range checks {
		id := fmt.Sprintf("github__tool_%d", i)
		if i%2 == 1 {
			id = fmt.Sprintf("slack__tool_%d", i)
		}
		checks[i] = authz.Check{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: id}, Action: "call"}
	}
	b.ReportAllocs()
	for b.Loop() {
		ds, err := e.DecideBatch(ctx, p, checks, benchContext)
		if err != nil || len(ds) != len(checks) || !ds[0].Allow || ds[1].Allow {
			b.Fatal(ds, err)
		}
	}
}

func BenchmarkDecideManagement(b *testing.B) {
	e := benchEngine(b)
	ctx := context.Background()
	in := authz.ManagementInput{
		Actor:  authz.Actor{TenantID: "t1", UserID: "u1", Roles: []string{"member"}},
		Action: authz.ActionUpdate,
		Target: authz.ManagementTarget{Type: authz.TargetAPIKey, TenantID: "t1", UserID: "u1"},
	}
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.DecideManagement(ctx, in)
		if err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkDecideCached is the same check asked again of an engine with a
// decision cache, as a busy key asks it.
func BenchmarkDecideCached(b *testing.B) {
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	e, err := authz.NewEngine(context.Background(), modules, authz.EngineOptions{DecisionCacheSize: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	p := benchPrincipal()
	r := authz.Resource{Type: authz.ResourceMCPTool, ID: "github__create_issue", TenantID: "t1"}
	b.ReportAllocs()
	for b.Loop() {
		if d, err := e.Decide(ctx, p, r, "call", benchContext); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
