package system.log_test

import data.system.log

event(principal) := {
	"decision_id": "d1",
	"path": "keygate/authz/decision",
	"input": {"principal": principal, "resource": {"type": "flow", "id": "f1"}, "action": "read"},
	"result": {"allow": true, "reasons": ["r"]},
}

test_metadata_is_masked if {
	log.mask == {"/input/principal/meta"} with input as event({"key_id": "k1", "meta": {"team": "a"}})
}

test_nothing_else_is_masked if {
	count(log.mask) == 0 with input as event({"key_id": "k1", "tenant_id": "t1"})
	count(log.mask) == 0 with input as event(null)
}
