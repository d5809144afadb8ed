package keygate.management_test

import data.keygate.management

admin := {"tenant_id": "t1", "user_id": "u1", "roles": ["admin"]}

member := {"tenant_id": "t1", "user_id": "u2", "roles": []}

platform_admin := {"tenant_id": "ops", "user_id": "p1", "roles": ["platform_admin"]}

request(actor, action, target) := {"actor": actor, "action": action, "target": target}

key_of(tenant, user) := {"type": "api_key", "tenant_id": tenant, "user_id": user}

server_of(tenant, user) := {"type": "mcp_server", "tenant_id": tenant, "user_id": user}

allowed(reason) := {"allow": true, "reasons": [reason]}

denied(reasons) := {"allow": false, "reasons": reasons}

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

# --- MCP servers: the rules of keys ---

test_admin_manages_every_mcp_server_of_the_tenant if {
	every action in all_actions {
		d := management.decision with input as request(admin, action, server_of("t1", "u9"))
		d == allowed(`an admin of tenant "t1" may manage all MCP servers of the tenant`)
	}
}

test_user_manages_own_mcp_servers if {
	d := management.decision with input as request(member, "update", server_of("t1", "u2"))
	d == allowed("users may manage their own MCP servers")
}

test_user_may_not_manage_mcp_servers_of_others if {
	d := management.decision with input as request(member, "delete", server_of("t1", "u1"))
	d == denied([`only an admin of tenant "t1" may manage MCP servers of other users`])
	e := management.decision with input as request(member, "list", server_of("t1", ""))
	e == denied([`only an admin of tenant "t1" may list the MCP servers of all users`])
	f := management.decision with input as request(admin, "read", server_of("t2", "u1"))
	f == denied(["the target belongs to another tenant"])
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
	management.decision == denied(["the input is not a management request (an object with actor, action and target)"])
}

test_missing_target_is_denied if {
	d := management.decision with input as {"actor": admin, "action": "read"}
	d == denied(["the request has no target"])
}

test_unknown_target_type_is_denied if {
	d := management.decision with input as request(admin, "read", {"type": "role", "tenant_id": "t1"})
	d == denied([`target type "role" is not supported (supported: api_key, audit_events, mcp_server, platform_audit_events, tenant, user)`])
	e := management.decision with input as request(admin, "read", {"tenant_id": "t1"})
	e == denied([`target type null is not supported (supported: api_key, audit_events, mcp_server, platform_audit_events, tenant, user)`])
}

test_unknown_action_is_denied if {
	d := management.decision with input as request(admin, "approve", key_of("t1", "u1"))
	d == denied([`action "approve" is not supported on api_key (supported: create, delete, list, read, update)`])
}
