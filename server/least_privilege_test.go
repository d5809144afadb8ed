package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestScopeCeiling(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin, bob := h.jwt("t1", "root", "admin"), h.jwt("t1", "bob")
	other := h.jwt("t2", "root", "admin")
	path := "/api/v1/users/bob/scope-ceiling"

	// No ceiling: bob is unrestricted until an admin sets one.
	wantProblem(t, "no ceiling yet", h.do("GET", path, admin, nil), 404, "not_found", "")
	oldID, _ := h.createKey(bob, "before", map[string]any{"mcp_tool_ids": []string{"*"}, "flow_ids": []string{"f1"}})

	ceiling := map[string]any{"permission_scope": map[string]any{"mcp_tool_ids": []string{"github__*", "slack__post"}, "flow_ids": []string{"f1"}}}
	wantProblem(t, "member sets own ceiling", h.do("PUT", path, bob, ceiling), 403, "forbidden", "")
	wantProblem(t, "bad ceiling", h.do("PUT", path, admin, map[string]any{"permission_scope": map[string]any{"mcp_tool_ids": []string{"a b"}}}), 422, "invalid", "permission_scope.mcp_tool_ids[0]")
	wantProblem(t, "control character in the user id", h.do("PUT", "/api/v1/users/b%07ob/scope-ceiling", admin, ceiling), 422, "invalid", "user_id")
	res := h.do("PUT", path, admin, ceiling)
	wantStatus(t, "admin sets ceiling", res, 200)
	if m := res.json(t); m["user_id"] != "bob" || m["updated_by"] != "root" {
		t.Fatalf("ceiling %v", m)
	}
	wantStatus(t, "admin reads ceiling", h.do("GET", path, admin, nil), 200)
	wantProblem(t, "member reads ceiling", h.do("GET", path, bob, nil), 403, "forbidden", "")
	wantProblem(t, "another tenant's admin", h.do("GET", path, other, nil), 404, "not_found", "")

	// Over the ceiling: 422 naming each offending entry.
	res = h.do("POST", "/api/v1/api-keys", bob, map[string]any{"name": "wide", "permission_scope": map[string]any{
		"mcp_tool_ids": []string{"github__issue*", "*", "jira__x"}, "agent_ids": []string{"a1"}}})
	wantProblem(t, "key over the ceiling", res, 422, "invalid", "")
	fields := map[string]bool{}
	for _, f := range res.json(t)["errors"].([]any) {
		fields[f.(map[string]any)["field"].(string)] = true
	}
	for _, want := range []string{"permission_scope.mcp_tool_ids[1]", "permission_scope.mcp_tool_ids[2]", "permission_scope.agent_ids[0]"} {
		if !fields[want] {
			t.Errorf("errors %v lack %s", fields, want)
		}
	}
	if len(fields) != 3 {
		t.Errorf("errors %v: want exactly the three entries outside the ceiling", fields)
	}
	id, _ := h.createKey(bob, "narrow", map[string]any{"mcp_tool_ids": []string{"github__issue*", "slack__post"}})
	wantProblem(t, "widening past the ceiling", h.do("PATCH", "/api/v1/api-keys/"+id, bob, map[string]any{
		"permission_scope": map[string]any{"mcp_tool_ids": []string{"github__*", "jira__*"}}}), 422, "invalid", "permission_scope.mcp_tool_ids[1]")
	// A key made before the ceiling can be narrowed, never widened.
	wantStatus(t, "narrowing an older key", h.do("PATCH", "/api/v1/api-keys/"+oldID, bob, map[string]any{
		"permission_scope": map[string]any{"mcp_tool_ids": []string{"*"}}}), 200)
	// Admins are not bound by a member's ceiling on their own keys.
	h.createKey(admin, "admins", map[string]any{"mcp_tool_ids": []string{"*"}})

	wantStatus(t, "admin removes ceiling", h.do("DELETE", path, admin, nil), 204)
	h.createKey(bob, "wide-again", map[string]any{"mcp_tool_ids": []string{"*"}})

	h.flushAudit()
	res = h.do("GET", "/api/v1/audit-events?action=scope_ceiling.set", admin, nil)
	if got := res.json(t)["data"].([]any); len(got) != 1 || got[0].(map[string]any)["target_id"] != "bob" {
		t.Fatalf("scope_ceiling.set events %v", got)
	}
}

func TestAdminDecisionsStick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin, bob := h.jwt("t1", "root", "admin"), h.jwt("t1", "bob")
	id, token := h.createKey(bob, "k", map[string]any{"flow_ids": []string{"f1"}})
	path := "/api/v1/api-keys/" + id
	patch := func(jwt string, body map[string]any) response { return h.do("PATCH", path, jwt, body) }
	in := func(d time.Duration) string { return h.clock.Now().Add(d).Format(time.RFC3339) }

	// An owner disables and enables their own key freely.
	wantStatus(t, "owner disables", patch(bob, map[string]any{"enabled": false}), 200)
	wantStatus(t, "owner enables", patch(bob, map[string]any{"enabled": true}), 200)

	// An admin's disable sticks.
	res := patch(admin, map[string]any{"enabled": false, "expires_at": in(24 * time.Hour)})
	wantStatus(t, "admin disables and sets an expiry", res, 200)
	if by := res.json(t)["disabled_by"].(map[string]any); by["user_id"] != "root" || by["admin"] != true {
		t.Fatalf("disabled_by %v", by)
	}
	wantProblem(t, "owner undoes the admin", patch(bob, map[string]any{"enabled": true, "expires_at": nil}), 403, "forbidden", "")
	wantProblem(t, "owner enables", patch(bob, map[string]any{"enabled": true}), 403, "forbidden", "")
	if got := h.authorize(token, "flow", "f1", "execute")["code"]; got != "KEY_DISABLED" {
		t.Fatalf("after the owner's attempts the key answers %v", got)
	}
	wantStatus(t, "owner disables again (a no-op)", patch(bob, map[string]any{"enabled": false}), 200)
	wantStatus(t, "admin enables", patch(admin, map[string]any{"enabled": true}), 200)

	// An admin's expiry: the owner may shorten it, never move it later or clear it.
	wantProblem(t, "owner moves it later", patch(bob, map[string]any{"expires_at": in(48 * time.Hour)}), 403, "forbidden", "")
	wantProblem(t, "owner clears it", patch(bob, map[string]any{"expires_at": nil}), 403, "forbidden", "")
	wantStatus(t, "owner shortens it", patch(bob, map[string]any{"expires_at": in(12 * time.Hour)}), 200)
	wantProblem(t, "owner moves the shortened expiry back", patch(bob, map[string]any{"expires_at": in(20 * time.Hour)}), 403, "forbidden", "")
	wantStatus(t, "owner renames", patch(bob, map[string]any{"name": "renamed"}), 200)
	wantStatus(t, "admin clears it", patch(admin, map[string]any{"expires_at": nil}), 200)
	wantStatus(t, "owner sets an expiry after the admin cleared it", patch(bob, map[string]any{"expires_at": in(time.Hour)}), 200)

	// A member may always delete their own key, whatever an admin set.
	wantStatus(t, "admin disables", patch(admin, map[string]any{"enabled": false}), 200)
	if res := h.do("DELETE", path, bob, nil); res.status != http.StatusNoContent {
		t.Fatalf("owner deletes: %d %s", res.status, res.body)
	}
	h.flushAudit()
	res = h.do("GET", "/api/v1/audit-events?action=api_key.updated&key_id="+id, admin, nil)
	admins := 0
	for _, ev := range res.json(t)["data"].([]any) {
		if ev.(map[string]any)["details"].(map[string]any)["admin"] == true {
			admins++
		}
	}
	if admins != 4 {
		t.Fatalf("%d updates recorded as an admin's, want 4", admins)
	}
}

// TestMCPServer_PrivateAddressRefused: without KEYGATE_MCP_ALLOWED_NETWORKS
// an upstream at a non-public address is a 422 naming the setting, and a
// URL's query values are redacted in every answer that shows it.
func TestMCPServer_PrivateAddressRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.MCPAllowedNetworks = nil })
	admin := h.jwt("t1", "root", "admin")
	res := h.do("POST", "/api/v1/mcp-servers", admin, map[string]any{"name": "meta", "url": "http://169.254.169.254/latest"})
	wantProblem(t, "metadata address", res, 422, "invalid", "url")
	if !strings.Contains(string(res.body), "KEYGATE_MCP_ALLOWED_NETWORKS") {
		t.Fatalf("the problem does not name the setting: %s", res.body)
	}
	res = h.do("POST", "/api/v1/mcp-servers", admin, map[string]any{"name": "pub", "url": "https://203.0.113.9/mcp?apikey=s3cret&x=1", "timeout_ms": 100})
	wantStatus(t, "public address", res, 201)
	for _, r := range []response{res, h.do("GET", "/api/v1/mcp-servers", admin, nil)} {
		if strings.Contains(string(r.body), "s3cret") || !strings.Contains(string(r.body), "?apikey=REDACTED&x=REDACTED") {
			t.Fatalf("answer shows the query: %s", r.body)
		}
	}
}
