package keygate.examples.plan_tier_test

import data.keygate.examples.plan_tier

key(meta) := {
	"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1", "meta": meta,
	"scope": {"agent_ids": [], "flow_ids": [], "mcp_tool_ids": [], "vector_store_ids": ["docs-*"]},
}

request(meta, action) := {
	"principal": key(meta),
	"resource": {"type": "vector_store", "id": "docs-eng"},
	"action": action,
}

test_a_pro_key_queries if {
	plan_tier.decision.allow with input as request({"plan": "pro"}, "query")
}

test_a_free_key_reads_but_does_not_query if {
	plan_tier.decision.allow with input as request({"plan": "free"}, "read")
	d := plan_tier.decision with input as request({"plan": "free"}, "query")
	d == {"allow": false, "reasons": [`vector_store "docs-eng" needs a paid plan for query; this key's plan is "free"`]}
}

test_a_key_without_meta_is_on_the_free_plan if {
	not plan_tier.decision.allow with input as request({}, "write")
}

test_the_shipped_policy_still_decides_the_rest if {
	d := plan_tier.decision with input as object.union(request({"plan": "pro"}, "query"), {"resource": {"type": "vector_store", "id": "hr"}})
	d == {"allow": false, "reasons": [`vector_store "hr" is not in the key's vector_store_ids`]}
}
