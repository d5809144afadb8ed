package keygate.management_test

import data.keygate.management

admin := {"tenant_id": "t1", "user_id": "u1", "roles": ["admin"]}

member := {"tenant_id": "t1", "user_id": "u2", "roles": []}

platform_admin := {"tenant_id": "ops", "user_id": "p1", "roles": ["platform_admin"]}

request(actor, action, target) := {"actor": actor, "action": action, "target": target}

key_of(tenant, user) := {"type": "api_key", "tenant_id": tenant, "user_id": user}

server_of(tenant, user) := {"type": "mcp_server", "tenant_id": tenant, "user_id": user}

allowed(reason) := {"allow": true, "reasons": [reason]}

denied(reasons) := {"allow": false, "reasons": reasons, "fields": []}

all_actions := ["create", "read", "list", "update", "delete"]

# --- api keys ---

test_admin_manages_every_key_of_the_tenant if {
	every action in all_actions {
		d := management.decision with input as request(admin, action, key_of("t1", "u9"))
		d == allowed(`an admin of tenant "t1" may manage all keys of the tenant`)
	}
}

test_admin_lists_the_keys_of_all_users if {
	d := management.decision with input as request(admin, "list", key_of("t1", ""))
	d == allowed(`an admin of tenant "t1" may manage all keys of the tenant`)
}

test_user_manages_own_keys if {
	every action in all_actions {
		d := management.decision with input as request(member, action, key_of("t1", "u2"))
		d == allowed("users may manage their own keys")
	}
}

test_user_may_not_manage_keys_of_other_users if {
	every action in all_actions {
		d := management.decision with input as request(member, action, key_of("t1", "u1"))
		d == denied([`only an admin of tenant "t1" may manage keys of other users`])
	}
}

test_user_may_not_list_the_keys_of_all_users if {
	d := management.decision with input as request(member, "list", key_of("t1", ""))
	d == denied([`only an admin of tenant "t1" may list the keys of all users`])
}

test_keys_of_another_tenant_are_denied if {
	d := management.decision with input as request(admin, "read", key_of("t2", "u9"))
	d == denied(["the target belongs to another tenant"])

	# Even a user id that matches the actor's is someone else in another tenant.
	e := management.decision with input as request(member, "delete", key_of("t2", "u2"))
	e == denied(["the target belongs to another tenant"])
}

test_platform_admin_has_no_rights_over_keys_of_other_tenants if {
	d := management.decision with input as request(platform_admin, "read", key_of("t1", "u1"))
	d == denied(["the target belongs to another tenant"])
}

test_roles_that_are_missing_or_null_are_none if {
	d := management.decision with input as request({"tenant_id": "t1", "user_id": "u2"}, "read", key_of("t1", "u2"))
	d.allow
	e := management.decision with input as request({"tenant_id": "t1", "user_id": "u2", "roles": null}, "read", key_of("t1", "u1"))
	e == denied([`only an admin of tenant "t1" may manage keys of other users`])
}

# --- users ---

test_admin_deletes_users_of_the_tenant if {
	d := management.decision with input as request(admin, "delete", {"type": "user", "tenant_id": "t1", "user_id": "u2"})
	d == allowed(`an admin of tenant "t1" may delete users of the tenant`)
}

test_user_may_not_delete_users_not_even_themselves if {
	d := management.decision with input as request(member, "delete", {"type": "user", "tenant_id": "t1", "user_id": "u2"})
	d == denied([`only an admin of tenant "t1" may delete users`])
}

test_admin_may_not_delete_users_of_another_tenant if {
	d := management.decision with input as request(admin, "delete", {"type": "user", "tenant_id": "t2", "user_id": "u2"})
	d == denied(["the target belongs to another tenant"])
}

test_users_support_only_delete if {
	d := management.decision with input as request(admin, "update", {"type": "user", "tenant_id": "t1", "user_id": "u2"})
	d == denied([`action "update" is not supported on user (supported: delete)`])
}

# --- tenants ---

test_platform_admin_deletes_any_tenant if {
	every tenant in ["t1", "t2", "ops"] {
		d := management.decision with input as request(platform_admin, "delete", {"type": "tenant", "tenant_id": tenant})
		d == allowed("a platform_admin may delete any tenant")
	}
}

test_admin_may_not_delete_a_tenant if {
	d := management.decision with input as request(admin, "delete", {"type": "tenant", "tenant_id": "t1"})
	d == denied(["only a platform_admin may delete tenants"])
	e := management.decision with input as request(admin, "delete", {"type": "tenant", "tenant_id": "t2"})
	e == denied(["only a platform_admin may delete tenants"])
}

test_tenant_delete_names_the_tenant if {
	d := management.decision with input as request(platform_admin, "delete", {"type": "tenant", "tenant_id": ""})
	d == denied(["the target has no tenant_id"])
}

test_tenants_support_only_delete if {
	d := management.decision with input as request(platform_admin, "read", {"type": "tenant", "tenant_id": "t1"})
	d == denied([`action "read" is not supported on tenant (supported: delete)`])
}

# --- audit events ---

test_admin_reads_the_audit_trail if {
	every action in ["read", "list"] {
		d := management.decision with input as request(admin, action, {"type": "audit_events", "tenant_id": "t1"})
		d == allowed(`an admin of tenant "t1" may read the tenant's audit trail`)
	}
}

test_user_may_not_read_the_audit_trail if {
	d := management.decision with input as request(member, "list", {"type": "audit_events", "tenant_id": "t1", "user_id": ""})
	d == denied([`only an admin of tenant "t1" may read the audit trail`])
}

test_admin_may_not_read_the_audit_trail_of_another_tenant if {
	d := management.decision with input as request(admin, "list", {"type": "audit_events", "tenant_id": "t2"})
	d == denied(["the target belongs to another tenant"])
}

test_platform_admin_reads_the_audit_events_of_no_tenant if {
	every action in ["list", "read"] {
		d := management.decision with input as request(platform_admin, action, {"type": "platform_audit_events", "tenant_id": ""})
		d == allowed("a platform_admin may read the audit events of no tenant")
	}
}

test_tenant_admin_may_not_read_the_audit_events_of_no_tenant if {
	d := management.decision with input as request(admin, "list", {"type": "platform_audit_events", "tenant_id": ""})
	d == denied(["only a platform_admin may read the audit events of no tenant"])

	# Nor with no tenant named at all: the target belongs to none.
	e := management.decision with input as request(member, "read", {"type": "platform_audit_events"})
	e == denied(["only a platform_admin may read the audit events of no tenant"])
}

test_platform_audit_events_are_read_only if {
	d := management.decision with input as request(platform_admin, "delete", {"type": "platform_audit_events", "tenant_id": ""})
	d == denied([`action "delete" is not supported on platform_audit_events (supported: list, read)`])
}

test_audit_events_are_read_only if {
	d := management.decision with input as request(admin, "delete", {"type": "audit_events", "tenant_id": "t1"})
	d == denied([`action "delete" is not supported on audit_events (supported: list, read)`])
}

# --- the policy keygate serves ---

test_admins_and_platform_admins_read_which_policy_is_served if {
	d := management.decision with input as request(admin, "read", {"type": "policy", "tenant_id": "t1"})
	d == allowed(`an admin of tenant "t1" may read which policy keygate serves`)
	e := management.decision with input as request(platform_admin, "read", {"type": "policy", "tenant_id": "ops"})
	e == allowed("a platform_admin may read which policy keygate serves")
}

test_members_may_not_read_which_policy_is_served if {
	d := management.decision with input as request(member, "read", {"type": "policy", "tenant_id": "t1"})
	d == denied([`only an admin of tenant "t1" or a platform_admin may read which policy keygate serves`])
}

test_the_policy_is_read_only if {
	d := management.decision with input as request(platform_admin, "update", {"type": "policy", "tenant_id": "ops"})
	d == denied([`action "update" is not supported on policy (supported: read)`])
}

# --- MCP servers: an admin's decision ---

test_admin_manages_every_mcp_server_of_the_tenant if {
	every action in all_actions {
		d := management.decision with input as request(admin, action, server_of("t1", "u9"))
		d == allowed(`an admin of tenant "t1" may manage the tenant's MCP servers`)
	}
}

test_member_may_not_register_change_sync_or_delete_mcp_servers if {
	every action in ["create", "update", "delete"] {
		d := management.decision with input as request(member, action, server_of("t1", "u2"))
		d == denied([`only an admin of tenant "t1" may register, change, sync or delete MCP servers`])
	}
}

test_user_reads_the_mcp_servers_they_registered if {
	every action in ["read", "list"] {
		d := management.decision with input as request(member, action, server_of("t1", "u2"))
		d == allowed("users may read the MCP servers they registered")
	}
}

test_user_may_not_read_mcp_servers_of_others if {
	d := management.decision with input as request(member, "read", server_of("t1", "u1"))
	d == denied([`only an admin of tenant "t1" may read MCP servers other users registered`])
	e := management.decision with input as request(member, "list", server_of("t1", ""))
	e == denied([`only an admin of tenant "t1" may list the MCP servers of all users`])
	f := management.decision with input as request(admin, "read", server_of("t2", "u1"))
	f == denied(["the target belongs to another tenant"])
}

# --- scope ceilings ---

ceiling_of(tenant, user) := {"type": "scope_ceiling", "tenant_id": tenant, "user_id": user}

test_admin_manages_scope_ceilings if {
	every action in ["read", "update", "delete"] {
		d := management.decision with input as request(admin, action, ceiling_of("t1", "u2"))
		d == allowed(`an admin of tenant "t1" may set the scope ceilings of the tenant's users`)
	}
}

test_member_may_not_manage_scope_ceilings_not_even_their_own if {
	every action in ["read", "update", "delete"] {
		d := management.decision with input as request(member, action, ceiling_of("t1", "u2"))
		d == denied([`only an admin of tenant "t1" may manage scope ceilings`])
	}
	e := management.decision with input as request(admin, "update", ceiling_of("t2", "u2"))
	e == denied(["the target belongs to another tenant"])
}

empty_scope := {"agent_ids": [], "flow_ids": [], "mcp_tool_ids": [], "vector_store_ids": []}

scope(tools) := object.union(empty_scope, {"mcp_tool_ids": tools})

create_with(actor, tools, ceiling) := {
	"actor": actor, "action": "create", "target": key_of("t1", actor.user_id),
	"key": null, "change": {"permission_scope": scope(tools), "enabled": true}, "ceiling": ceiling,
}

test_ceiling_admits_entries_its_globs_cover if {
	c := scope(["github__*", "slack__post"])
	d := management.decision with input as create_with(member, ["github__issue*", "github__create", "slack__post"], c)
	d == allowed("users may manage their own keys")
}

test_ceiling_names_each_entry_outside_it if {
	c := scope(["github__*"])
	d := management.decision with input as create_with(member, ["github__x", "*", "jira__y", "github_*"], c)
	d.allow == false
	d.reasons == [`3 scope entries lie outside the scope ceiling an admin set for user "u2"`]
	d.fields == [
		{"field": "permission_scope.mcp_tool_ids[1]", "message": `"*" is outside the scope ceiling an admin set for user "u2"`},
		{"field": "permission_scope.mcp_tool_ids[2]", "message": `"jira__y" is outside the scope ceiling an admin set for user "u2"`},
		{"field": "permission_scope.mcp_tool_ids[3]", "message": `"github_*" is outside the scope ceiling an admin set for user "u2"`},
	]
}

test_star_is_within_only_star if {
	d := management.decision with input as create_with(member, ["*"], scope(["*"]))
	d.allow
	e := management.decision with input as create_with(member, ["*"], scope(["a*", "*b"]))
	count(e.fields) == 1
}

test_no_ceiling_is_unrestricted if {
	d := management.decision with input as create_with(member, ["*"], null)
	d.allow
}

test_an_empty_ceiling_admits_nothing if {
	d := management.decision with input as create_with(member, ["a"], empty_scope)
	d.fields == [{"field": "permission_scope.mcp_tool_ids[0]", "message": `"a" is outside the scope ceiling an admin set for user "u2"`}]
}

test_admins_are_not_bound_by_a_ceiling if {
	d := management.decision with input as create_with(admin, ["*"], scope([]))
	d.allow
}

test_an_update_may_keep_entries_the_key_already_holds if {
	req := {
		"actor": member, "action": "update", "target": key_of("t1", "u2"),
		"key": {"enabled": true, "expires_at": null, "permission_scope": scope(["old*", "x"])},
		"change": {"permission_scope": scope(["old*", "new"])}, "ceiling": scope(["x"]),
	}
	d := management.decision with input as req
	d.fields == [{"field": "permission_scope.mcp_tool_ids[1]", "message": `"new" is outside the scope ceiling an admin set for user "u2"`}]
	e := management.decision with input as object.union(req, {"change": {"permission_scope": scope(["old*"])}})
	e.allow
}

# --- an admin's decision sticks ---

update_of(actor, key, change) := {"actor": actor, "action": "update", "target": key_of("t1", "u2"), "key": key, "change": change, "ceiling": null}

by_admin := {"user_id": "u1", "admin": true}

by_owner := {"user_id": "u2", "admin": false}

key_state(enabled, disabled_by, expires_at, set_by) := {
	"enabled": enabled, "disabled_by": disabled_by, "expires_at": expires_at,
	"expires_at_set_by": set_by, "permission_scope": empty_scope,
}

test_member_may_not_enable_a_key_an_admin_disabled if {
	d := management.decision with input as update_of(member, key_state(false, by_admin, null, null), {"enabled": true})
	d == denied(["the key was disabled by an admin; only an admin may enable it again"])
	e := management.decision with input as update_of(admin, key_state(false, by_admin, null, null), {"enabled": true})
	e.allow
}

test_member_enables_a_key_they_disabled if {
	d := management.decision with input as update_of(member, key_state(false, by_owner, null, null), {"enabled": true})
	d.allow
}

test_member_may_always_disable if {
	d := management.decision with input as update_of(member, key_state(false, by_admin, null, null), {"enabled": false})
	d.allow
}

test_member_may_not_move_an_admins_expiry_later_or_clear_it if {
	key := key_state(true, null, "2026-12-01T00:00:00Z", by_admin)
	reason := "the key's expiry was set by an admin; only an admin may move it later or clear it"
	d := management.decision with input as update_of(member, key, {"expires_at": "2026-12-02T00:00:00Z"})
	d == denied([reason])
	e := management.decision with input as update_of(member, key, {"expires_at": null})
	e == denied([reason])
	f := management.decision with input as update_of(admin, key, {"expires_at": null})
	f.allow
}

test_member_may_shorten_an_admins_expiry if {
	key := key_state(true, null, "2026-12-01T00:00:00Z", by_admin)
	d := management.decision with input as update_of(member, key, {"expires_at": "2026-11-30T00:00:00Z", "name": "x"})
	d.allow
}

test_member_moves_their_own_expiry_freely if {
	key := key_state(true, null, "2026-12-01T00:00:00Z", by_owner)
	d := management.decision with input as update_of(member, key, {"expires_at": null})
	d.allow
	e := management.decision with input as update_of(member, key_state(true, null, null, by_admin), {"expires_at": "2027-01-01T00:00:00Z"})
	e.allow
}

test_member_deletes_a_key_an_admin_disabled if {
	req := object.union(update_of(member, key_state(false, by_admin, "2026-12-01T00:00:00Z", by_admin), {}), {"action": "delete"})
	d := management.decision with input as req
	d.allow
}

# --- an admin's rate limit and credits stick ---

limited_key(set_by) := object.union(key_state(true, null, null, null), {
	"rate_limit": {"limit": 100, "window_ms": 60000}, "rate_limit_set_by": set_by,
	"credits": {"remaining": 50, "refill": {"amount": 50, "interval_ms": 3600000}}, "credits_set_by": set_by,
})

rate_reason := "the key's rate limit was set by an admin; only an admin may raise or remove it"

credits_reason := "the key's credits were set by an admin; only an admin may raise, refill or remove them"

test_member_may_not_loosen_an_admins_rate_limit if {
	every change in [
		{"rate_limit": null},
		{"rate_limit": {"limit": 101, "window_ms": 60000}},
		{"rate_limit": {"limit": 100, "window_ms": 59999}},
	] {
		management.decision == denied([rate_reason]) with input as update_of(member, limited_key(by_admin), change)
	}
	management.decision.allow with input as update_of(admin, limited_key(by_admin), {"rate_limit": null})
}

test_member_may_tighten_an_admins_rate_limit if {
	management.decision.allow with input as update_of(member, limited_key(by_admin), {"rate_limit": {"limit": 10, "window_ms": 120000}})
}

test_member_may_not_loosen_an_admins_credits if {
	every change in [
		{"credits": null},
		{"credits": {"remaining": 51, "refill": {"amount": 50, "interval_ms": 3600000}}},
		{"credits": {"remaining": 10, "refill": {"amount": 60, "interval_ms": 3600000}}},
		{"credits": {"remaining": 10, "refill": {"amount": 50, "interval_ms": 60000}}},
	] {
		management.decision == denied([credits_reason]) with input as update_of(member, limited_key(by_admin), change)
	}
	management.decision.allow with input as update_of(admin, limited_key(by_admin), {"credits": null})
}

test_member_may_lower_an_admins_credits if {
	every change in [
		{"credits": {"remaining": 0, "refill": null}},
		{"credits": {"remaining": 50, "refill": {"amount": 10, "interval_ms": 7200000}}},
	] {
		management.decision.allow with input as update_of(member, limited_key(by_admin), change)
	}
}

test_member_sets_limits_where_an_admin_removed_them if {
	key := object.union(limited_key(by_admin), {"rate_limit": null, "credits": null})
	management.decision.allow with input as update_of(member, key, {"rate_limit": {"limit": 1, "window_ms": 1000}, "credits": {"remaining": 1, "refill": null}})
}

test_member_changes_their_own_limits_freely if {
	management.decision.allow with input as update_of(member, limited_key(by_owner), {"rate_limit": null, "credits": null})
}

# --- rotation ---

test_owner_and_admin_may_rotate if {
	management.decision == allowed("users may manage their own keys") with input as request(member, "rotate", key_of("t1", "u2"))
	management.decision.allow with input as request(admin, "rotate", key_of("t1", "u3"))
}

test_member_may_not_rotate_another_users_key if {
	d := management.decision with input as request(member, "rotate", key_of("t1", "u3"))
	d == denied([`only an admin of tenant "t1" may manage keys of other users`])
}

# --- the actor ---

test_empty_actor_tenant_is_denied if {
	d := management.decision with input as request({"tenant_id": "", "user_id": "u2", "roles": ["admin"]}, "read", key_of("", "u2"))
	d == denied(["the actor has no tenant_id", "the target has no tenant_id"])
	e := management.decision with input as request({"tenant_id": "", "user_id": "u2", "roles": ["admin"]}, "read", key_of("t1", "u2"))
	e == denied(["the actor has no tenant_id", "the target belongs to another tenant"])
}

test_empty_actor_user_is_denied if {
	d := management.decision with input as request({"tenant_id": "t1", "user_id": "", "roles": []}, "list", key_of("t1", ""))
	d == denied(["the actor has no user_id"])

	# Not even an admin or a platform_admin acts without a user id.
	e := management.decision with input as request({"tenant_id": "t1", "roles": ["admin", "platform_admin"]}, "delete", {"type": "tenant", "tenant_id": "t1"})
	e == denied(["the actor has no user_id"])
}

test_missing_actor_is_denied if {
	d := management.decision with input as {"action": "read", "target": key_of("t1", "u1")}
	d == denied(["the actor has no tenant_id", "the actor has no user_id", "the target belongs to another tenant"])
}

# --- malformed input: always a deny ---

test_undefined_input_is_denied if {
	management.decision == {"allow": false, "reasons": ["the input is not a management request (an object with actor, action and target)"]}
}

test_missing_target_is_denied if {
	d := management.decision with input as {"actor": admin, "action": "read"}
	d == denied(["the request has no target"])
}

test_unknown_target_type_is_denied if {
	d := management.decision with input as request(admin, "read", {"type": "role", "tenant_id": "t1"})
	d == denied([`target type "role" is not supported (supported: api_key, audit_events, mcp_server, platform_audit_events, policy, scope_ceiling, tenant, user)`])
	e := management.decision with input as request(admin, "read", {"tenant_id": "t1"})
	e == denied([`target type null is not supported (supported: api_key, audit_events, mcp_server, platform_audit_events, policy, scope_ceiling, tenant, user)`])
}

test_unknown_action_is_denied if {
	d := management.decision with input as request(admin, "approve", key_of("t1", "u1"))
	d == denied([`action "approve" is not supported on api_key (supported: create, delete, list, read, rotate, update)`])
}
