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
		// Newest first, to the millisecond: keys made within the same one
		// (the four just above may be) come in the order of their ids.
		all, err := admin.ListKeys(ctx, client.ListKeysParams{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var inOnePage []string
		for _, k := range all.Data {
			inOnePage = append(inOnePage, k.Name)
		}
		if len(names) != 5 || names[4] != name || !slices.Equal(names, inOnePage) {
			t.Fatalf("every page, newest first: %v, in one page %v", names, inOnePage)
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

	t.Run("key lifecycle", func(t *testing.T) {
		k, err := admin.CreateKey(ctx, client.CreateKeyRequest{Name: "metered", PermissionScope: client.Scope{AgentIDs: []string{"a1"}},
			ExternalID: "cus_42", Meta: map[string]any{"plan": "pro"}, RateLimit: &client.RateLimit{Limit: 100, WindowMS: 60000},
			Credits: &client.CreditsRequest{Remaining: 10, Refill: &client.CreditRefill{Amount: 10, IntervalMS: 3600000}}})
		if err != nil || deref(k.ExternalID) != "cus_42" || k.Meta["plan"] != "pro" || k.RateLimit == nil || k.RateLimit.Limit != 100 ||
			k.Credits == nil || k.Credits.Remaining != 10 || k.Credits.Refill == nil || k.Credits.RefilledAt == nil ||
			k.RateLimitSetBy == nil || !k.RateLimitSetBy.Admin || k.CreditsSetBy == nil || k.RotatedAt != nil {
			t.Fatalf("create with limits and meta: %+v %v", k, err)
		}
		d, err := admin.Authorize(ctx, client.AuthorizeRequest{APIKey: k.Token, Resource: client.Resource{Type: client.ResourceAgent, ID: "a1"}, Action: "execute"})
		if err != nil || !d.Allowed || d.RateLimit == nil || d.RateLimit.Limit != 100 || d.CreditsRemaining == nil || *d.CreditsRemaining != 9 ||
			deref(d.Principal.ExternalID) != "cus_42" || d.Principal.Meta["plan"] != "pro" {
			t.Fatalf("a metered decision: %+v %v", d, err)
		}
		if who, err := admin.WhoAmI(ctx, k.Token); err != nil || deref(who.ExternalID) != "cus_42" || who.Meta["plan"] != "pro" {
			t.Fatalf("whoami: %+v %v", who, err)
		}
		if page, err := admin.ListKeys(ctx, client.ListKeysParams{ExternalID: "cus_42"}); err != nil || len(page.Data) != 1 || page.Data[0].ID != k.ID {
			t.Fatalf("by external id: %+v %v", page, err)
		}
		zero := &client.CreditsRequest{Remaining: 0}
		u, err := admin.UpdateKey(ctx, k.ID, client.UpdateKeyRequest{ClearRateLimit: true, ClearExternalID: true,
			Meta: map[string]any{"plan": "free"}, Credits: zero})
		if err != nil || u.RateLimit != nil || u.ExternalID != nil || u.Meta["plan"] != "free" || u.Credits.Remaining != 0 || u.Credits.Refill != nil {
			t.Fatalf("update limits and meta: %+v %v", u, err)
		}
		d, err = admin.Authorize(ctx, client.AuthorizeRequest{APIKey: k.Token, Resource: client.Resource{Type: client.ResourceAgent, ID: "a1"}, Action: "execute"})
		if err != nil || d.Allowed || d.Code != client.DecisionUsageExceeded || d.RateLimit != nil {
			t.Fatalf("out of credits: %+v %v", d, err)
		}
		if u, err = admin.UpdateKey(ctx, k.ID, client.UpdateKeyRequest{ClearCredits: true, ClearMeta: true}); err != nil || u.Credits != nil || u.Meta != nil {
			t.Fatalf("clear credits and meta: %+v %v", u, err)
		}

		r, err := admin.RotateKey(ctx, k.ID, time.Hour)
		if err != nil || r.ID != k.ID || r.Token == k.Token || r.RotatedAt == nil || r.PreviousTokenExpiresAt == nil ||
			!r.PreviousTokenExpiresAt.After(*r.RotatedAt) {
			t.Fatalf("rotate: %+v %v", r, err)
		}
		for _, token := range []string{k.Token, r.Token} {
			if d, err := admin.Authorize(ctx, client.AuthorizeRequest{APIKey: token, Resource: client.Resource{Type: client.ResourceAgent, ID: "a1"},
				Action: "execute"}); err != nil || !d.Allowed {
				t.Fatalf("both tokens work within the grace: %+v %v", d, err)
			}
		}
		if _, err := admin.RotateKey(ctx, k.ID, time.Millisecond); err == nil {
			t.Fatal("a grace of less than a second was sent")
		}
		if _, err := member.RotateKey(ctx, k.ID, 0); !client.HasCode(err, client.CodeNotFound) && !client.HasCode(err, client.CodeForbidden) {
			t.Fatalf("another user's key: %v", err)
		}

		var rep *client.UsageReport
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			rep, err = admin.KeyUsage(ctx, k.ID, client.KeyUsageParams{Granularity: client.GranularityHour})
			if err != nil || (rep.Total.Allowed == 3 && rep.Total.UsageExceeded == 1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("usage never counted the decisions: %+v", rep.Total)
			}
		}
		if err != nil || rep.KeyID != k.ID || rep.Granularity != "hour" || len(rep.Data) != 24 || !rep.Until.After(rep.Since) {
			t.Fatalf("usage: %+v %v", rep, err)
		}
		if days, err := admin.KeyUsage(ctx, k.ID, client.KeyUsageParams{Granularity: client.GranularityDay,
			Since: time.Now().Add(-72 * time.Hour)}); err != nil || len(days.Data) != 4 || days.Total != rep.Total {
			t.Fatalf("usage by day: %+v %v", days, err)
		}
		_, err = admin.KeyUsage(ctx, k.ID, client.KeyUsageParams{Granularity: "week"})
		wantError(t, "a granularity keygate does not know", err, 422, client.CodeInvalid)
	})

	t.Run("policy", func(t *testing.T) {
		p, err := admin.GetPolicy(ctx)
		if err != nil || p.Source != "embedded" || !strings.HasPrefix(p.Revision, "sha256:") || p.LoadedAt.IsZero() || p.LastError != nil {
			t.Fatalf("policy: %+v %v", p, err)
		}
		_, err = member.GetPolicy(ctx)
		wantError(t, "a member asking for the policy", err, 403, client.CodeForbidden)
	})

	t.Run("forward auth", func(t *testing.T) {
		r, err := admin.ForwardAuth(ctx, client.ForwardAuthRequest{APIKey: created.Token, Method: "POST", URI: "/agents/support-agent/run"})
		if err != nil || r.KeyID != created.ID || r.TenantID != "acme" || r.UserID != "admin" || r.DecisionID == "" {
			t.Fatalf("allowed: %+v %v", r, err)
		}
		_, err = admin.ForwardAuth(ctx, client.ForwardAuthRequest{APIKey: created.Token, Method: "POST", URI: "/flows/billing-export/run"})
		wantError(t, "denied", err, 403, client.CodeForbidden)
		if e := asError(err); len(e.Reasons) != 1 || e.DecisionID == "" {
			t.Fatalf("a denial says why and names the decision: %+v", e)
		}
		_, err = admin.ForwardAuth(ctx, client.ForwardAuthRequest{APIKey: "pk_not_a_key", Method: "GET", URI: "/agents/support-agent"})
		wantError(t, "a refused key", err, 401, client.CodeKeyInvalid)
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

	// Every operation of the document is a call of the client, and was just
	// made, but for those no program using the client makes.
	contract, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	seen := tr.Seen()
	for path, item := range contract.Doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !notAClientCall(op.OperationID, op.Tags) && !slices.Contains(seen, op.OperationID) {
				t.Errorf("%s %s (%s) is in the OpenAPI document but no client call made it", method, path, op.OperationID)
			}
		}
	}
}

// notAClientCall names the operations the client leaves to others: the MCP
// gateway's (MCP clients speak to /mcp); forward auth's but GET
// /v1/forward-auth, since gateways send the request's own method and path
// while ForwardAuth names them in headers, as Traefik does, so that one
// operation stands for them all; and GET /metrics, which Prometheus
// scrapes, often on a listener of its own (KEYGATE_METRICS_ADDR) that a
// client of the API does not know.
func notAClientCall(id string, tags []string) bool {
	switch {
	case slices.Contains(tags, "gateway"):
		return true
	case slices.Contains(tags, "forward-auth"):
		return id != "forwardAuth"
	}
	return id == "metrics"
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

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
