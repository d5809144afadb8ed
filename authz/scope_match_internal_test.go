package authz

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keygate/keygate/policies"
)

// calls counts the calls of ref in the compiled modules of c.
func calls(c *compiledPolicy, ref ast.Ref) int {
	n := 0
	count := func(call []*ast.Term) {
		if len(call) > 0 {
			if r, ok := call[0].Value.(ast.Ref); ok && r.Equal(ref) {
				n++
			}
		}
	}
	eachCall(c.compiler, count)
	return n
}

// TestUseNativeScopeMatchRewritesEveryCall: once a policy that defines
// scope_match(ids, id) is compiled for the engine, no rule calls it any
// more, each calls keygate.scope_match, and the policy's own definition
// stays; a policy whose scope_match takes other arguments is left as
// written.
func TestUseNativeScopeMatchRewritesEveryCall(t *testing.T) {
	t.Parallel()
	shipped, err := ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"authz.rego": `package keygate.authz

decision := {"allow": scope_match(input.principal.scope.flow_ids), "reasons": []}

decisions := [decision | some _ in input.checks]

scope_match(ids) if "*" in ids
`}
	tests := []struct {
		note       string
		modules    map[string]string
		wantNative bool
	}{
		{"the shipped policy", shipped, true},
		{"a policy with a scope_match of its own arity", other, false},
	}
	for _, tc := range tests {
		c, err := compilePolicy(context.Background(), PolicySet{Modules: tc.modules}, compileOptions{strict: true})
		if err != nil {
			t.Fatalf("%s: %v", tc.note, err)
		}
		before := calls(c, scopeMatchRef)
		if before == 0 {
			t.Fatalf("%s: the compiled policy never calls %v", tc.note, scopeMatchRef)
		}
		c.useNativeScopeMatch()
		c.useNativeScopeMatch() // a second call changes nothing
		policyCalls, nativeCalls := calls(c, scopeMatchRef), calls(c, nativeScopeMatchRef)
		switch {
		case c.native != tc.wantNative:
			t.Errorf("%s: native = %v, want %v", tc.note, c.native, tc.wantNative)
		case tc.wantNative && (policyCalls != 0 || nativeCalls != before):
			t.Errorf("%s: after the rewrite %d calls of the policy's scope_match and %d of keygate.scope_match, want 0 and %d", tc.note, policyCalls, nativeCalls, before)
		case !tc.wantNative && (policyCalls != before || nativeCalls != 0):
			t.Errorf("%s: rewritten although its scope_match is not the engine's: %d and %d calls", tc.note, policyCalls, nativeCalls)
		}
		if len(c.compiler.GetRulesExact(scopeMatchRef)) == 0 {
			t.Errorf("%s: the policy's own scope_match is gone", tc.note)
		}
	}
}
