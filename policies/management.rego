# Package keygate.management decides who may manage keys, users, tenants,
# audit events and MCP servers through the management API.
#
# Fail closed: an allow needs a permit, a positive rule that names the right
# it uses. Deny reasons explain what is missing; they read values with field,
# which is never undefined, because Rego evaluates a ref inside "not f(x.y)"
# outside the negation, so a missing x.y would silently drop the reason.
# Anything that leaves the decision undefined is a deny (the default).
package keygate.management

# target_actions lists the actions each kind of target supports.
target_actions := {
	"api_key": {"create", "delete", "list", "read", "update"},
	"audit_events": {"list", "read"},
	"platform_audit_events": {"list", "read"},
	"mcp_server": {"create", "delete", "list", "read", "update"},
	"tenant": {"delete"},
	"user": {"delete"},
}

# owned lists the targets that belong to one user, with the plural a reason
# uses: an admin manages all of its tenant's, anyone else only their own.
owned := {"api_key": "keys", "mcp_server": "MCP servers"}

# tenantless lists the targets that belong to no tenant: the audit events
# of credentials that matched no key, which only a platform_admin reads.
tenantless := {"platform_audit_events"}

default decision := {
	"allow": false,
	"reasons": ["the input is not a management request (an object with actor, action and target)"],
}

# decision answers whether input.actor may take input.action on input.target.
decision := decide(object.get(input, "actor", null), object.get(input, "action", null), object.get(input, "target", null))

# decide allows when the actor is identified, the action is one the target
# supports and a permit grants it; otherwise it denies with every reason.
decide(actor, action, target) := {"allow": true, "reasons": [reason]} if {
	non_empty(actor.tenant_id)
	non_empty(actor.user_id)
	action in target_actions[target.type]
	reason := permit(target.type, actor, action, target)
} else := {"allow": false, "reasons": sort(denials(actor, action, target))}

# permit is the right an actor has over one kind of target, or undefined.
permit(type, actor, _, target) := sprintf("an admin of tenant %q may manage all %s of the tenant", [actor.tenant_id, owned[type]]) if {
	owned[type]
	admin_of(actor, target)
} else := sprintf("users may manage their own %s", [owned[type]]) if {
	owned[type]
	same_tenant(actor, target)
	target.user_id == actor.user_id
}

permit("user", actor, "delete", target) := sprintf("an admin of tenant %q may delete users of the tenant", [actor.tenant_id]) if {
	admin_of(actor, target)
}

permit("tenant", actor, "delete", target) := "a platform_admin may delete any tenant" if {
	"platform_admin" in actor.roles
	non_empty(target.tenant_id)
}

permit("audit_events", actor, _, target) := sprintf("an admin of tenant %q may read the tenant's audit trail", [actor.tenant_id]) if {
	admin_of(actor, target)
}

permit("platform_audit_events", actor, _, _) := "a platform_admin may read the audit events of no tenant" if {
	"platform_admin" in actor.roles
}

admin_of(actor, target) if {
	"admin" in actor.roles
	same_tenant(actor, target)
}

same_tenant(actor, target) if {
	non_empty(target.tenant_id)
	target.tenant_id == actor.tenant_id
}

# denials is every reason decide does not allow. The role is blamed only
# when nothing else is wrong, so an admin acting in another tenant is told
# about the tenant, not the role.
denials(actor, action, target) := basic | role_denials(basic, actor, action, target) if {
	basic := (actor_denials(actor) | target_denials(action, target)) | tenant_denials(actor, target)
}

actor_denials(actor) := missing(actor, "actor", "tenant_id") | missing(actor, "actor", "user_id")

target_denials(action, target) := {"the request has no target"} if {
	not is_object(target)
} else := type_denials(field(target, "type"), action) | tenant_missing(target)

tenant_missing(target) := set() if {
	tenantless[field(target, "type")]
} else := missing(target, "target", "tenant_id")

type_denials(type, action) := {sprintf("target type %s is not supported (supported: %s)", [show(type), concat(", ", sort(object.keys(target_actions)))])} if {
	not target_actions[type]
} else := {sprintf("action %s is not supported on %s (supported: %s)", [show(action), type, concat(", ", sort(target_actions[type]))])} if {
	not action in target_actions[type]
} else := set()

# tenant_denials: everything is managed within one tenant, except tenants
# themselves, which only a platform_admin may delete, whichever tenant it is in.
tenant_denials(actor, target) := {"the target belongs to another tenant"} if {
	field(target, "type") != "tenant"
	non_empty(field(target, "tenant_id"))
	field(target, "tenant_id") != field(actor, "tenant_id")
} else := set()

role_denials(basic, actor, action, target) := {refusal(target.type, actor, action, target)} if {
	count(basic) == 0
} else := set()

refusal(type, actor, action, target) := sprintf("only an admin of tenant %q may list the %s of all users", [actor.tenant_id, owned[type]]) if {
	owned[type]
	action == "list"
	target.user_id == ""
} else := sprintf("only an admin of tenant %q may manage %s of other users", [actor.tenant_id, owned[type]]) if {
	owned[type]
}

refusal("user", actor, _, _) := sprintf("only an admin of tenant %q may delete users", [actor.tenant_id])

refusal("tenant", _, _, _) := "only a platform_admin may delete tenants"

refusal("platform_audit_events", _, _, _) := "only a platform_admin may read the audit events of no tenant"

refusal("audit_events", actor, _, _) := sprintf("only an admin of tenant %q may read the audit trail", [actor.tenant_id])

# missing names a required string of x that is absent or empty.
missing(x, name, key) := {sprintf("the %s has no %s", [name, key])} if {
	not non_empty(field(x, key))
} else := set()

non_empty(s) if {
	is_string(s)
	s != ""
}

# field is x[key] for an object x, else null; never undefined.
field(x, key) := object.get(x, key, null) if {
	is_object(x)
} else := null

# show quotes a string and prints any other value as Rego would.
show(x) := sprintf("%q", [x]) if {
	is_string(x)
} else := sprintf("%v", [x])
