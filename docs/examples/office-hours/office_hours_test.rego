package office_hours_test

import data.keygate.authz

key := {
	"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1",
	"scope": {"agent_ids": [], "flow_ids": ["report-*"], "mcp_tool_ids": [], "vector_store_ids": []},
}

at(time) := {
	"principal": key,
	"resource": {"type": "flow", "id": "report-daily"},
	"action": "execute",
	"context": {"time": time, "ip": "192.0.2.1"},
}

closed := {"allow": false, "reasons": ["outside office hours (Monday to Friday, 08:00 to 18:00 Europe/Berlin)"]}

test_a_weekday_morning_is_open if {
	# Tuesday 09:30 in Berlin (CET, UTC+1).
	d := authz.decision with input as at("2026-01-13T08:30:00Z")
	d.allow
}

test_the_last_minute_before_closing_is_open if {
	# 17:59 in Berlin in summer (CEST, UTC+2).
	authz.decision.allow with input as at("2026-07-14T15:59:00Z")
}

test_the_evening_is_closed if {
	# 18:00 in Berlin.
	authz.decision == closed with input as at("2026-01-13T17:00:00Z")
}

test_the_weekend_is_closed if {
	# Saturday noon.
	authz.decision == closed with input as at("2026-01-17T11:00:00Z")
}

test_a_request_without_a_time_is_closed if {
	authz.decision == closed with input as object.remove(at("x"), ["context"])
	authz.decision == closed with input as at("not a time")
}

test_closed_hours_deny_every_check_of_a_batch if {
	ds := authz.decisions with input as {
		"principal": key,
		"checks": [
			{"resource": {"type": "flow", "id": "report-daily"}, "action": "execute"},
			{"resource": {"type": "flow", "id": "billing"}, "action": "read"},
		],
		"context": {"time": "2026-01-17T11:00:00Z"},
	}
	ds == [closed, {"allow": false, "reasons": [
		"flow \"billing\" is not in the key's flow_ids",
		"outside office hours (Monday to Friday, 08:00 to 18:00 Europe/Berlin)",
	]}]
}
