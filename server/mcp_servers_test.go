package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// createServer registers an upstream as jwt and returns the answer.
func (h *mcpHarness) createServer(jwt string, body map[string]any) map[string]any {
	h.t.Helper()
	res := h.do("POST", "/api/v1/mcp-servers", jwt, body)
	wantStatus(h.t, "create MCP server", res, http.StatusCreated)
	return res.json(h.t)
}

func names(t *testing.T, res response, field string) []string {
	t.Helper()
	var out []string
	for _, item := range res.json(t)["data"].([]any) {
		out = append(out, item.(map[string]any)[field].(string))
	}
	return out
}

func TestMCPServerLifecycle(t *testing.T) {
	t.Parallel()
	h := newMCPHarness(t, storagetest.MustOpenSQLite(t))
	up := newTestUpstream(t, "search", "create_issue")
	admin := h.jwt("t1", "root", "admin")

	m := h.createServer(admin, map[string]any{
		"name": "github", "url": up.URL, "headers": map[string]string{"Authorization": "Bearer up-cred"}, "timeout_ms": 5000,
	})
	id := m["id"].(string)
	for _, field := range []string{"id", "tenant_id", "user_id", "name", "url", "enabled", "timeout_ms", "last_synced_at", "sync_error", "created_at", "updated_at"} {
		if _, ok := m[field]; !ok {
			t.Errorf("created server lacks %q", field)
		}
	}
	if _, ok := m["headers"]; ok {
		t.Error("the answer shows the headers")
	}
	if m["enabled"] != true || m["timeout_ms"] != 5000.0 || m["sync_error"] != "" || m["last_synced_at"] == nil || m["user_id"] != "root" {
		t.Fatalf("created server %v: want enabled, synced at once", m)
	}
	if got := <-up.Auth; got != "Bearer up-cred" {
		t.Fatalf("the upstream was sent Authorization %q", got)
	}

	tools := h.do("GET", "/api/v1/mcp-tools", admin, nil)
	wantStatus(t, "list tools", tools, 200)
	if got := names(t, tools, "exposed_name"); !slices.Equal(got, []string{"github__create_issue", "github__search"}) {
		t.Fatalf("catalog %v", got)
	}
	first := tools.json(t)["data"].([]any)[0].(map[string]any)
	if first["name"] != "create_issue" || first["server_name"] != "github" || first["available"] != true || first["input_schema"] == nil {
		t.Fatalf("tool %v", first)
	}

	got := h.do("GET", "/api/v1/mcp-servers/"+id, admin, nil)
	wantStatus(t, "get", got, 200)
	if strings.Contains(string(got.body), "up-cred") {
		t.Fatal("GET shows a header value")
	}
	wantStatus(t, "list", h.do("GET", "/api/v1/mcp-servers", admin, nil), 200)

	patched := h.do("PATCH", "/api/v1/mcp-servers/"+id, admin, map[string]any{"name": "gh", "timeout_ms": 60000, "headers": nil})
	wantStatus(t, "patch", patched, 200)
	if p := patched.json(t); p["name"] != "gh" || p["timeout_ms"] != 60000.0 {
		t.Fatalf("patched %v", p)
	}
	if got := names(t, h.do("GET", "/api/v1/mcp-tools", admin, nil), "exposed_name"); !slices.Equal(got, []string{"gh__create_issue", "gh__search"}) {
		t.Fatalf("after rename %v", got)
	}
	// headers: null cleared them, and a new sync ran without them.
	sync := h.do("POST", "/api/v1/mcp-servers/"+id+"/sync", admin, nil)
	wantStatus(t, "sync", sync, 200)
	if r := sync.json(t); len(r["tools"].([]any)) != 2 || len(r["added"].([]any)) != 0 || r["server"].(map[string]any)["sync_error"] != "" {
		t.Fatalf("sync report %v", r)
	}
	for len(up.Auth) > 1 {
		<-up.Auth
	}
	if got := <-up.Auth; got != "" {
		t.Fatalf("after clearing the headers the upstream was sent Authorization %q", got)
	}

	wantProblem(t, "a disabled server is not synced",
		h.do("POST", "/api/v1/mcp-servers/"+patchDisable(t, h, admin, id)+"/sync", admin, nil), 409, "conflict", "")
	wantStatus(t, "delete", h.do("DELETE", "/api/v1/mcp-servers/"+id, admin, nil), 204)
	wantProblem(t, "gone", h.do("GET", "/api/v1/mcp-servers/"+id, admin, nil), 404, "not_found", "")
	if got := names(t, h.do("GET", "/api/v1/mcp-tools", admin, nil), "exposed_name"); len(got) != 0 {
		t.Fatalf("tools of a deleted server remain: %v", got)
	}

	h.flushAudit()
	trail := h.do("GET", "/api/v1/audit-events?limit=100", admin, nil)
	var seen []string
	for _, ev := range trail.json(t)["data"].([]any) {
		e := ev.(map[string]any)
		if e["target_id"] == id {
			seen = append(seen, e["action"].(string))
		}
	}
	for _, want := range []string{authz.AuditMCPServerCreated, authz.AuditMCPServerSynced, authz.AuditMCPServerUpdated, authz.AuditMCPServerDeleted} {
		if !slices.Contains(seen, want) {
			t.Errorf("audit trail lacks %s (has %v)", want, seen)
		}
	}
}

func patchDisable(t *testing.T, h *mcpHarness, jwt, id string) string {
	t.Helper()
	wantStatus(t, "disable", h.do("PATCH", "/api/v1/mcp-servers/"+id, jwt, map[string]any{"enabled": false}), 200)
	return id
}

func TestMCPServerRefusesBadInput(t *testing.T) {
	t.Parallel()
	h := newMCPHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	up := newTestUpstream(t, "search")
	h.createServer(admin, map[string]any{"name": "taken", "url": up.URL})
	ok := func(extra map[string]any) map[string]any {
		body := map[string]any{"name": "fresh", "url": up.URL}
		for k, v := range extra {
			body[k] = v
		}
		return body
	}
	many := map[string]string{}
	for i := range authz.MaxMCPHeaders + 1 {
		many[fmt.Sprintf("X-H%d", i)] = "v"
	}
	tests := []struct {
		note   string
		body   any
		status int
		code   string
		field  string
	}{
		{"not JSON", `{"name":`, 400, "malformed", ""},
		{"unknown field", ok(map[string]any{"tools": []string{}}), 422, "invalid", "tools"},
		{"missing name", map[string]any{"url": up.URL}, 422, "invalid", "name"},
		{"missing url", map[string]any{"name": "x"}, 422, "invalid", "url"},
		{"upper case name", ok(map[string]any{"name": "GitHub"}), 422, "invalid", "name"},
		{"underscore in name", ok(map[string]any{"name": "git_hub"}), 422, "invalid", "name"},
		{"name too long", ok(map[string]any{"name": strings.Repeat("a", 33)}), 422, "invalid", "name"},
		{"ftp url", ok(map[string]any{"url": "ftp://example.com/mcp"}), 422, "invalid", "url"},
		{"relative url", ok(map[string]any{"url": "/mcp"}), 422, "invalid", "url"},
		{"url with credentials", ok(map[string]any{"url": "https://user:pw@example.com/mcp"}), 422, "invalid", "url"},
		{"url with a fragment", ok(map[string]any{"url": "https://example.com/mcp#x"}), 422, "invalid", "url"},
		{"url too long", ok(map[string]any{"url": "https://example.com/" + strings.Repeat("a", authz.MaxMCPURLLen)}), 422, "invalid", "url"},
		{"header name not a token", ok(map[string]any{"headers": map[string]string{"Bad Header": "v"}}), 422, "invalid", "headers"},
		{"header value with CRLF", ok(map[string]any{"headers": map[string]string{"X-Token": "a\r\nHost: evil"}}), 422, "invalid", "headers.X-Token"},
		{"a reserved header", ok(map[string]any{"headers": map[string]string{"Host": "evil"}}), 422, "invalid", "headers.Host"},
		{"a session header", ok(map[string]any{"headers": map[string]string{"mcp-session-id": "x"}}), 422, "invalid", "headers.mcp-session-id"},
		{"one header twice", ok(map[string]any{"headers": map[string]string{"X-A": "1", "x-a": "2"}}), 422, "invalid", "headers.x-a"},
		{"too many headers", ok(map[string]any{"headers": many}), 422, "invalid", "headers"},
		{"header value not a string", ok(map[string]any{"headers": map[string]any{"X-A": 1}}), 422, "invalid", "headers"},
		{"timeout too short", ok(map[string]any{"timeout_ms": 50}), 422, "invalid", "timeout_ms"},
		{"timeout too long", ok(map[string]any{"timeout_ms": 120001}), 422, "invalid", "timeout_ms"},
		{"timeout zero", ok(map[string]any{"timeout_ms": 0}), 422, "invalid", "timeout_ms"},
		{"timeout not a number", ok(map[string]any{"timeout_ms": "5s"}), 422, "invalid", "timeout_ms"},
		{"enabled not a boolean", ok(map[string]any{"enabled": "yes"}), 422, "invalid", "enabled"},
		{"duplicate name", ok(map[string]any{"name": "taken"}), 409, "conflict", ""},
	}
	for _, tc := range tests {
		res := h.do("POST", "/api/v1/mcp-servers", admin, tc.body)
		wantProblem(t, tc.note, res, tc.status, tc.code, tc.field)
		if strings.Contains(string(res.body), "evil") {
			t.Errorf("%s: the answer echoes a header value: %s", tc.note, res.body)
		}
	}
	srvID := names(t, h.do("GET", "/api/v1/mcp-servers", admin, nil), "id")[0]
	for _, tc := range []struct {
		note  string
		body  any
		field string
	}{
		{"null name", map[string]any{"name": nil}, "name"},
		{"null enabled", map[string]any{"enabled": nil}, "enabled"},
		{"bad url", map[string]any{"url": "mailto:x@example.com"}, "url"},
		{"bad timeout", map[string]any{"timeout_ms": 1}, "timeout_ms"},
		{"unknown field", map[string]any{"id": "x"}, "id"},
	} {
		wantProblem(t, "patch: "+tc.note, h.do("PATCH", "/api/v1/mcp-servers/"+srvID, admin, tc.body), 422, "invalid", tc.field)
	}
	wantProblem(t, "list: bad limit", h.do("GET", "/api/v1/mcp-servers?limit=0", admin, nil), 422, "invalid", "limit")
	wantProblem(t, "tools: bad cursor", h.do("GET", "/api/v1/mcp-tools?cursor=zzz", admin, nil), 422, "invalid", "cursor")
}

func TestMCPServerRights(t *testing.T) {
	t.Parallel()
	h := newMCPHarness(t, storagetest.MustOpenSQLite(t))
	up := newTestUpstream(t, "search")
	alice, bob, admin := h.jwt("t1", "alice"), h.jwt("t1", "bob"), h.jwt("t1", "root", "admin")
	intruder := h.jwt("t2", "mallory", "admin")

	// Upstreams are an admin's decision: a member registers none, not even
	// at an address that passes every other check.
	wantProblem(t, "member registers", h.do("POST", "/api/v1/mcp-servers", alice, map[string]any{"name": "evil", "url": up.URL}), 403, "forbidden", "")
	h.createServer(admin, map[string]any{"name": "roots", "url": up.URL})
	// A server a member registered before upstreams were admin-only stays
	// theirs to read, and only an admin's to change.
	legacy := &authz.MCPServer{TenantID: "t1", UserID: "alice", Name: "alices", URL: up.URL, Enabled: true, TimeoutMS: 1000,
		CreatedAt: h.clock.Now(), UpdatedAt: h.clock.Now()}
	legacy.ID, _ = authz.NewID(h.clock.Now(), nil)
	if err := h.mcp.Store.CreateMCPServer(context.Background(), legacy); err != nil {
		t.Fatal(err)
	}
	if _, err := h.mcp.Resync(context.Background(), "t1", legacy.ID); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/mcp-servers/" + legacy.ID

	wantStatus(t, "owner reads", h.do("GET", path, alice, nil), 200)
	wantStatus(t, "admin reads", h.do("GET", path, admin, nil), 200)
	for _, who := range []struct{ note, jwt string }{{"owner", alice}, {"other user", bob}} {
		wantProblem(t, who.note+" patches", h.do("PATCH", path, who.jwt, map[string]any{"enabled": false}), 403, "forbidden", "")
		wantProblem(t, who.note+" syncs", h.do("POST", path+"/sync", who.jwt, nil), 403, "forbidden", "")
		wantProblem(t, who.note+" deletes", h.do("DELETE", path, who.jwt, nil), 403, "forbidden", "")
	}
	wantProblem(t, "other user reads", h.do("GET", path, bob, nil), 403, "forbidden", "")
	wantProblem(t, "other user lists its tools", h.do("GET", "/api/v1/mcp-tools?server_id="+legacy.ID, bob, nil), 403, "forbidden", "")

	for _, tc := range []struct {
		method, path string
		body         any
	}{
		{"GET", path, nil},
		{"PATCH", path, map[string]any{"enabled": false}},
		{"POST", path + "/sync", nil},
		{"DELETE", path, nil},
		{"GET", "/api/v1/mcp-tools?server_id=" + legacy.ID, nil},
		{"GET", "/api/v1/mcp-servers/not-a-uuid", nil},
	} {
		wantProblem(t, tc.method+" "+tc.path+" from another tenant", h.do(tc.method, tc.path, intruder, tc.body), 404, "not_found", "")
	}
	if got := names(t, h.do("GET", "/api/v1/mcp-servers", intruder, nil), "name"); len(got) != 0 {
		t.Fatalf("another tenant lists %v", got)
	}
	if got := names(t, h.do("GET", "/api/v1/mcp-tools", intruder, nil), "exposed_name"); len(got) != 0 {
		t.Fatalf("another tenant lists tools %v", got)
	}

	if got := names(t, h.do("GET", "/api/v1/mcp-servers", alice, nil), "name"); !slices.Equal(got, []string{"alices"}) {
		t.Errorf("alice lists %v, want her server only", got)
	}
	if got := names(t, h.do("GET", "/api/v1/mcp-servers", admin, nil), "name"); len(got) != 2 {
		t.Errorf("admin lists %v, want both", got)
	}
	if got := names(t, h.do("GET", "/api/v1/mcp-tools", alice, nil), "exposed_name"); !slices.Equal(got, []string{"alices__search"}) {
		t.Errorf("alice lists tools %v, want her server's", got)
	}
	wantProblem(t, "alice lists root's servers", h.do("GET", "/api/v1/mcp-servers?user_id=root", alice, nil), 403, "forbidden", "")
	wantStatus(t, "admin deletes alice's server", h.do("DELETE", path, admin, nil), 204)
}

func TestMCPServerUnreachableUpstream(t *testing.T) {
	t.Parallel()
	h := newMCPHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	up := newTestUpstream(t, "search")
	m := h.createServer(admin, map[string]any{"name": "github", "url": up.URL})
	id := m["id"].(string)
	up.Close()

	res := h.do("POST", "/api/v1/mcp-servers/"+id+"/sync", admin, nil)
	wantProblem(t, "sync of a dead upstream", res, 503, "unavailable", "")
	if !strings.Contains(string(res.body), `MCP server \"github\" could not be synced`) || strings.Contains(string(res.body), up.URL) {
		t.Fatalf("problem %s: want the reason without the URL", res.body)
	}
	got := h.do("GET", "/api/v1/mcp-servers/"+id, admin, nil).json(t)
	if got["sync_error"] == "" {
		t.Fatalf("server %v: the failure was not recorded", got)
	}
	tools := h.do("GET", "/api/v1/mcp-tools", admin, nil).json(t)["data"].([]any)
	if len(tools) != 1 || tools[0].(map[string]any)["available"] != false {
		t.Fatalf("tools %v: the last catalog stays, marked unavailable", tools)
	}

	dead := newTestUpstream(t)
	dead.Close()
	created := h.createServer(admin, map[string]any{"name": "never", "url": dead.URL})
	if created["sync_error"] == "" || created["last_synced_at"] == nil {
		t.Fatalf("a server created while its upstream is down: %v (want 201 with the sync error)", created)
	}
}

// TestMCPEndpointThroughTheRouter drives /mcp as mounted on keygate's
// router: POST, the GET event stream and DELETE pass gin, and OAuth
// discovery finds nothing.
func TestMCPEndpointThroughTheRouter(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		h := newMCPHarness(t, db)
		base := h.listen()
		admin := h.jwt("t1", "root", "admin")
		up := newTestUpstream(t, "search", "delete_repo")
		h.createServer(admin, map[string]any{"name": "github", "url": up.URL})
		keyID, token := h.createKey(admin, "bot", map[string]any{"mcp_tool_ids": []string{"github__search"}})

		cs := mcpConnect(t, base, token)
		var got []string
		for tool, err := range cs.Tools(context.Background(), nil) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, tool.Name)
		}
		if !slices.Equal(got, []string{"github__search"}) {
			t.Fatalf("tools %v", got)
		}
		res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "github__search", Arguments: map[string]any{"text": "hi"}})
		if err != nil || res.Content[0].(*sdk.TextContent).Text != "search: hi" {
			t.Fatalf("call: %v %+v", err, res)
		}
		_, err = cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "github__delete_repo"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeToolDenied {
			t.Fatalf("denied call: %v", err)
		}

		h.flushAudit()
		// The allowed call is an mcp_tool.called event; the denied one is
		// in the trail once, as its decision's authorization.denied event.
		trail := h.do("GET", "/api/v1/audit-events?action=mcp_tool.called", admin, nil).json(t)["data"].([]any)
		if len(trail) != 1 {
			t.Fatalf("%d call events in the trail, want 1", len(trail))
		}
		denials := h.do("GET", "/api/v1/audit-events?action=authorization.denied", admin, nil).json(t)["data"].([]any)
		if len(denials) != 1 || denials[0].(map[string]any)["target_id"] != "github__delete_repo" || denials[0].(map[string]any)["reason"] == "" {
			t.Fatalf("denials in the trail %v, want the denied tool once with its reason", denials)
		}
		for _, ev := range append(trail, denials...) {
			e := ev.(map[string]any)
			if e["actor_id"] != keyID || e["request_id"] == "" {
				t.Fatalf("call event %v: want the key and the request id", e)
			}
		}

		for _, path := range []string{
			"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
			"/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server/mcp",
			"/.well-known/openid-configuration",
		} {
			resp, err := openapitest.Client(t).Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("%s: %d, want 404 so clients start no OAuth flow", path, resp.StatusCode)
			}
		}
		resp, err := openapitest.Client(t).Post(base+"/mcp", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="keygate"` {
			t.Fatalf("no key: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if cs.Close() != nil {
			t.Fatal("closing the session (DELETE through the router) failed")
		}
	})
}

// TestMCPHeadersNeverLeak registers upstreams with secret headers, drives
// every path that sees them, then searches the logs, every audit row and
// every answer for the secrets.
func TestMCPHeadersNeverLeak(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		h := newMCPHarness(t, db)
		base := h.listen()
		admin := h.jwt("t1", "root", "admin")
		const secret, secret2 = "hdr-secret-5d1c2e9a", "hdr-secret-rotated-77af"
		var bodies []string
		record := func(r response) response { bodies = append(bodies, string(r.body)); return r }

		up := newTestUpstream(t, "search")
		res := record(h.do("POST", "/api/v1/mcp-servers", admin, map[string]any{
			"name": "github", "url": up.URL, "headers": map[string]string{"Authorization": "Bearer " + secret, "X-Extra": secret},
		}))
		id := res.json(t)["id"].(string)
		record(h.do("GET", "/api/v1/mcp-servers/"+id, admin, nil))
		record(h.do("GET", "/api/v1/mcp-servers", admin, nil))
		record(h.do("PATCH", "/api/v1/mcp-servers/"+id, admin, map[string]any{"headers": map[string]string{"Authorization": secret2}}))
		record(h.do("POST", "/api/v1/mcp-servers/"+id+"/sync", admin, nil))
		record(h.do("GET", "/api/v1/mcp-tools", admin, nil))
		// Refused inputs carrying secrets.
		record(h.do("POST", "/api/v1/mcp-servers", admin, map[string]any{"name": "x", "url": up.URL, "headers": map[string]string{"X-A": secret + "\n"}}))
		record(h.do("PATCH", "/api/v1/mcp-servers/"+id, admin, map[string]any{"headers": map[string]string{"Host": secret}}))
		record(h.do("POST", "/api/v1/mcp-servers", admin, map[string]any{"name": "github", "url": up.URL, "headers": map[string]string{"X-A": secret}}))

		_, token := h.createKey(admin, "bot", map[string]any{"mcp_tool_ids": []string{"*"}})
		cs := mcpConnect(t, base, token)
		if _, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "github__search", Arguments: map[string]any{"text": "x"}}); err != nil {
			t.Fatal(err)
		}
		up.Close()
		res2, _ := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "github__search"})
		if res2 == nil || !res2.IsError {
			t.Fatalf("a call to a dead upstream: %+v", res2)
		}
		h.gw.WaitIdle()
		record(h.do("POST", "/api/v1/mcp-servers/"+id+"/sync", admin, nil))
		record(h.do("GET", "/api/v1/mcp-servers/"+id, admin, nil))
		record(h.do("DELETE", "/api/v1/mcp-servers/"+id, admin, nil))
		h.flushAudit()
		record(h.do("GET", "/api/v1/audit-events?limit=100", admin, nil))

		rows := auditRowsAsText(t, db)
		if len(rows) < 6 {
			t.Fatalf("only %d audit rows: the scenario did not run", len(rows))
		}
		haystacks := map[string]string{"logs": h.logs.String(), "audit rows": strings.Join(rows, "\n"), "answers": strings.Join(bodies, "\n")}
		for _, s := range []string{secret, secret2} {
			for where, text := range haystacks {
				if strings.Contains(text, s) {
					t.Errorf("%s contain a header value (%.12s…)", where, s)
				}
			}
		}
		if !strings.Contains(haystacks["audit rows"], `"headers"`) {
			t.Error("the header change is not in the trail (by name)")
		}
	})
}
