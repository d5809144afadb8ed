# Package keygate.authz decides whether an API key may act on a resource.
#
# decision answers one check (input.resource, input.action); decisions answers
# input.checks in order, all for the one input.principal. Both call check,
# so every rule is written once.
#
# Fail closed: an allow needs every condition to hold, each written
# positively, so an undefined or erroring condition falls through to a deny.
# Deny reasons negate the conditions; they read values with object.get, never
# with a bare ref, because Rego evaluates a ref inside "not f(x.y)" outside
# the negation, so a missing x.y would silently drop the reason. Anything that
# leaves check undefined is a deny too (the default here; the engine refuses a
# batch whose length does not match).
#
# Speed (every decision of keygate runs this): check tests its conditions in
# one body, and only a request failing one other than the scope pays for
# collecting every reason. check reads input.principal directly, since a
# batch has one principal, and what depends on the principal alone (its
# problems) is a rule, which OPA computes once per evaluation rather than
# once per check.
package keygate.authz

# actions lists the actions each resource type supports. A key reaches
# resources of a type through its scope list "<type>_ids". Add a type or an
# action here and the rules below follow.
actions := {
	"agent": {"execute", "read"},
	"flow": {"execute", "read"},
	"mcp_tool": {"call", "read"},
	"vector_store": {"query", "read", "write"},
}

# scope_lists names the scope list of each resource type; a new type in
# actions needs its list here too.
scope_lists := {
	"agent": "agent_ids",
	"flow": "flow_ids",
	"mcp_tool": "mcp_tool_ids",
	"vector_store": "vector_store_ids",
}

default decision := {
	"allow": false,
	"reasons": ["the input is not an authorization request (an object with principal, resource and action)"],
}

# decision is the answer to the single check of the input; without a
# resource or an action it is the default deny.
decision := check(input.resource, input.action)

# decisions answers input.checks, one decision per check, in order. A check
# that is not an object is denied in its place (object.get with a path never
# fails), so answers never shift to another check.
decisions := [check(object.get(input, ["checks", i, "resource"], null), object.get(input, ["checks", i, "action"], null)) | some i, _ in input.checks]

# principal is the key the request is made with; null when absent.
principal := object.get(input, "principal", null)

# check decides one request of the principal. When the key, the resource
# type, the action, the tenant and the id are all in order, the key's scope
# decides; otherwise the answer is a deny with every reason that applies.
check(r, action) := scope_decision(r, list) if {
	input.principal.type == "api_key"
	action in actions[r.type]
	object.get(r, "tenant_id", input.principal.tenant_id) == input.principal.tenant_id
	is_string(r.id)
	r.id != ""
	list := scope_lists[r.type]
	not rules_deny
} else := scope_decision(r, list) if {
	# A rule of the policy's own denies something in this request: not
	# necessarily this check.
	input.principal.type == "api_key"
	action in actions[r.type]
	object.get(r, "tenant_id", input.principal.tenant_id) == input.principal.tenant_id
	is_string(r.id)
	r.id != ""
	list := scope_lists[r.type]
	count(rule_denials(r, action)) == 0
} else := {"allow": false, "reasons": sort(denials(r, action))}

# scope_decision allows when an entry of the scope list lets the id in,
# naming the entry.
scope_decision(r, list) := {"allow": true, "reasons": [sprintf("%s %q matches %q in the key's %s", [r.type, r.id, entry, list])]} if {
	entry := scope_match(input.principal.scope[list], r.id)
} else := {"allow": false, "reasons": [sprintf("%s %q is not in the key's %s", [r.type, r.id, list])]}

# scope_match is the entry of ids that lets id in: id itself when listed,
# else the first glob, in list order, that matches it; undefined when none
# does. Globs have no delimiters: "*" spans any characters, "_" and "."
# included; an entry without "*" matches only itself.
#
# keygate's engine evaluates this function natively, with the same answers
# for every entry keygate accepts: it stops at the first match and needs no
# compiled patterns, so the cost of a check is bounded by the scope limits
# whatever else runs (OPA keeps 100 compiled globs for the whole process).
# Any OPA runs and tests it as written here.
scope_match(ids, id) := id if {
	id in ids
} else := m[0] if {
	m := [e | some e in ids; contains(e, "*"); glob.match(e, null, id)]
}

# --- rules of a policy's own ---
#
# A module of its own in package keygate.authz adds rules without editing
# this file (docs/policies.md has worked examples), to one set, deny:
#
#   deny contains reason if { … }
#       a string: denies every check of the request, with that reason
#       (rules on input.principal and input.context: the time, the
#       client's address);
#   deny contains {"check": c, "reason": reason} if { some c in checks; … }
#       denies only the check c ({"resource", "action"}) of the request.
#
# A denial holds whatever the key's scope says, its reason beside any
# other. This file reads the set as data.keygate.authz.deny, undefined (and
# next to free) while no module defines it.

# checks are what the request asks: its single check, or each of a batch.
checks contains {"resource": input.resource, "action": input.action}

checks contains c if {
	some c in input.checks
}

# rules_deny holds when a rule of the policy's own denies anything in the
# request; it is computed once per evaluation.
rules_deny if {
	some _ in data.keygate.authz.deny
}

# rule_denials are the reasons the policy's own rules deny one check.
rule_denials(r, action) := {reason | some d in data.keygate.authz.deny; reason := denial_reason(d, {"resource": r, "action": action})}

# denial_reason is the reason of an element of deny for check c: a string
# denies every check, {"check", "reason"} its own. (A function, so that a
# set of strings alone still type-checks.)
denial_reason(d, _) := d if is_string(d)

denial_reason(d, c) := d.reason if d.check == c

# denials is every reason check does not allow, each the negation of one of
# its conditions.
denials(r, action) := (((principal_denials | resource_denials(r, action)) | tenant_denials(r)) | scope_denials(r)) | rule_denials(r, action)

principal_denials := {"the request has no principal (an API key is required)"} if {
	not is_object(principal)
} else := {sprintf("principal type %s is not supported (supported: api_key)", [show(object.get(principal, "type", null))])} if {
	object.get(principal, "type", null) != "api_key"
} else := {"the principal has no tenant_id"} if {
	object.get(principal, "tenant_id", null) == null
} else := set()

resource_denials(r, action) := {"the request has no resource"} if {
	not is_object(r)
} else := type_denials(object.get(r, "type", null), action) | id_denials(object.get(r, "id", null))

type_denials(type, action) := {sprintf("resource type %s is not supported (supported: %s)", [show(type), concat(", ", sort(object.keys(actions)))])} if {
	not actions[type]
} else := {sprintf("action %s is not supported on %s (supported: %s)", [show(action), type, concat(", ", sort(actions[type]))])} if {
	not action in actions[type]
} else := set()

id_denials(id) := {"the resource has no id"} if {
	not is_string(id)
} else := {"the resource has no id"} if {
	id == ""
} else := set()

tenant_denials(r) := {"resource belongs to another tenant"} if {
	is_object(principal)
	is_object(r)
	object.get(r, "tenant_id", object.get(principal, "tenant_id", null)) != object.get(principal, "tenant_id", null)
} else := set()

# scope_denials is the scope's reason, once the type is known and the id
# present (the other reasons cover the rest).
scope_denials(r) := {reason | some reason in d.reasons} if {
	is_object(principal)
	actions[r.type]
	is_string(r.id)
	r.id != ""
	d := scope_decision(r, scope_lists[r.type])
	not d.allow
} else := set()

# show quotes a string and prints any other value as Rego would.
show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
