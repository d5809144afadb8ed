package keygate.authz_test

import data.keygate.authz

key := {
	"type": "api_key",
	"key_id": "0193d1a4-7c2e-7d4a-9f1e-2b3c4d5e6f70",
	"tenant_id": "t1",
	"user_id": "u1",
	"scope": {
		"agent_ids": ["a1"],
		"flow_ids": ["f1", "f2", "report-*"],
		"mcp_tool_ids": ["slack__post_message", "github__*"],
		"vector_store_ids": ["*"],
	},
}

ctx := {"time": "2025-01-02T03:04:05Z", "ip": "10.0.0.7"}

# request is the input of one check by key.
request(type, id, action) := {
	"principal": key,
	"resource": {"type": type, "id": id},
	"action": action,
	"context": ctx,
}

# put is obj with obj[k] replaced by v (object.union would merge objects).
put(obj, k, v) := object.union(object.remove(obj, [k]), {k: v})

# with_scope is key with one scope list replaced.
with_scope(list, ids) := put(key, "scope", put(key.scope, list, ids))

allowed(reason) := {"allow": true, "reasons": [reason]}

denied(reasons) := {"allow": false, "reasons": reasons}

# --- exact ids, each resource type ---

test_exact_flow_id_is_allowed if {
	authz.decision == allowed(`flow "f1" matches "f1" in the key's flow_ids`) with input as request("flow", "f1", "read")
}

test_exact_agent_id_is_allowed if {
	authz.decision == allowed(`agent "a1" matches "a1" in the key's agent_ids`) with input as request("agent", "a1", "execute")
}

test_exact_mcp_tool_id_is_allowed if {
	authz.decision == allowed(`mcp_tool "slack__post_message" matches "slack__post_message" in the key's mcp_tool_ids`) with input as request("mcp_tool", "slack__post_message", "call")
}

test_vector_store_actions_are_allowed if {
	every action in ["read", "query", "write"] {
		authz.decision.allow with input as request("vector_store", "docs", action)
	}
}

test_exact_match_wins_over_an_earlier_glob if {
	authz.decision == allowed(`flow "f1" matches "f1" in the key's flow_ids`) with input as put(request("flow", "f1", "read"), "principal", with_scope("flow_ids", ["f*", "f1"]))
}

test_entry_without_star_matches_only_itself if {
	authz.decision == denied([`flow "f10" is not in the key's flow_ids`]) with input as request("flow", "f10", "read")
}

test_entry_with_other_glob_characters_is_exact if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "principal", with_scope("flow_ids", ["f?", "[f]1"]))
	d == denied([`flow "f1" is not in the key's flow_ids`])
}

# --- globs ---

test_prefix_glob_is_allowed if {
	authz.decision == allowed(`mcp_tool "github__create_issue" matches "github__*" in the key's mcp_tool_ids`) with input as request("mcp_tool", "github__create_issue", "call")
}

test_prefix_glob_needs_the_prefix if {
	authz.decision == denied([`mcp_tool "gitlab__create_issue" is not in the key's mcp_tool_ids`]) with input as request("mcp_tool", "gitlab__create_issue", "call")
}

test_star_spans_underscores_and_dots if {
	authz.decision == allowed(`vector_store "team_a.docs.v2" matches "*" in the key's vector_store_ids`) with input as request("vector_store", "team_a.docs.v2", "query")
	authz.decision == allowed(`flow "report-2025.q1_eu" matches "report-*" in the key's flow_ids`) with input as request("flow", "report-2025.q1_eu", "execute")
}

test_star_in_the_middle if {
	d := authz.decision with input as put(request("agent", "team-a.prod", "read"), "principal", with_scope("agent_ids", ["team-*.prod"]))
	d == allowed(`agent "team-a.prod" matches "team-*.prod" in the key's agent_ids`)
	e := authz.decision with input as put(request("agent", "team-a.dev", "read"), "principal", with_scope("agent_ids", ["team-*.prod"]))
	e == denied([`agent "team-a.dev" is not in the key's agent_ids`])
}

test_first_matching_glob_is_named if {
	d := authz.decision with input as put(request("mcp_tool", "github__x", "call"), "principal", with_scope("mcp_tool_ids", ["a*", "github__*", "*"]))
	d == allowed(`mcp_tool "github__x" matches "github__*" in the key's mcp_tool_ids`)
}

test_glob_does_not_cross_lists if {
	# vector_store_ids holds "*", which says nothing about agents.
	authz.decision == denied([`agent "a2" is not in the key's agent_ids`]) with input as request("agent", "a2", "read")
}

# --- scope lists ---

test_id_not_in_scope_is_denied_with_the_exact_reason if {
	authz.decision == denied([`flow "f9" is not in the key's flow_ids`]) with input as request("flow", "f9", "execute")
}

test_empty_scope_list_denies if {
	d := authz.decision with input as put(request("agent", "a1", "read"), "principal", with_scope("agent_ids", []))
	d == denied([`agent "a1" is not in the key's agent_ids`])
}

test_missing_scope_list_denies if {
	p := put(key, "scope", object.remove(key.scope, ["agent_ids"]))
	d := authz.decision with input as put(request("agent", "a1", "read"), "principal", p)
	d == denied([`agent "a1" is not in the key's agent_ids`])
}

test_missing_scope_denies if {
	d := authz.decision with input as put(request("agent", "a1", "read"), "principal", object.remove(key, ["scope"]))
	d == denied([`agent "a1" is not in the key's agent_ids`])
}

# --- actions ---

test_unsupported_action_is_denied if {
	authz.decision == denied([`action "delete" is not supported on flow (supported: execute, read)`]) with input as request("flow", "f1", "delete")
}

test_every_reason_is_reported_sorted if {
	authz.decision == denied([
		`action "delete" is not supported on flow (supported: execute, read)`,
		`flow "f9" is not in the key's flow_ids`,
	]) with input as request("flow", "f9", "delete")
}

test_action_table if {
	every type, supported in {
		"agent": {"execute", "read"},
		"flow": {"execute", "read"},
		"mcp_tool": {"call", "read"},
		"vector_store": {"query", "read", "write"},
	} {
		authz.actions[type] == supported
	}
	count(authz.actions) == 4
}

test_actions_of_other_types_are_denied if {
	authz.decision == denied([`action "call" is not supported on agent (supported: execute, read)`]) with input as request("agent", "a1", "call")
	authz.decision == denied([`action "execute" is not supported on mcp_tool (supported: call, read)`]) with input as request("mcp_tool", "github__x", "execute")
	authz.decision == denied([`action "call" is not supported on vector_store (supported: query, read, write)`]) with input as request("vector_store", "v", "call")
}

test_action_that_is_not_a_string if {
	authz.decision == denied([`action 5 is not supported on flow (supported: execute, read)`]) with input as request("flow", "f1", 5)
}

# --- resource types and ids ---

test_unknown_type_is_denied if {
	authz.decision == denied([`resource type "dataset" is not supported (supported: agent, flow, mcp_tool, vector_store)`]) with input as request("dataset", "d1", "read")
}

test_type_that_is_not_a_string if {
	authz.decision == denied([`resource type null is not supported (supported: agent, flow, mcp_tool, vector_store)`]) with input as request(null, "d1", "read")
}

test_missing_or_empty_id_is_denied if {
	authz.decision == denied(["the resource has no id"]) with input as request("flow", "", "read")
	authz.decision == denied(["the resource has no id"]) with input as request("flow", 7, "read")
	d := authz.decision with input as put(request("flow", "f1", "read"), "resource", {"type": "flow"})
	d == denied(["the resource has no id"])
}

# --- tenants ---

test_resource_of_the_same_tenant_is_allowed if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "resource", {"type": "flow", "id": "f1", "tenant_id": "t1"})
	d.allow
}

test_resource_of_another_tenant_is_denied if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "resource", {"type": "flow", "id": "f1", "tenant_id": "t2"})
	d == denied(["resource belongs to another tenant"])
}

test_empty_resource_tenant_is_another_tenant if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "resource", {"type": "flow", "id": "f1", "tenant_id": ""})
	d == denied(["resource belongs to another tenant"])
}

test_another_tenant_and_out_of_scope if {
	d := authz.decision with input as put(request("flow", "f9", "read"), "resource", {"type": "flow", "id": "f9", "tenant_id": "t2"})
	d == denied([`flow "f9" is not in the key's flow_ids`, "resource belongs to another tenant"])
}

# --- principal ---

test_missing_principal_is_denied if {
	d := authz.decision with input as object.remove(request("flow", "f1", "read"), ["principal"])
	d == denied(["the request has no principal (an API key is required)"])
}

test_null_principal_is_denied if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "principal", null)
	d == denied(["the request has no principal (an API key is required)"])
}

test_principal_of_another_type_is_denied if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "principal", put(key, "type", "user"))
	d == denied([`principal type "user" is not supported (supported: api_key)`])
	e := authz.decision with input as put(request("flow", "f1", "read"), "principal", object.remove(key, ["type"]))
	e == denied([`principal type null is not supported (supported: api_key)`])
}

test_principal_without_tenant_is_denied if {
	d := authz.decision with input as put(request("flow", "f1", "read"), "principal", object.remove(key, ["tenant_id"]))
	d == denied(["the principal has no tenant_id"])
}

# --- malformed input: always a deny ---

test_undefined_input_is_denied if {
	not authz.decision.allow
	authz.decision == denied(["the input is not an authorization request (an object with principal, resource and action)"])
}

test_input_that_is_not_an_object_is_denied if {
	d := authz.decision with input as ["flow", "f1"]
	not d.allow
}

test_missing_resource_is_denied if {
	d := authz.decision with input as object.remove(request("flow", "f1", "read"), ["resource"])
	not d.allow
	e := authz.decision with input as put(request("flow", "f1", "read"), "resource", null)
	e == denied(["the request has no resource"])
}

test_missing_action_is_denied if {
	d := authz.decision with input as object.remove(request("flow", "f1", "read"), ["action"])
	not d.allow
}

# --- batch ---

batch(checks) := {"principal": key, "checks": checks, "context": ctx}

test_batch_decisions_in_order if {
	ds := authz.decisions with input as batch([
		{"resource": {"type": "flow", "id": "f1"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f9"}, "action": "read"},
		{"resource": {"type": "mcp_tool", "id": "github__list_prs"}, "action": "call"},
		{"resource": {"type": "dataset", "id": "d1"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f1", "tenant_id": "t2"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f2"}, "action": "delete"},
	])
	ds == [
		allowed(`flow "f1" matches "f1" in the key's flow_ids`),
		denied([`flow "f9" is not in the key's flow_ids`]),
		allowed(`mcp_tool "github__list_prs" matches "github__*" in the key's mcp_tool_ids`),
		denied([`resource type "dataset" is not supported (supported: agent, flow, mcp_tool, vector_store)`]),
		denied(["resource belongs to another tenant"]),
		denied([`action "delete" is not supported on flow (supported: execute, read)`]),
	]
}

test_batch_of_identical_checks_repeats_the_decision if {
	ds := authz.decisions with input as batch([
		{"resource": {"type": "flow", "id": "f9"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f9"}, "action": "read"},
	])
	ds == [denied([`flow "f9" is not in the key's flow_ids`]), denied([`flow "f9" is not in the key's flow_ids`])]
}

test_batch_malformed_checks_keep_their_place if {
	ds := authz.decisions with input as batch([
		5,
		{"action": "read"},
		{"resource": {"type": "flow", "id": "f1"}},
		{"resource": {"type": "flow", "id": "f1"}, "action": "read"},
	])
	ds == [
		denied(["the request has no resource"]),
		denied(["the request has no resource"]),
		denied([`action null is not supported on flow (supported: execute, read)`]),
		allowed(`flow "f1" matches "f1" in the key's flow_ids`),
	]
}

test_batch_without_principal_denies_each_check if {
	ds := authz.decisions with input as {"checks": [
		{"resource": {"type": "flow", "id": "f1"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f2"}, "action": "read"},
	]}
	ds == [
		denied(["the request has no principal (an API key is required)"]),
		denied(["the request has no principal (an API key is required)"]),
	]
}

test_batch_without_checks_is_empty if {
	ds := authz.decisions with input as batch([])
	ds == []
	authz.decisions == [] with input as {"principal": key}
}

test_scope_match_prefers_the_id_then_the_first_glob if {
	authz.scope_match(["a*", "ab", "*"], "ab") == "ab"
	authz.scope_match(["x", "a*", "*b"], "ab") == "a*"
	authz.scope_match(["x", "*b", "a*"], "ab") == "*b"
	not authz.scope_match(["x", "a", "b*"], "ab")
	not authz.scope_match([], "ab")

	# Only "*" makes a glob; an entry without one is compared exactly.
	not authz.scope_match(["a.b"], "axb")
	authz.scope_match(["a*b*c"], "a-b-x-c") == "a*b*c"
}

# --- rules of a policy's own: deny and deny_check ---

test_a_deny_rule_denies_every_check_with_its_reason if {
	d := authz.decision with input as request("flow", "f1", "read") with authz.deny as {"closed for maintenance"}
	d == denied(["closed for maintenance"])

	ds := authz.decisions with input as batch([
		{"resource": {"type": "flow", "id": "f1"}, "action": "read"},
		{"resource": {"type": "flow", "id": "f9"}, "action": "read"},
	])
		with authz.deny as {"closed for maintenance"}
	ds == [
		denied(["closed for maintenance"]),
		denied(["closed for maintenance", `flow "f9" is not in the key's flow_ids`]),
	]
}

test_a_deny_of_one_check_denies_only_that_check if {
	f2 := {"resource": {"type": "flow", "id": "f2"}, "action": "execute"}
	rule := {{"check": f2, "reason": "flow f2 is frozen"}}
	ds := authz.decisions with input as batch([{"resource": {"type": "flow", "id": "f1"}, "action": "execute"}, f2])
		with authz.deny as rule
	ds == [allowed(`flow "f1" matches "f1" in the key's flow_ids`), denied(["flow f2 is frozen"])]

	d := authz.decision with input as request("flow", "f2", "execute") with authz.deny as rule
	d == denied(["flow f2 is frozen"])
}

test_checks_are_the_single_check_or_the_batch if {
	authz.checks == {{"resource": {"type": "flow", "id": "f1"}, "action": "read"}} with input as request("flow", "f1", "read")
	c := {"resource": {"type": "agent", "id": "a1"}, "action": "read"}
	authz.checks == {c} with input as batch([c, c])
}

test_no_rule_of_its_own_denies_nothing if {
	not authz.rules_deny with input as request("flow", "f1", "read")
	authz.rule_denials({"type": "flow", "id": "f1"}, "read") == set() with input as request("flow", "f1", "read")
}
