package authz_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

func TestGlobMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"f1", "f1", true},
		{"f1", "f10", false},
		{"*", "", true},
		{"*", "anything.at:all", true},
		{"github__*", "github__create_issue", true},
		{"github__*", "github_x", false},
		{"*_prod", "db_prod", true},
		{"*_prod", "db_prod_x", false},
		{"team-*.prod", "team-a.b.prod", true},
		{"team-*.prod", "team-a.dev", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-c-b", false},
		{"a*a*a", "aa", false},
		{"a**b", "ab", true},
		{"ab*ba", "aba", false},
		{"*aa*", "a", false},
	}
	for _, tc := range tests {
		if got := authz.GlobMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestScopeMatchNativeAgreesWithRego decides random keys and ids with the
// engine's native scope_match and with the policy's Rego, and wants the
// same answers and reasons: exact entries first, then the first glob in
// list order.
func TestScopeMatchNativeAgreesWithRego(t *testing.T) {
	t.Parallel()
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	engines := make([]*authz.Engine, 2)
	for i, rego := range []bool{false, true} {
		if engines[i], err = authz.NewEngine(context.Background(), modules, authz.EngineOptions{RegoScopeMatch: rego}); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(9, 9))
	word := func(alphabet string, n int) string {
		var b strings.Builder
		for range rnd.IntN(n) + 1 {
			b.WriteByte(alphabet[rnd.IntN(len(alphabet))])
		}
		return b.String()
	}
	for round := range 200 {
		// Lists short and long, so both the scan and the index run.
		entries := make([]string, 2+rnd.IntN(30))
		for i := range entries {
			entries[i] = word("ab.*", 6)
		}
		p := &authz.Principal{KeyID: fmt.Sprintf("k%d", round), TenantID: "t1", UserID: "u1", Scope: authz.Scope{FlowIDs: entries}}
		checks := make([]authz.Check, 20)
		for i := range checks {
			id := word("ab.", 8)
			if i%5 == 0 {
				id = strings.ReplaceAll(entries[rnd.IntN(len(entries))], "*", "")
			}
			if id == "" {
				id = "a"
			}
			checks[i] = authz.Check{Resource: authz.Resource{Type: authz.ResourceFlow, ID: id}, Action: "read"}
		}
		native, err := engines[0].DecideBatch(context.Background(), p, checks, benchContext)
		if err != nil {
			t.Fatal(err)
		}
		rego, err := engines[1].DecideBatch(context.Background(), p, checks, benchContext)
		if err != nil {
			t.Fatal(err)
		}
		for i := range checks {
			if native[i].Allow != rego[i].Allow || !slices.Equal(native[i].Reasons, rego[i].Reasons) {
				t.Fatalf("scope %q, id %q: native %+v, Rego %+v", entries, checks[i].Resource.ID, native[i], rego[i])
			}
		}
		one, err := engines[0].Decide(context.Background(), p, checks[0].Resource, "read", benchContext)
		if err != nil || one.Allow != rego[0].Allow || !slices.Equal(one.Reasons, rego[0].Reasons) {
			t.Fatalf("scope %q, id %q: single native %+v (%v), Rego %+v", entries, checks[0].Resource.ID, one, err, rego[0])
		}
	}
}

// TestScopeMatchLeavesOtherPoliciesAlone: a replacement policy without
// scope_match is evaluated as written.
func TestScopeMatchLeavesOtherPoliciesAlone(t *testing.T) {
	t.Parallel()
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	modules["authz.rego"] = `package keygate.authz

decision := {"allow": true, "reasons": ["everything goes"]}

decisions := [decision | some _ in input.checks]
`
	e, err := authz.NewEngine(context.Background(), modules, authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(context.Background(), &authz.Principal{KeyID: "k", TenantID: "t1"}, authz.Resource{Type: authz.ResourceFlow, ID: "f"}, "read", benchContext)
	if err != nil || !d.Allow {
		t.Fatalf("got %+v, %v", d, err)
	}
}
