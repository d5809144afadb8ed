package tenant_settings_test

import data.keygate.authz

key(tenant) := {
	"type": "api_key", "key_id": "k1", "tenant_id": tenant, "user_id": "u1",
	"scope": {"agent_ids": [], "flow_ids": [], "mcp_tool_ids": ["*"], "vector_store_ids": ["docs"]},
}

checks(tenant) := {
	"principal": key(tenant),
	"checks": [
		{"resource": {"type": "vector_store", "id": "docs"}, "action": "query"},
		{"resource": {"type": "vector_store", "id": "docs"}, "action": "write"},
		{"resource": {"type": "mcp_tool", "id": "github__create_issue"}, "action": "call"},
	],
}

test_switched_off_actions_are_denied_the_others_kept if {
	ds := authz.decisions with input as checks("t1")
	ds[0].allow
	ds[1] == {"allow": false, "reasons": [`tenant "t1" has switched write on vector_store off`]}
	ds[2] == {"allow": false, "reasons": [`tenant "t1" has switched call on mcp_tool off`]}
}

test_tenants_without_settings_are_unchanged if {
	every tenant in ["t2", "t3"] {
		ds := authz.decisions with input as checks(tenant)
		[d.allow | some d in ds] == [true, true, true]
	}
}

test_a_single_check_is_denied_too if {
	d := authz.decision with input as {
		"principal": key("t1"),
		"resource": {"type": "mcp_tool", "id": "github__create_issue"},
		"action": "call",
	}
	not d.allow
}

test_the_settings_come_from_the_data_document if {
	ds := authz.decisions with input as checks("t2") with data.tenant_settings as {"t2": {"disabled_actions": {"vector_store": ["query"]}}}
	[d.allow | some d in ds] == [false, true, true]
}
