package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

func embeddedModules(t testing.TB) map[string]string {
	t.Helper()
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	return modules
}

func newEngine(t testing.TB, modules map[string]string) *authz.Engine {
	t.Helper()
	e, err := authz.NewEngine(context.Background(), modules, authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testPrincipal is a key of tenant t1 with exact ids and globs.
func testPrincipal() *authz.Principal {
	return &authz.Principal{
		KeyID:    "key-1",
		TenantID: "t1",
		UserID:   "u1",
		Scope: authz.Scope{
			AgentIDs:       []string{"a1"},
			FlowIDs:        []string{"f1", "f*_nightly"},
			MCPToolIDs:     []string{"slack__post_message", "github__*"},
			VectorStoreIDs: []string{"*"},
		},
	}
}

var testContext = authz.DecisionContext{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), IP: "192.0.2.1"}

func allow(reason string) authz.Decision {
	return authz.Decision{Allow: true, Reasons: []string{reason}}
}

func deny(reasons ...string) authz.Decision {
	return authz.Decision{Allow: false, Reasons: reasons}
}

// TestGoldenDecisions pins what the embedded policies answer, reasons
// included, through the engine.
func TestGoldenDecisions(t *testing.T) {
	e := newEngine(t, embeddedModules(t))
	ctx := context.Background()
	res := func(typ authz.ResourceType, id, tenant string) authz.Resource {
		return authz.Resource{Type: typ, ID: id, TenantID: tenant}
	}

	for _, tc := range []struct {
		note      string
		principal *authz.Principal
		resource  authz.Resource
		action    string
		want      authz.Decision
	}{
		{
			note:      "an id listed exactly is allowed, naming the entry",
			principal: testPrincipal(), resource: res(authz.ResourceFlow, "f1", ""), action: "execute",
			want: allow(`flow "f1" matches "f1" in the key's flow_ids`),
		},
		{
			note:      "a prefix glob matches",
			principal: testPrincipal(), resource: res(authz.ResourceMCPTool, "github__create_issue", "t1"), action: "call",
			want: allow(`mcp_tool "github__create_issue" matches "github__*" in the key's mcp_tool_ids`),
		},
		{
			note:      "* in the middle spans _ and .",
			principal: testPrincipal(), resource: res(authz.ResourceFlow, "f.eu_2_nightly", ""), action: "read",
			want: allow(`flow "f.eu_2_nightly" matches "f*_nightly" in the key's flow_ids`),
		},
		{
			note:      "* alone matches every id of its type",
			principal: testPrincipal(), resource: res(authz.ResourceVectorStore, "kb.main", ""), action: "write",
			want: allow(`vector_store "kb.main" matches "*" in the key's vector_store_ids`),
		},
		{
			note:      "an id in no entry is denied with the exact reason",
			principal: testPrincipal(), resource: res(authz.ResourceFlow, "f9", ""), action: "execute",
			want: deny(`flow "f9" is not in the key's flow_ids`),
		},
		{
			note:      "a glob of one type says nothing about another",
			principal: testPrincipal(), resource: res(authz.ResourceAgent, "a2", ""), action: "read",
			want: deny(`agent "a2" is not in the key's agent_ids`),
		},
		{
			note:      "a resource of another tenant is denied",
			principal: testPrincipal(), resource: res(authz.ResourceFlow, "f1", "t2"), action: "read",
			want: deny("resource belongs to another tenant"),
		},
		{
			note:      "an action the type does not support is denied, listing those it does",
			principal: testPrincipal(), resource: res(authz.ResourceMCPTool, "slack__post_message", ""), action: "execute",
			want: deny(`action "execute" is not supported on mcp_tool (supported: call, read)`),
		},
		{
			note:      "every reason is reported, sorted",
			principal: testPrincipal(), resource: res(authz.ResourceFlow, "f9", "t2"), action: "delete",
			want: deny(
				`action "delete" is not supported on flow (supported: execute, read)`,
				`flow "f9" is not in the key's flow_ids`,
				"resource belongs to another tenant",
			),
		},
		{
			note:      "an unknown resource type is denied",
			principal: testPrincipal(), resource: res("dataset", "d1", ""), action: "read",
			want: deny(`resource type "dataset" is not supported (supported: agent, flow, mcp_tool, vector_store)`),
		},
		{
			note:      "no principal is a deny",
			principal: nil, resource: res(authz.ResourceFlow, "f1", ""), action: "read",
			want: deny("the request has no principal (an API key is required)"),
		},
		{
			note:      "an empty scope reaches nothing",
			principal: &authz.Principal{KeyID: "key-empty", TenantID: "t1", UserID: "u1"}, resource: res(authz.ResourceAgent, "a1", ""), action: "read",
			want: deny(`agent "a1" is not in the key's agent_ids`),
		},
	} {
		t.Run(tc.note, func(t *testing.T) {
			got, err := e.Decide(ctx, tc.principal, tc.resource, tc.action, testContext)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}

	t.Run("a batch answers each check in order, in one evaluation", func(t *testing.T) {
		obs := &recordingObserver{}
		e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		checks := []authz.Check{
			{Resource: res(authz.ResourceMCPTool, "github__list_prs", ""), Action: "call"},
			{Resource: res(authz.ResourceMCPTool, "jira__create", ""), Action: "call"},
			{Resource: res(authz.ResourceFlow, "f1", ""), Action: "read"},
			{Resource: res(authz.ResourceFlow, "f1", "t2"), Action: "read"},
			{Resource: res(authz.ResourceAgent, "a1", ""), Action: "delete"},
			{Resource: res(authz.ResourceMCPTool, "jira__create", ""), Action: "call"},
		}
		got, err := e.DecideBatch(ctx, testPrincipal(), checks, testContext)
		if err != nil {
			t.Fatal(err)
		}
		want := []authz.Decision{
			allow(`mcp_tool "github__list_prs" matches "github__*" in the key's mcp_tool_ids`),
			deny(`mcp_tool "jira__create" is not in the key's mcp_tool_ids`),
			allow(`flow "f1" matches "f1" in the key's flow_ids`),
			deny("resource belongs to another tenant"),
			deny(`action "delete" is not supported on agent (supported: execute, read)`),
			deny(`mcp_tool "jira__create" is not in the key's mcp_tool_ids`),
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
		if want := []observation{{authz.QueryDecisions, 6, 2, nil}}; !reflect.DeepEqual(obs.seen(), want) {
			t.Errorf("observed %+v, want %+v", obs.seen(), want)
		}
	})

	t.Run("an empty batch has no decisions", func(t *testing.T) {
		got, err := e.DecideBatch(ctx, testPrincipal(), nil, testContext)
		if err != nil || len(got) != 0 {
			t.Errorf("got %v, %v", got, err)
		}
	})

	mgmt := func(tenant, user string, roles []string, action, typ, targetTenant, targetUser string) authz.ManagementInput {
		return authz.ManagementInput{
			Actor:  authz.Actor{TenantID: tenant, UserID: user, Roles: roles},
			Action: action,
			Target: authz.ManagementTarget{Type: typ, TenantID: targetTenant, UserID: targetUser},
		}
	}
	admin := []string{authz.RoleAdmin}
	for _, tc := range []struct {
		note string
		in   authz.ManagementInput
		want authz.Decision
	}{
		{
			note: "an admin deletes another user's key of the tenant",
			in:   mgmt("t1", "u1", admin, authz.ActionDelete, authz.TargetAPIKey, "t1", "u2"),
			want: allow(`an admin of tenant "t1" may manage all keys of the tenant`),
		},
		{
			note: "a user updates their own key",
			in:   mgmt("t1", "u2", nil, authz.ActionUpdate, authz.TargetAPIKey, "t1", "u2"),
			want: allow("users may manage their own keys"),
		},
		{
			note: "a user may not read another user's key",
			in:   mgmt("t1", "u2", nil, authz.ActionRead, authz.TargetAPIKey, "t1", "u1"),
			want: deny(`only an admin of tenant "t1" may manage keys of other users`),
		},
		{
			note: "only an admin lists every user's keys",
			in:   mgmt("t1", "u2", nil, authz.ActionList, authz.TargetAPIKey, "t1", ""),
			want: deny(`only an admin of tenant "t1" may list the keys of all users`),
		},
		{
			note: "an admin stays in its tenant",
			in:   mgmt("t1", "u1", admin, authz.ActionRead, authz.TargetAPIKey, "t2", "u9"),
			want: deny("the target belongs to another tenant"),
		},
		{
			note: "a platform_admin deletes any tenant",
			in:   mgmt("ops", "p1", []string{authz.RolePlatformAdmin}, authz.ActionDelete, authz.TargetTenant, "t1", ""),
			want: allow("a platform_admin may delete any tenant"),
		},
		{
			note: "an admin may not delete its tenant",
			in:   mgmt("t1", "u1", admin, authz.ActionDelete, authz.TargetTenant, "t1", ""),
			want: deny("only a platform_admin may delete tenants"),
		},
		{
			note: "only an admin reads the audit trail",
			in:   mgmt("t1", "u2", nil, authz.ActionList, authz.TargetAuditEvents, "t1", ""),
			want: deny(`only an admin of tenant "t1" may read the audit trail`),
		},
		{
			note: "an empty actor is denied",
			in:   mgmt("", "", admin, authz.ActionRead, authz.TargetAPIKey, "t1", "u1"),
			want: deny("the actor has no tenant_id", "the actor has no user_id", "the target belongs to another tenant"),
		},
	} {
		t.Run("management: "+tc.note, func(t *testing.T) {
			got, err := e.DecideManagement(ctx, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// echoModules answer every query with the input they were given, as JSON,
// so a test can see exactly what the engine sends a policy.
var echoModules = map[string]string{
	"echo.rego": `package keygate.authz
decision := {"allow": false, "reasons": [json.marshal(input)]}
decisions := [{"allow": false, "reasons": [json.marshal(input)]} | some _ in input.checks]
`,
	"management.rego": `package keygate.management
decision := {"allow": false, "reasons": [json.marshal(input)]}
`,
}

// TestInputDocument pins the input of each query, the contract a policy
// author relies on (policies/README.md).
func TestInputDocument(t *testing.T) {
	e := newEngine(t, echoModules)
	ctx := context.Background()
	p := testPrincipal()
	p.Scope.AgentIDs = nil // an absent list is sent as []

	assertJSON := func(t *testing.T, got, want string) {
		t.Helper()
		var g, w any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(want), &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("input\n%s\nwant\n%s", got, want)
		}
	}
	const principal = `{"type": "api_key", "key_id": "key-1", "tenant_id": "t1", "user_id": "u1", "meta": {},
		"scope": {"agent_ids": [], "flow_ids": ["f1", "f*_nightly"], "mcp_tool_ids": ["slack__post_message", "github__*"], "vector_store_ids": ["*"]}}`

	t.Run("decision", func(t *testing.T) {
		dc := authz.DecisionContext{Time: time.Date(2025, 1, 2, 4, 4, 5, 500, time.FixedZone("CET", 3600)), IP: "192.0.2.1"}
		d, err := e.Decide(ctx, p, authz.Resource{Type: authz.ResourceFlow, ID: "f1", TenantID: "t1"}, "read", dc)
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, d.Reasons[0], `{"principal": `+principal+`,
			"resource": {"type": "flow", "id": "f1", "tenant_id": "t1"}, "action": "read",
			"context": {"time": "2025-01-02T03:04:05.0000005Z", "ip": "192.0.2.1"}}`)
	})
	t.Run("empty tenant and context are omitted, a nil principal is null", func(t *testing.T) {
		d, err := e.Decide(ctx, nil, authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", authz.DecisionContext{})
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, d.Reasons[0], `{"principal": null, "resource": {"type": "flow", "id": "f1"}, "action": "read", "context": {}}`)
	})
	t.Run("decisions", func(t *testing.T) {
		ds, err := e.DecideBatch(ctx, p, []authz.Check{
			{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, Action: "read"},
			{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: "github__x", TenantID: "t1"}, Action: "call"},
		}, authz.DecisionContext{IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, ds[1].Reasons[0], `{"principal": `+principal+`,
			"checks": [{"resource": {"type": "flow", "id": "f1"}, "action": "read"},
			           {"resource": {"type": "mcp_tool", "id": "github__x", "tenant_id": "t1"}, "action": "call"}],
			"context": {"ip": "192.0.2.1"}}`)
	})
	t.Run("management", func(t *testing.T) {
		d, err := e.DecideManagement(ctx, authz.ManagementInput{
			Actor:  authz.Actor{TenantID: "t1", UserID: "u1", Roles: []string{"admin"}},
			Action: authz.ActionList,
			Target: authz.ManagementTarget{Type: authz.TargetAPIKey, TenantID: "t1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		assertJSON(t, d.Reasons[0], `{"actor": {"tenant_id": "t1", "user_id": "u1", "roles": ["admin"]},
			"action": "list", "target": {"type": "api_key", "tenant_id": "t1", "user_id": ""}}`)
	})
}

func TestLoadRejectsPolicyThatDoesNotCompile(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, embeddedModules(t))
	before, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	if err != nil || !before.Allow {
		t.Fatalf("before: %+v, %v", before, err)
	}

	broken := embeddedModules(t)
	broken["authz.rego"] = "package keygate.authz\n\ndecision := {\"allow\": true\n"
	err = e.Load(ctx, broken)
	if authz.ErrorCode(err) != authz.EINVALID {
		t.Fatalf("Load: code %q, want %q (%v)", authz.ErrorCode(err), authz.EINVALID, err)
	}
	msg := authz.ErrorMessage(err)
	if !strings.HasPrefix(msg, "policy does not compile: ") || !strings.Contains(msg, "authz.rego:") || !strings.Contains(msg, "rego_parse_error") {
		t.Errorf("message %q should carry the compiler's message", msg)
	}

	unsafe := embeddedModules(t)
	unsafe["extra.rego"] = "package keygate.extra\n\nx if y\n"
	if err := e.Load(ctx, unsafe); authz.ErrorCode(err) != authz.EINVALID || !strings.Contains(authz.ErrorMessage(err), "rego_unsafe_var_error") {
		t.Errorf("Load with an unsafe var: %v", err)
	}

	after, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Errorf("after a failed Load: %+v, %v; want the previous policy's %+v", after, err, before)
	}

	if _, err := authz.NewEngine(ctx, broken, authz.EngineOptions{}); authz.ErrorCode(err) != authz.EINVALID {
		t.Errorf("NewEngine with a broken policy: %v", err)
	}
	if _, err := authz.NewEngine(ctx, nil, authz.EngineOptions{}); authz.ErrorCode(err) != authz.EINVALID {
		t.Errorf("NewEngine with no modules: %v", err)
	}
}

func TestLoadRefusesModulesMissingARequiredRule(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		note    string
		modules map[string]string
		missing string
	}{
		{
			note: "no decision",
			modules: map[string]string{
				"a.rego": "package keygate.authz\n\ndecisions := []\n",
				"m.rego": "package keygate.management\n\ndecision := {\"allow\": false, \"reasons\": []}\n",
			},
			missing: authz.QueryDecision,
		},
		{
			note: "no decisions",
			modules: map[string]string{
				"a.rego": "package keygate.authz\n\ndecision := {\"allow\": false, \"reasons\": []}\n",
				"m.rego": "package keygate.management\n\ndecision := {\"allow\": false, \"reasons\": []}\n",
			},
			missing: authz.QueryDecisions,
		},
		{
			note: "no management policy",
			modules: map[string]string{
				"a.rego": "package keygate.authz\n\ndecision := {\"allow\": false, \"reasons\": []}\n\ndecisions := []\n",
			},
			missing: authz.QueryManagementDecision,
		},
	} {
		t.Run(tc.note, func(t *testing.T) {
			e := newEngine(t, embeddedModules(t))
			err := e.Load(ctx, tc.modules)
			if authz.ErrorCode(err) != authz.EINVALID || !strings.Contains(authz.ErrorMessage(err), tc.missing) {
				t.Errorf("Load: %v; want EINVALID naming %s", err, tc.missing)
			}
			if _, err := authz.NewEngine(ctx, tc.modules, authz.EngineOptions{}); authz.ErrorCode(err) != authz.EINVALID {
				t.Errorf("NewEngine: %v", err)
			}
		})
	}
}

// TestUndefinedDecisionDenies loads rules that exist but never fire.
func TestUndefinedDecisionDenies(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, map[string]string{
		"a.rego": `package keygate.authz
decision := {"allow": true, "reasons": ["never"]} if input.never
decisions := [] if input.never
`,
		"m.rego": `package keygate.management
decision := {"allow": true, "reasons": ["never"]} if input.never
`,
	})
	want := deny(authz.ReasonNoDecision)

	d, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	if err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("Decide: %+v, %v; want %+v", d, err, want)
	}
	ds, err := e.DecideBatch(ctx, testPrincipal(), make([]authz.Check, 2), testContext)
	if err != nil || !reflect.DeepEqual(ds, []authz.Decision{want, want}) {
		t.Errorf("DecideBatch: %+v, %v", ds, err)
	}
	d, err = e.DecideManagement(ctx, authz.ManagementInput{})
	if err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("DecideManagement: %+v, %v; want %+v", d, err, want)
	}
}

// TestMalformedDecisionIsAnInternalError: a result of the wrong shape is a
// deny and an error, never an allow.
func TestMalformedDecisionIsAnInternalError(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		note, decision, decisions string
	}{
		{"allow is not a boolean", `{"allow": "yes", "reasons": []}`, `[{"allow": "yes", "reasons": []}]`},
		{"no reasons", `{"allow": true}`, `[{"allow": true}]`},
		{"a reason is not a string", `{"allow": true, "reasons": [1]}`, `[{"allow": true, "reasons": [1]}]`},
		{"not an object", `true`, `[true]`},
		{"too few decisions", `{"allow": true, "reasons": []}`, `[]`},
	} {
		t.Run(tc.note, func(t *testing.T) {
			e := newEngine(t, map[string]string{
				"a.rego": "package keygate.authz\ndecision := " + tc.decision + "\ndecisions := " + tc.decisions + "\n",
				"m.rego": "package keygate.management\ndecision := " + tc.decision + "\n",
			})
			if tc.note != "too few decisions" {
				d, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
				if d.Allow || authz.ErrorCode(err) != authz.EINTERNAL {
					t.Errorf("Decide: %+v, %v", d, err)
				}
				d, err = e.DecideManagement(ctx, authz.ManagementInput{})
				if d.Allow || authz.ErrorCode(err) != authz.EINTERNAL {
					t.Errorf("DecideManagement: %+v, %v", d, err)
				}
			}
			ds, err := e.DecideBatch(ctx, testPrincipal(), make([]authz.Check, 1), testContext)
			if ds != nil || authz.ErrorCode(err) != authz.EINTERNAL {
				t.Errorf("DecideBatch: %+v, %v", ds, err)
			}
		})
	}
}

func TestEvaluationErrorIsInternal(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, map[string]string{
		// Two values for one complete rule is a conflict at evaluation time.
		"a.rego": `package keygate.authz
decision := {"allow": true, "reasons": ["a"]} if input.action
decision := {"allow": true, "reasons": ["b"]} if input.action
decisions := []
`,
		"m.rego": "package keygate.management\ndecision := {\"allow\": false, \"reasons\": []}\n",
	})
	d, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	if d.Allow || authz.ErrorCode(err) != authz.EINTERNAL || authz.ErrorMessage(err) != "policy evaluation failed" {
		t.Errorf("Decide: %+v, %v", d, err)
	}
	if !strings.Contains(err.Error(), "conflict") {
		t.Errorf("the error %q should keep OPA's message for logs", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	e = newEngine(t, embeddedModules(t))
	d, err = e.Decide(cancelled, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	if d.Allow || authz.ErrorCode(err) != authz.EINTERNAL || !errors.Is(err, context.Canceled) {
		t.Errorf("Decide with a cancelled context: %+v, %v", d, err)
	}
}

// TestLoadSwapsAtomically reloads between two policies while decisions run:
// each answer, and each whole batch, comes from one policy or the other.
func TestLoadSwapsAtomically(t *testing.T) {
	ctx := context.Background()
	policy := func(name string, allow bool) map[string]string {
		d := fmt.Sprintf(`{"allow": %t, "reasons": [%q]}`, allow, name)
		return map[string]string{
			"a.rego": "package keygate.authz\ndecision := " + d + "\ndecisions := [" + d + " | some _ in input.checks]\n",
			"m.rego": "package keygate.management\ndecision := " + d + "\n",
		}
	}
	a, b := policy("A", true), policy("B", false)
	e := newEngine(t, a)

	var stop atomic.Bool
	var wg sync.WaitGroup
	var seenA, seenB atomic.Int64
	check := func(d authz.Decision) {
		switch {
		case d.Allow && reflect.DeepEqual(d.Reasons, []string{"A"}):
			seenA.Add(1)
		case !d.Allow && reflect.DeepEqual(d.Reasons, []string{"B"}):
			seenB.Add(1)
		default:
			t.Errorf("a decision of neither policy: %+v", d)
		}
	}
	checks := make([]authz.Check, 5)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
				if err != nil {
					t.Error(err)
					return
				}
				check(d)
				ds, err := e.DecideBatch(ctx, testPrincipal(), checks, testContext)
				if err != nil {
					t.Error(err)
					return
				}
				for _, d := range ds {
					if !reflect.DeepEqual(d, ds[0]) {
						t.Errorf("a batch mixes policies: %+v", ds)
					}
				}
				check(ds[0])
			}
		})
	}
	for i := range 40 {
		next := a
		if i%2 == 0 {
			next = b
		}
		if err := e.Load(ctx, next); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if seenA.Load() == 0 || seenB.Load() == 0 {
		t.Errorf("saw %d decisions of A and %d of B; want both", seenA.Load(), seenB.Load())
	}
}

// TestConcurrentDecisionsShareAKey runs the real policy from many
// goroutines on one key, whose input the engine shares between them (run
// with -race).
func TestConcurrentDecisionsShareAKey(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, embeddedModules(t))
	checks := []authz.Check{
		{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: "github__x"}, Action: "call"},
		{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: "jira__x"}, Action: "call"},
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f.x_nightly"}, "read", testContext)
				if err != nil || !d.Allow {
					t.Errorf("Decide: %+v, %v", d, err)
					return
				}
				ds, err := e.DecideBatch(ctx, testPrincipal(), checks, testContext)
				if err != nil || !ds[0].Allow || ds[1].Allow {
					t.Errorf("DecideBatch: %+v, %v", ds, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestPrincipalChangesAreSeen: the engine builds a principal's input once
// and reuses it, so a changed key must come as a new principal, as the key
// cache and the store give it; the same key id with another scope or tenant
// is decided on its own terms.
func TestPrincipalChangesAreSeen(t *testing.T) {
	ctx := context.Background()
	e := newEngine(t, embeddedModules(t))
	decide := func(p *authz.Principal, id string) bool {
		t.Helper()
		d, err := e.Decide(ctx, p, authz.Resource{Type: authz.ResourceFlow, ID: id, TenantID: "t1"}, "read", testContext)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allow
	}
	p := testPrincipal()
	for range 2 {
		if !decide(p, "f1") {
			t.Fatal("f1 should be allowed, every time")
		}
	}
	q := testPrincipal()
	q.Scope.FlowIDs = []string{"f3"}
	if decide(q, "f1") || !decide(q, "f3") {
		t.Error("a new scope for the same key was not seen")
	}
	r := testPrincipal()
	r.Scope.FlowIDs = []string{"f3"}
	r.TenantID = "t2"
	if decide(r, "f3") {
		t.Error("a new tenant for the same key was not seen")
	}
	if !decide(p, "f1") {
		t.Error("the first principal must still be decided on its own scope")
	}
	anon := testPrincipal()
	anon.KeyID = ""
	if !decide(anon, "f1") {
		t.Error("a principal without key id should still be decided")
	}
}

type observation struct {
	Query   string
	Checks  int
	Allowed int
	Err     error
}

type recordingObserver struct {
	mu  sync.Mutex
	obs []observation
}

func (r *recordingObserver) StartEvaluation(ctx context.Context, query string, checks int) (context.Context, func(int, error)) {
	return ctx, func(allowed int, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.obs = append(r.obs, observation{query, checks, allowed, err})
	}
}

// CachedDecisions records cached answers as the query prefixed "cached ".
func (r *recordingObserver) CachedDecisions(_ context.Context, query string, checks, allowed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.obs = append(r.obs, observation{"cached " + query, checks, allowed, nil})
}

func (r *recordingObserver) seen() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observation(nil), r.obs...)
}

func TestObserverSeesEveryEvaluation(t *testing.T) {
	ctx := context.Background()
	obs := &recordingObserver{}
	e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	_, _ = e.Decide(ctx, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f9"}, "read", testContext)
	_, _ = e.DecideManagement(ctx, authz.ManagementInput{})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, cancelErr := e.Decide(cancelled, testPrincipal(), authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", testContext)
	want := []observation{
		{authz.QueryDecision, 1, 1, nil},
		{authz.QueryDecision, 1, 0, nil},
		{authz.QueryManagementDecision, 1, 0, nil},
		{authz.QueryDecision, 1, 0, cancelErr},
	}
	if got := obs.seen(); !reflect.DeepEqual(got, want) {
		t.Errorf("observed %+v\nwant %+v", got, want)
	}
}

func TestReadPolicies(t *testing.T) {
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(slices.Sorted(maps.Keys(modules)), " "); got != "authz.rego http.rego log.rego management.rego" {
		t.Errorf("embedded policies: %s", got)
	}

	// A folder is read as `opa build -b` reads one: every .rego of the
	// tree, tests apart, dot names skipped.
	fsys := fstest.MapFS{
		"a.rego":          {Data: []byte("package a")},
		"a_test.rego":     {Data: []byte("package a_test")},
		"notes.md":        {Data: []byte("#")},
		"sub/b.rego":      {Data: []byte("package b")},
		"dir.rego/c.rego": {Data: []byte("package c")},
		".git/d.rego":     {Data: []byte("package d")},
		".e.rego":         {Data: []byte("package e")},
	}
	modules, err = authz.ReadPolicies(fsys)
	want := map[string]string{"a.rego": "package a", "sub/b.rego": "package b", "dir.rego/c.rego": "package c"}
	if err != nil || !reflect.DeepEqual(modules, want) {
		t.Errorf("ReadPolicies: %v, %v", modules, err)
	}

	_, err = authz.ReadPolicies(fstest.MapFS{"a_test.rego": {Data: []byte("package a_test")}})
	if authz.ErrorCode(err) != authz.EINVALID {
		t.Errorf("ReadPolicies of tests only: %v", err)
	}
}
