package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/internal/apptest"
	"github.com/keygate/keygate/internal/openapitest"
)

// TestClientAgainstKeygate drives every call of the client against a real
// keygate, each exchange checked against the OpenAPI document, and fails
// on an operation of the document the client does not cover.
func TestClientAgainstKeygate(t *testing.T) {
	t.Parallel()
	k := apptest.Start(t)
	tr := openapitest.NewTransport(t, nil)
	connect := func(token string) *client.Client {
		c, err := client.New(k.URL, client.WithToken(token), client.WithHTTPClient(&http.Client{Transport: tr}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	admin := connect(k.Token("acme", "admin", "admin"))
	member := connect(k.Token("acme", "bob"))
	ctx := context.Background()

	t.Run("service", func(t *testing.T) {
		if h, err := admin.Health(ctx); err != nil || h.Status != "ok" || h.Version != "test" {
			t.Fatalf("health: %+v %v", h, err)
		}
		if r, err := admin.Ready(ctx); err != nil || r.Status != "ready" || r.ChangeFeed["state"] != "not_needed" {
			t.Fatalf("ready: %+v %v", r, err)
		}
		if doc, err := admin.OpenAPI(ctx); err != nil || !strings.Contains(string(doc), `"openapi": "3.1.0"`) {
			t.Fatalf("openapi: %.80s %v", doc, err)
		}
	})

	scope := client.Scope{AgentIDs: []string{"support-agent"}, FlowIDs: []string{"triage-*"}}
	created, err := admin.CreateKey(ctx, client.CreateKeyRequest{Name: "support-bot", PermissionScope: scope})
	if err != nil || !strings.HasPrefix(created.Token, "pk_") || !created.Enabled || created.Start != created.Token[:8] {
		t.Fatalf("create: %+v %v", created, err)
	}
	t.Run("problems", func(t *testing.T) {
		_, err := admin.CreateKey(ctx, client.CreateKeyRequest{Name: "support-bot"})
		wantError(t, "a taken name", err, 409, client.CodeConflict)
		if e := asError(err); e.ExistingID != created.ID || e.RequestID == "" {
			t.Fatalf("a taken name names the key holding it and the request: %+v", e)
		}
		_, err = admin.CreateKey(ctx, client.CreateKeyRequest{Name: "x", PermissionScope: client.Scope{FlowIDs: []string{"ok", "bad id"}, AgentIDs: []string{"bad\tid"}}})
		wantError(t, "invalid fields", err, 422, client.CodeInvalid)
		if fields := asError(err).Fields; len(fields) != 2 || fields[0].Field != "permission_scope.agent_ids[0]" || fields[1].Field != "permission_scope.flow_ids[1]" {
			t.Fatalf("every field at fault is named: %+v", fields)
		}
		_, err = admin.GetKey(ctx, "no-such-key")
		wantError(t, "an unknown key", err, 404, client.CodeNotFound)
		_, err = admin.WhoAmI(ctx, "pk_not_a_key")
		wantError(t, "a refused key", err, 401, client.CodeKeyInvalid)
		_, err = member.ListAuditEvents(ctx, client.ListAuditEventsParams{})
		wantError(t, "a member reading the trail", err, 403, client.CodeForbidden)
		if !client.HasCode(err, client.CodeForbidden) || client.HasCode(err, client.CodeNotFound) {
			t.Fatal("HasCode tells codes apart")
		}
		_, err = connect("").ListKeys(ctx, client.ListKeysParams{})
		wantError(t, "no token", err, 401, client.CodeUnauthorized)
	})

	t.Run("decisions", func(t *testing.T) {
		d, err := admin.Authorize(ctx, client.AuthorizeRequest{APIKey: created.Token,
			Resource: client.Resource{Type: client.ResourceFlow, ID: "triage-daily"}, Action: "execute"})
		if err != nil || !d.Allowed || d.Code != client.DecisionAllowed || d.Principal == nil || d.Principal.KeyID != created.ID || d.DecisionID == "" {
			t.Fatalf("allowed: %+v %v", d, err)
		}
		d, err = admin.Authorize(ctx, client.AuthorizeRequest{APIKey: created.Token,
			Resource: client.Resource{Type: client.ResourceFlow, ID: "billing-export"}, Action: "execute"})
		if err != nil || d.Allowed || d.Code != client.DecisionDenied || len(d.Reasons) == 0 {
			t.Fatalf("denied: %+v %v", d, err)
		}
		b, err := admin.AuthorizeBatch(ctx, created.Token, []client.Check{
			{Resource: client.Resource{Type: client.ResourceFlow, ID: "triage-1"}, Action: "execute"},
			{Resource: client.Resource{Type: client.ResourceAgent, ID: "other"}, Action: "read"},
		})
		if err != nil || len(b.Results) != 2 || !b.Results[0].Allowed || b.Results[1].Allowed || b.Code != client.DecisionDenied {
			t.Fatalf("batch: %+v %v", b, err)
		}
		who, err := admin.WhoAmI(ctx, created.Token)
		if err != nil || who.ID != created.ID || who.TenantID != "acme" || !slices.Equal(who.PermissionScope.FlowIDs, scope.FlowIDs) {
			t.Fatalf("whoami: %+v %v", who, err)
		}
	})

	t.Run("keys", func(t *testing.T) {
		if k, err := admin.DisableKey(ctx, created.ID); err != nil || k.Enabled || k.DisabledBy == nil || !k.DisabledBy.Admin {
			t.Fatalf("disable: %+v %v", k, err)
		}
		d, err := admin.Authorize(ctx, client.AuthorizeRequest{APIKey: created.Token,
			Resource: client.Resource{Type: client.ResourceFlow, ID: "triage-daily"}, Action: "execute"})
		if err != nil || d.Code != client.DecisionKeyDisabled {
			t.Fatalf("a disabled key: %+v %v", d, err)
		}
		if k, err := admin.EnableKey(ctx, created.ID); err != nil || !k.Enabled {
			t.Fatalf("enable: %+v %v", k, err)
		}
		expiry := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		name := "support-bot-2"
		k, err := admin.UpdateKey(ctx, created.ID, client.UpdateKeyRequest{Name: &name, ExpiresAt: &expiry})
		if err != nil || k.Name != name || k.ExpiresAt == nil || !k.ExpiresAt.Equal(expiry) {
			t.Fatalf("rename and expire: %+v %v", k, err)
		}
		if k, err = admin.UpdateKey(ctx, created.ID, client.UpdateKeyRequest{ClearExpiresAt: true}); err != nil || k.ExpiresAt != nil {
			t.Fatalf("clear the expiry: %+v %v", k, err)
		}
		if k, err = admin.GetKey(ctx, created.ID); err != nil || k.Name != name {
			t.Fatalf("get: %+v %v", k, err)
		}
		for _, n := range []string{"a", "b", "c", "d"} {
			if _, err := admin.CreateKey(ctx, client.CreateKeyRequest{Name: "page-" + n}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := admin.ListKeys(ctx, client.ListKeysParams{Limit: 2})
		if err != nil || len(page.Data) != 2 || page.NextCursor == "" {
			t.Fatalf("a page of two: %+v %v", page, err)
		}
		var names []string
		for key, err := range admin.Keys(ctx, client.ListKeysParams{Limit: 2}) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, key.Name)
		}
		if len(names) != 5 || names[0] != "page-d" {
			t.Fatalf("every page, newest first: %v", names)
		}
		off := false
		if page, err = admin.ListKeys(ctx, client.ListKeysParams{Enabled: &off, UserID: "admin"}); err != nil || len(page.Data) != 0 || page.NextCursor != "" {
			t.Fatalf("no disabled key: %+v %v", page, err)
		}
	})

	t.Run("scope ceilings", func(t *testing.T) {
		c, err := admin.PutScopeCeiling(ctx, "bob", client.Scope{FlowIDs: []string{"triage-*"}})
		if err != nil || c.UserID != "bob" || c.UpdatedBy != "admin" {
			t.Fatalf("put: %+v %v", c, err)
		}
		if c, err = admin.GetScopeCeiling(ctx, "bob"); err != nil || !slices.Equal(c.PermissionScope.FlowIDs, []string{"triage-*"}) {
			t.Fatalf("get: %+v %v", c, err)
		}
		_, err = member.CreateKey(ctx, client.CreateKeyRequest{Name: "wide", PermissionScope: client.Scope{FlowIDs: []string{"billing"}}})
		wantError(t, "a key past the ceiling", err, 422, client.CodeInvalid)
		if err := admin.DeleteScopeCeiling(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		_, err = admin.GetScopeCeiling(ctx, "bob")
		wantError(t, "no ceiling", err, 404, client.CodeNotFound)
	})

	t.Run("mcp", func(t *testing.T) {
		upstream := apptest.Upstream(t, "search", "delete_repo")
		srv, err := admin.CreateMCPServer(ctx, client.CreateMCPServerRequest{Name: "github", URL: upstream.URL + "/?apikey=secret",
			Headers: map[string]string{"Authorization": "Bearer upstream-secret"}})
		if err != nil || srv.SyncError != "" || srv.LastSyncedAt == nil || strings.Contains(srv.URL, "secret") {
			t.Fatalf("create: %+v %v", srv, err)
		}
		if got := <-upstream.Auth; got != "Bearer upstream-secret" {
			t.Fatalf("the upstream got Authorization %q, want the header registered", got)
		}
		timeout := 5000
		if srv, err = admin.UpdateMCPServer(ctx, srv.ID, client.UpdateMCPServerRequest{TimeoutMS: &timeout, ClearHeaders: true}); err != nil || srv.TimeoutMS != timeout {
			t.Fatalf("update: %+v %v", srv, err)
		}
		report, err := admin.SyncMCPServer(ctx, srv.ID)
		if err != nil || len(report.Tools) != 2 || report.Server.ID != srv.ID {
			t.Fatalf("sync: %+v %v", report, err)
		}
		if got, err := admin.GetMCPServer(ctx, srv.ID); err != nil || got.Name != "github" {
			t.Fatalf("get: %+v %v", got, err)
		}
		if page, err := admin.ListMCPServers(ctx, client.ListMCPServersParams{Limit: 10}); err != nil || len(page.Data) != 1 {
			t.Fatalf("list: %+v %v", page, err)
		}
		var servers, tools []string
		for s, err := range admin.MCPServers(ctx, client.ListMCPServersParams{}) {
			if err != nil {
				t.Fatal(err)
			}
			servers = append(servers, s.Name)
		}
		for tool, err := range admin.MCPTools(ctx, client.ListMCPToolsParams{ServerID: srv.ID, Limit: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			tools = append(tools, tool.ExposedName)
		}
		if !slices.Equal(servers, []string{"github"}) || !slices.Equal(tools, []string{"github__delete_repo", "github__search"}) {
			t.Fatalf("servers %v, tools %v", servers, tools)
		}
		if page, err := admin.ListMCPTools(ctx, client.ListMCPToolsParams{}); err != nil || len(page.Data) != 2 || !page.Data[0].Available {
			t.Fatalf("tools: %+v %v", page, err)
		}
		if err := admin.DeleteMCPServer(ctx, srv.ID); err != nil {
			t.Fatal(err)
		}
		_, err = admin.GetMCPServer(ctx, srv.ID)
		wantError(t, "a deleted server", err, 404, client.CodeNotFound)
	})

	t.Run("audit and offboarding", func(t *testing.T) {
		var actions []string
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(actions, "api_key.created") {
			if time.Now().After(deadline) {
				t.Fatalf("no api_key.created in the trail: %v", actions)
			}
			actions = actions[:0]
			for ev, err := range admin.AuditEvents(ctx, client.ListAuditEventsParams{KeyID: created.ID, Since: time.Now().Add(-time.Hour)}) {
				if err != nil {
					t.Fatal(err)
				}
				actions = append(actions, ev.Action)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := admin.DeleteKey(ctx, created.ID); err != nil {
			t.Fatal(err)
		}
		wantError(t, "a key deleted twice", admin.DeleteKey(ctx, created.ID), 404, client.CodeNotFound)
		if err := admin.DeleteUser(ctx, "bob"); err != nil {
			t.Fatal(err)
		}
		platform := connect(k.Token("ops", "root", "platform_admin"))
		if _, err := platform.ListAuditEvents(ctx, client.ListAuditEventsParams{Tenantless: true, Limit: 5}); err != nil {
			t.Fatal(err)
		}
		if err := platform.DeleteTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		if page, err := admin.ListKeys(ctx, client.ListKeysParams{}); err != nil || len(page.Data) != 0 {
			t.Fatalf("a deleted tenant has no keys: %+v %v", page, err)
		}
	})

	// Every operation of the document but the MCP gateway's (MCP clients
	// speak to /mcp) is a call of the client, and was just made.
	contract, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	seen := tr.Seen()
	for path, item := range contract.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !slices.Contains(op.Tags, "gateway") && !slices.Contains(seen, op.OperationID) {
				t.Errorf("%s %s (%s) is in the OpenAPI document but no client call made it", method, path, op.OperationID)
			}
		}
	}
}

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

func asError(err error) *client.Error {
	var e *client.Error
	if !errors.As(err, &e) {
		return &client.Error{}
	}
	return e
}

func wantError(t *testing.T, note string, err error, status int, code string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Status != status || e.Code != code || e.Detail == "" {
		t.Fatalf("%s: %v, want a %d %s problem", note, err, status, code)
	}
}
