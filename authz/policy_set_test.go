package authz_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

// embeddedSet is the embedded policies as a set, to add to.
func embeddedSet(t testing.TB) authz.PolicySet {
	t.Helper()
	set, err := authz.ReadPolicyFS(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// with is set with more modules (tests when the name ends in _test.rego).
func with(set authz.PolicySet, files map[string]string) authz.PolicySet {
	out := set
	out.Modules, out.Tests = maps.Clone(set.Modules), maps.Clone(set.Tests)
	if out.Tests == nil {
		out.Tests = map[string]string{}
	}
	for name, src := range files {
		if strings.HasSuffix(name, "_test.rego") {
			out.Tests[name] = src
		} else {
			out.Modules[name] = src
		}
	}
	return out
}

func TestReadPolicyFSPlacesDataByFolder(t *testing.T) {
	t.Parallel()
	set, err := authz.ReadPolicyFS(fstest.MapFS{
		"p.rego":                {Data: []byte("package acme\n\nx := data.acme.limits.max\n")},
		"p_test.rego":           {Data: []byte("package acme_test\n\ntest_x if data.acme.x == 3\n")},
		"data.json":             {Data: []byte(`{"top": true}`)},
		"acme/limits/data.yaml": {Data: []byte("max: 3\n")},
		"acme/other.json":       {Data: []byte(`{"ignored": 1}`)},
		".manifest":             {Data: []byte(`{"revision": "r7"}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"top": true, "acme": map[string]any{"limits": map[string]any{"max": json.Number("3")}}}
	if !reflect.DeepEqual(set.Data, want) {
		t.Errorf("data %#v, want %#v (only data.json and data.yaml count, placed by folder)", set.Data, want)
	}
	if len(set.Modules) != 1 || len(set.Tests) != 1 || set.ManifestRevision != "r7" {
		t.Errorf("modules %v, tests %v, manifest revision %q", set.Modules, set.Tests, set.ManifestRevision)
	}
	rep, err := authz.RunPolicyTests(context.Background(), set, authz.TestOptions{Coverage: true})
	if err != nil || !rep.OK() || rep.Passed != 1 || rep.Coverage != 100 {
		t.Errorf("tests over the data: %+v, %v", rep, err)
	}
}

func TestPolicySetRevision(t *testing.T) {
	t.Parallel()
	a := authz.PolicySet{Modules: map[string]string{"a.rego": "package a"}, Data: map[string]any{"x": 1}}
	b := authz.PolicySet{Modules: map[string]string{"a.rego": "package a"}, Data: map[string]any{"x": 1},
		Tests: map[string]string{"a_test.rego": "package a_test"}}
	c := authz.PolicySet{Modules: map[string]string{"a.rego": "package a"}, Data: map[string]any{"x": 2}}
	d := authz.PolicySet{Modules: map[string]string{"b.rego": "package a"}, Data: map[string]any{"x": 1}}
	if !strings.HasPrefix(a.Revision(), "sha256:") || len(a.Revision()) != 71 {
		t.Errorf("revision %q", a.Revision())
	}
	if a.Revision() != b.Revision() {
		t.Error("tests decide nothing: they must not change the revision")
	}
	if a.Revision() == c.Revision() || a.Revision() == d.Revision() {
		t.Error("data and module names are part of the revision")
	}
}

func TestPolicySetMerge(t *testing.T) {
	t.Parallel()
	a := authz.PolicySet{Modules: map[string]string{"a.rego": "package a"}, Data: map[string]any{"acme": map[string]any{"x": 1}}}
	b := authz.PolicySet{Modules: map[string]string{"b.rego": "package b"}, Tests: map[string]string{"b_test.rego": "package b_test"},
		Data: map[string]any{"acme": map[string]any{"y": 2}}}
	m, err := a.Merge(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Modules) != 2 || len(m.Tests) != 1 || !reflect.DeepEqual(m.Data, map[string]any{"acme": map[string]any{"x": 1, "y": 2}}) {
		t.Errorf("merged %+v", m)
	}
	for _, tc := range []struct {
		note  string
		other authz.PolicySet
	}{
		{"the same module name", authz.PolicySet{Modules: map[string]string{"a.rego": "package c"}}},
		{"the same data", authz.PolicySet{Modules: map[string]string{"c.rego": "package c"}, Data: map[string]any{"acme": map[string]any{"x": 3}}}},
	} {
		if _, err := a.Merge(tc.other); authz.ErrorCode(err) != authz.EINVALID {
			t.Errorf("%s: %v, want EINVALID", tc.note, err)
		}
	}
}

func TestLoadSetKeepsTheLastGoodPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := embeddedSet(t)
	e, err := authz.NewEngineFromSet(ctx, base, authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live := e.Revision()
	if live != base.Revision() {
		t.Fatalf("revision %s, want the set's %s", live, base.Revision())
	}
	for _, tc := range []struct {
		note string
		set  authz.PolicySet
		want string
	}{
		{"not strict: an unused variable", with(base, map[string]string{"x.rego": "package acme\n\nf(x) := 1\n"}), "unused argument x"},
		{"a failing test", with(base, map[string]string{"x_test.rego": "package acme_test\n\ntest_fails if false\n"}),
			"policy tests fail (1 of 1): data.acme_test.test_fails (x_test.rego:3) fails"},
		{"a test that does not compile", with(base, map[string]string{"x_test.rego": "package acme_test\n\ntest_x if y\n"}), "rego_unsafe_var_error"},
		{"data where a rule is", func() authz.PolicySet {
			s := with(base, map[string]string{"x.rego": "package acme\n\nlimit := 3\n"})
			s.Data = map[string]any{"acme": map[string]any{"limit": 4}}
			return s
		}(), "conflicting rule for data path acme/limit"},
		{"data under data.keygate", func() authz.PolicySet {
			s := base
			s.Data = map[string]any{"keygate": map[string]any{"authz": map[string]any{"x": 1}}}
			return s
		}(), "data files may not write data.keygate"},
		{"data under data.system", func() authz.PolicySet {
			s := base
			s.Data = map[string]any{"system": map[string]any{}}
			return s
		}(), "data files may not write data.system"},
	} {
		t.Run(tc.note, func(t *testing.T) {
			err := e.LoadSet(ctx, tc.set)
			if authz.ErrorCode(err) != authz.EINVALID || !strings.Contains(authz.ErrorMessage(err), tc.want) {
				t.Fatalf("LoadSet: %v; want EINVALID with %q", err, tc.want)
			}
			if e.Revision() != live {
				t.Errorf("revision %s after a refused load; want the live %s", e.Revision(), live)
			}
		})
	}
}

// TestDataDrivenRuleOfItsOwn: a module of the policy's own adds a deny
// rule over a data document; passing tests let it go live.
func TestDataDrivenRuleOfItsOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	set := with(embeddedSet(t), map[string]string{
		"frozen.rego": `package keygate.authz

deny contains {"check": c, "reason": sprintf("flow %q is frozen", [c.resource.id])} if {
	some c in checks
	c.resource.type == "flow"
	c.resource.id in data.acme.frozen_flows
}
`,
		"frozen_test.rego": `package keygate.authz_test

import data.keygate.authz

test_frozen if {
	d := authz.decision with input as {"principal": {"type": "api_key", "tenant_id": "t1", "scope": {"flow_ids": ["*"]}},
		"resource": {"type": "flow", "id": "f9"}, "action": "read"}
	d == {"allow": false, "reasons": ["flow \"f9\" is frozen"]}
}
`,
	})
	set.Data = map[string]any{"acme": map[string]any{"frozen_flows": []any{"f9"}}}
	e, err := authz.NewEngineFromSet(ctx, set, authz.EngineOptions{DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	p := testPrincipal()
	p.Scope.FlowIDs = []string{"*"}
	ds, err := e.DecideBatch(ctx, p, []authz.Check{
		{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, Action: "read"},
		{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f9"}, Action: "read"},
	}, testContext)
	if err != nil {
		t.Fatal(err)
	}
	if !ds[0].Allow || ds[1].Allow || !reflect.DeepEqual(ds[1].Reasons, []string{`flow "f9" is frozen`}) {
		t.Errorf("decisions %+v: f9 frozen by the data document, f1 allowed", ds)
	}
	if on, why := e.DecisionCaching(); !on {
		t.Errorf("a rule over data is still a function of principal, resource and action: caching off (%s)", why)
	}
}

func TestCheckAndFormatPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if err := authz.CheckPolicy(ctx, embeddedSet(t)); err != nil {
		t.Errorf("the embedded policies: %v", err)
	}
	partial := authz.PolicySet{Modules: map[string]string{"a.rego": "package acme\n\nx := 1\n"}}
	if err := authz.CheckPolicy(ctx, partial); authz.ErrorCode(err) != authz.EINVALID || !strings.Contains(authz.ErrorMessage(err), authz.QueryDecision) {
		t.Errorf("a policy without keygate's rules: %v", err)
	}
	out, err := authz.FormatPolicy("a.rego", []byte("package acme\nx:=1"))
	if err != nil || string(out) != "package acme\n\nx := 1\n" {
		t.Errorf("FormatPolicy: %q, %v", out, err)
	}
	if _, err := authz.FormatPolicy("a.rego", []byte("package")); authz.ErrorCode(err) != authz.EINVALID {
		t.Errorf("FormatPolicy of a broken file: %v", err)
	}
}

func TestEvalPolicyExplainsAsTheEngineDecides(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	input := map[string]any{
		"principal": map[string]any{"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1",
			"scope": map[string]any{"flow_ids": []any{"f*"}, "agent_ids": []any{}, "mcp_tool_ids": []any{}, "vector_store_ids": []any{}}},
		"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read",
	}
	out, err := authz.EvalPolicy(ctx, embeddedSet(t), authz.EvalOptions{Input: input, Explain: "full"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Query != authz.QueryDecision || len(out.Results) != 1 {
		t.Fatalf("query %s, results %+v", out.Query, out.Results)
	}
	want := map[string]any{"allow": true, "reasons": []any{`flow "f1" matches "f*" in the key's flow_ids`}}
	if got := out.Results[0].Expressions[0].Value; !reflect.DeepEqual(got, want) {
		t.Errorf("result %#v, want %#v", got, want)
	}
	if !strings.Contains(out.Trace, "keygate.scope_match") || !strings.Contains(out.Trace, "authz.rego:") {
		t.Errorf("the trace must show the engine's substitution and the policy's lines:\n%s", out.Trace)
	}
	if q := authz.DefaultQuery(map[string]any{"checks": []any{}}); q != authz.QueryDecisions {
		t.Errorf("default query with checks: %s", q)
	}
	if q := authz.DefaultQuery(map[string]any{"actor": map[string]any{}}); q != authz.QueryManagementDecision {
		t.Errorf("default query with an actor: %s", q)
	}
	if _, err := authz.EvalPolicy(ctx, embeddedSet(t), authz.EvalOptions{Input: input, Explain: "all"}); authz.ErrorCode(err) != authz.EINVALID {
		t.Errorf("an unknown explain mode: %v", err)
	}
}

// TestARuleOnTheContextTurnsTheCacheOff: a rule of its own reading the
// request's time makes answers time-dependent; the engine stops caching
// them and says why.
func TestARuleOnTheContextTurnsTheCacheOff(t *testing.T) {
	t.Parallel()
	set := with(embeddedSet(t), map[string]string{"closed.rego": "package keygate.authz\n\ndeny contains \"closed\" if input.context.time > \"2026\"\n"})
	e, err := authz.NewEngineFromSet(context.Background(), set, authz.EngineOptions{DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if on, why := e.DecisionCaching(); on || !strings.Contains(why, "input.context (closed.rego)") {
		t.Errorf("caching %v: %s", on, why)
	}
}
