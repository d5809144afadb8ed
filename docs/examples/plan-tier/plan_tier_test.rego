package plan_tier_test

import data.keygate.authz

key(meta) := {
	"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1", "meta": meta,
	"scope": {"agent_ids": [], "flow_ids": [], "mcp_tool_ids": [], "vector_store_ids": ["docs-*"]},
}

request(meta, action) := {
	"principal": key(meta),
	"resource": {"type": "vector_store", "id": "docs-eng"},
	"action": action,
}

test_a_paid_plan_queries_and_writes if {
	every plan in ["pro", "team"] {
		every action in ["read", "query", "write"] {
			authz.decision.allow with input as request({"plan": plan}, action)
		}
	}
}

test_a_free_key_reads_but_does_not_query if {
	authz.decision.allow with input as request({"plan": "free"}, "read")
	d := authz.decision with input as request({"plan": "free"}, "query")
	d == {"allow": false, "reasons": [`vector_store "docs-eng" needs a paid plan for query; this key's plan is "free"`]}
}

test_a_key_without_a_plan_is_on_the_free_plan if {
	every meta in [{}, {"team": "search"}] {
		not authz.decision.allow with input as request(meta, "write")
	}
	principal := object.remove(key({}), ["meta"])
	not authz.decision.allow with input as object.union(request({}, "query"), {"principal": principal})
}

test_a_free_key_keeps_its_reads_in_a_batch if {
	ds := authz.decisions with input as {
		"principal": key({"plan": "free"}),
		"checks": [
			{"resource": {"type": "vector_store", "id": "docs-eng"}, "action": "read"},
			{"resource": {"type": "vector_store", "id": "docs-eng"}, "action": "write"},
		],
	}
	ds[0].allow
	ds[1] == {"allow": false, "reasons": [`vector_store "docs-eng" needs a paid plan for write; this key's plan is "free"`]}
}

test_the_scope_still_decides_the_rest if {
	d := authz.decision with input as object.union(request({"plan": "pro"}, "query"), {"resource": {"type": "vector_store", "id": "hr"}})
	d == {"allow": false, "reasons": [`vector_store "hr" is not in the key's vector_store_ids`]}
}
