package keygate.meta_test

import data.keygate.authz

# The shipped policy gives the same answer whatever the key's meta and
# external id: they are there for an operator's own rules (see
# docs/examples/plan-tier).

key := {
	"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1",
	"scope": {"agent_ids": [], "flow_ids": ["f1"], "mcp_tool_ids": [], "vector_store_ids": []},
}

request(principal, id) := {"principal": principal, "resource": {"type": "flow", "id": id}, "action": "read"}

test_meta_changes_no_answer if {
	every id in ["f1", "f2"] {
		every extra in [{"meta": {}}, {"meta": {"plan": "free", "allow": false}}, {"meta": {"plan": "pro"}, "external_id": "cus_1"}] {
			d := authz.decision with input as request(object.union(key, extra), id)
			d == authz.decision with input as request(key, id)
		}
	}
}
