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
	"api_key": {"create", "delete", "list", "read", "rotate", "update"},
	"audit_events": {"list", "read"},
	"platform_audit_events": {"list", "read"},
	"policy": {"read"},
	"mcp_server": {"create", "delete", "list", "read", "update"},
	"scope_ceiling": {"delete", "read", "update"},
	"tenant": {"delete"},
	"user": {"delete"},
}

# owned lists the targets that belong to one user, with the plural a reason
# uses: an admin manages all of its tenant's, anyone else only their own.
owned := {"api_key": "keys"}

# server_writes are what only an admin may do to an upstream MCP server:
# keygate connects to it with the headers it is given, on the tenant's behalf.
server_writes := {"create", "delete", "update"}

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
# supports, a permit grants it and no limit holds it back; otherwise it
# denies with every reason, and names in fields the entries of a new scope
# that lie outside the actor's scope ceiling (keygate answers those 422).
decide(actor, action, target) := {"allow": true, "reasons": [reason]} if {
	non_empty(actor.tenant_id)
	non_empty(actor.user_id)
	action in target_actions[target.type]
	reason := permit(target.type, actor, action, target)
	count(limits) == 0
} else := {"allow": false, "reasons": sort(denials(actor, action, target)), "fields": sort(ceiling_fields)}

# permit is the right an actor has over one kind of target, or undefined.
permit(type, actor, _, target) := sprintf("an admin of tenant %q may manage all %s of the tenant", [actor.tenant_id, owned[type]]) if {
	owned[type]
	admin_of(actor, target)
} else := sprintf("users may manage their own %s", [owned[type]]) if {
	owned[type]
	same_tenant(actor, target)
	target.user_id == actor.user_id
}

permit("mcp_server", actor, action, target) := sprintf("an admin of tenant %q may manage the tenant's MCP servers", [actor.tenant_id]) if {
	admin_of(actor, target)
} else := "users may read the MCP servers they registered" if {
	same_tenant(actor, target)
	target.user_id == actor.user_id
	not action in server_writes
}

permit("scope_ceiling", actor, _, target) := sprintf("an admin of tenant %q may set the scope ceilings of the tenant's users", [actor.tenant_id]) if {
	admin_of(actor, target)
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

permit("policy", actor, _, target) := sprintf("an admin of tenant %q may read which policy keygate serves", [actor.tenant_id]) if {
	admin_of(actor, target)
} else := "a platform_admin may read which policy keygate serves" if {
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
denials(actor, action, target) := (basic | role_denials(basic, actor, action, target)) | limits if {
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
	not permit(target.type, actor, action, target)
} else := set()

refusal(type, actor, action, target) := sprintf("only an admin of tenant %q may list the %s of all users", [actor.tenant_id, owned[type]]) if {
	owned[type]
	action == "list"
	target.user_id == ""
} else := sprintf("only an admin of tenant %q may manage %s of other users", [actor.tenant_id, owned[type]]) if {
	owned[type]
}

refusal("mcp_server", actor, action, target) := sprintf("only an admin of tenant %q may register, change, sync or delete MCP servers", [actor.tenant_id]) if {
	action in server_writes
} else := sprintf("only an admin of tenant %q may list the MCP servers of all users", [actor.tenant_id]) if {
	action == "list"
	target.user_id == ""
} else := sprintf("only an admin of tenant %q may read MCP servers other users registered", [actor.tenant_id])

refusal("scope_ceiling", actor, _, _) := sprintf("only an admin of tenant %q may manage scope ceilings", [actor.tenant_id])

refusal("user", actor, _, _) := sprintf("only an admin of tenant %q may delete users", [actor.tenant_id])

refusal("tenant", _, _, _) := "only a platform_admin may delete tenants"

refusal("platform_audit_events", _, _, _) := "only a platform_admin may read the audit events of no tenant"

refusal("policy", actor, _, _) := sprintf("only an admin of tenant %q or a platform_admin may read which policy keygate serves", [actor.tenant_id])

refusal("audit_events", actor, _, _) := sprintf("only an admin of tenant %q may read the audit trail", [actor.tenant_id])

# --- limits: what holds back a change a permit would grant ---
#
# For a change to a key keygate adds to the input:
#   "key":     the key as stored (null on create): enabled, expires_at,
#              permission_scope, rate_limit ({"limit", "window_ms"} or
#              null), credits ({"remaining", "refill": {"amount",
#              "interval_ms"} or null} or null), and who last disabled it
#              or set its expiry, rate limit or credits, {"user_id",
#              "admin"} or null;
#   "change":  the fields the request sets (a field absent is unchanged;
#              expires_at, external_id, meta, rate_limit or credits null
#              clears it);
#   "ceiling": the acting user's scope ceiling, null when no admin set one.
#
# An admin of the key's tenant is held back by none of them.

# limits is every reason a permitted change may still not be made.
limits := holds | ceiling_reasons

# holds: an admin's decision on a key sticks. A key an admin disabled is
# enabled again only by an admin; an expiry an admin set is moved later or
# cleared only by an admin; a rate limit or credits an admin set are raised,
# refilled more or removed only by an admin. Disabling, shortening,
# narrowing, lowering and deleting stay the owner's right.
holds contains "the key was disabled by an admin; only an admin may enable it again" if {
	key_change_by_member
	input.change.enabled == true
	input.key.enabled == false
	input.key.disabled_by.admin == true
}

holds contains "the key's expiry was set by an admin; only an admin may move it later or clear it" if {
	key_change_by_member
	input.key.expires_at_set_by.admin == true
	"expires_at" in object.keys(input.change)
	later_or_cleared(input.key.expires_at, input.change.expires_at)
}

holds contains "the key's rate limit was set by an admin; only an admin may raise or remove it" if {
	key_change_by_member
	input.key.rate_limit_set_by.admin == true
	"rate_limit" in object.keys(input.change)
	not tighter_rate(input.key.rate_limit, input.change.rate_limit)
}

holds contains "the key's credits were set by an admin; only an admin may raise, refill or remove them" if {
	key_change_by_member
	input.key.credits_set_by.admin == true
	"credits" in object.keys(input.change)
	not fewer_credits(input.key.credits, input.change.credits)
}

# tighter_rate: the new rate limit allows no more than the old, in a burst
# or over time.
tighter_rate(old, new) if {
	old == null
	is_object(new)
}

tighter_rate(old, new) if {
	new.limit <= old.limit
	new.window_ms >= old.window_ms
}

# fewer_credits: the new credits are no more than the old, and refilled no
# more or no sooner.
fewer_credits(old, new) if {
	old == null
	is_object(new)
}

fewer_credits(old, new) if {
	new.remaining <= old.remaining
	no_more_refill(old.refill, new.refill)
}

no_more_refill(_, new) if new == null

no_more_refill(old, new) if {
	new.amount <= old.amount
	new.interval_ms >= old.interval_ms
}

key_change_by_member if {
	input.target.type == "api_key"
	input.action == "update"
	not admin_of(input.actor, input.target)
}

later_or_cleared(old, new) if {
	new == null
	old != null
}

later_or_cleared(old, new) if {
	is_string(new)
	time.parse_rfc3339_ns(new) > time.parse_rfc3339_ns(old)
}

# ceiling_fields names each entry of the key's new scope that lies outside
# the acting user's scope ceiling. An entry is within the ceiling when a
# ceiling entry of the same list matches it as a glob, the entry's own "*"
# taken as text: "github__issue*" is within "github__*", and "*" is within
# "*" alone. An update may keep an entry the key already holds, so a member
# can always narrow a key made before the ceiling.
ceiling_fields contains {"field": sprintf("permission_scope.%s[%d]", [list, i]), "message": sprintf("%q is outside the scope ceiling an admin set for user %q", [entry, input.actor.user_id])} if {
	input.target.type == "api_key"
	input.action in {"create", "update"}
	not admin_of(input.actor, input.target)
	is_object(input.ceiling)
	some list, entries in input.change.permission_scope
	some i, entry in entries
	not within(entry, object.get(input.ceiling, list, []))
	not within(entry, kept[list])
}

ceiling_reasons contains sprintf("%d scope entries lie outside the scope ceiling an admin set for user %q", [count(ceiling_fields), input.actor.user_id]) if {
	count(ceiling_fields) > 0
}

# kept are the entries of each list of the key as stored (none on create).
kept[list] := stored_list(list) if {
	some list, _ in input.change.permission_scope
}

stored_list(list) := input.key.permission_scope[list] if {
	is_array(input.key.permission_scope[list])
} else := []

within(entry, allowed) if entry in allowed

within(entry, allowed) if {
	some c in allowed
	contains(c, "*")
	glob.match(c, null, entry)
}

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
