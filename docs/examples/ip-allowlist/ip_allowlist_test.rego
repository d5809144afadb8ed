package ip_allowlist_test

import data.keygate.authz

key := {
	"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1",
	"scope": {"agent_ids": [], "flow_ids": [], "mcp_tool_ids": ["github__*"], "vector_store_ids": []},
}

from(ip) := {
	"principal": key,
	"resource": {"type": "mcp_tool", "id": "github__create_issue"},
	"action": "call",
	"context": {"time": "2026-01-13T08:30:00Z", "ip": ip},
}

test_the_company_networks_are_allowed if {
	every ip in ["10.1.2.3", "192.0.2.200", "2001:db8::17"] {
		authz.decision.allow with input as from(ip)
	}
}

test_other_addresses_are_denied if {
	d := authz.decision with input as from("203.0.113.9")
	d == {"allow": false, "reasons": ["requests from 203.0.113.9 are not allowed: keys are used only from the company's networks"]}
}

test_a_request_without_an_address_is_denied if {
	d := authz.decision with input as object.remove(from("x"), ["context"])
	d == {"allow": false, "reasons": ["requests from an unknown address are not allowed: keys are used only from the company's networks"]}
	not authz.decision.allow with input as from("not an address")
}
