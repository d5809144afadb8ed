package authz_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

// worstIDLen is the length of the ids of the worst batch: long enough to
// make every comparison and every glob match scan far, within
// MaxResourceIDLen.
const worstIDLen = 190

// worstScope is the costliest key validation accepts, for the ids of
// worstChecks: every list full (MaxScopeEntries), MaxScopeGlobs of them
// globs with MaxScopeGlobStars stars whose long middle part almost matches
// every id and fails only at its end (the slowest shape found), the exact
// entries as long as the ids and equal to them but for their last
// characters.
func worstScope() authz.Scope {
	list := func() []string {
		ids := make([]string, 0, authz.MaxScopeEntries)
		for i := range authz.MaxScopeGlobs {
			// "*a…a*a…ab07*": the first part is found at once, the second is
			// searched for along the whole id and is not there.
			ids = append(ids, "*"+strings.Repeat("a", 30)+"*"+strings.Repeat("a", 130)+fmt.Sprintf("b%02d*", i%100))
		}
		for i := len(ids); i < authz.MaxScopeEntries; i++ {
			ids = append(ids, strings.Repeat("a", worstIDLen-6)+fmt.Sprintf("x%05d", i))
		}
		return ids
	}
	return authz.Scope{AgentIDs: list(), FlowIDs: list(), MCPToolIDs: list(), VectorStoreIDs: list()}
}

// worstChecks is a batch of MaxBatchChecks checks of 190-character ids
// that nothing in worstScope lets in: every entry is tried, and every
// answer is a denial with its reason.
func worstChecks() []authz.Check {
	checks := make([]authz.Check, authz.MaxBatchChecks)
	for i := range checks {
		checks[i] = authz.Check{
			Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: strings.Repeat("a", worstIDLen-5) + fmt.Sprintf("%05d", i)},
			Action:   "call",
		}
	}
	return checks
}

func TestWorstKeyIsValidAndDenied(t *testing.T) {
	t.Parallel()
	scope := worstScope()
	if err := scope.Validate(); err != nil {
		t.Fatalf("the worst key must be one validation accepts: %v", err)
	}
	if fields := authz.ValidateChecks(worstChecks(), true); len(fields) > 0 {
		t.Fatalf("the worst batch must be valid: %v", fields)
	}
	e := benchEngine(t)
	p := &authz.Principal{KeyID: "k", TenantID: "t1", UserID: "u1", Scope: scope}
	ds, err := e.DecideBatch(context.Background(), p, worstChecks(), benchContext)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if d.Allow {
			t.Fatalf("check %d allowed: the worst batch must try every entry", i)
		}
	}
}

// BenchmarkDecideWorstKey is the costliest batch a valid key and request
// can ask for: worstChecks against worstScope, one evaluation. It must stay
// under 5 ms.
func BenchmarkDecideWorstKey(b *testing.B) {
	for _, bc := range []struct {
		note string
		rego bool
	}{{"native", false}, {"rego", true}} {
		b.Run(bc.note, func(b *testing.B) {
			modules, err := authz.ReadPolicies(policies.FS())
			if err != nil {
				b.Fatal(err)
			}
			e, err := authz.NewEngine(context.Background(), modules, authz.EngineOptions{RegoScopeMatch: bc.rego})
			if err != nil {
				b.Fatal(err)
			}
			p := &authz.Principal{KeyID: "0193d1a4-7c2e-7d4a-9f1e-2b3c4d5e6f70", TenantID: "t1", UserID: "u1", Scope: worstScope()}
			checks := worstChecks()
			b.ReportAllocs()
			for b.Loop() {
				ds, err := e.DecideBatch(context.Background(), p, checks, benchContext)
				if err != nil || len(ds) != len(checks) || ds[0].Allow {
					b.Fatal(ds, err)
				}
			}
		})
	}
}
