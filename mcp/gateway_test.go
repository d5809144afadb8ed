package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// rpcError returns the JSON-RPC error in err's chain, failing without one.
func rpcError(t testing.TB, err error) *jsonrpc.Error {
	t.Helper()
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) {
		t.Fatalf("error %v: want a JSON-RPC error", err)
	}
	return rpcErr
}

func TestGateway_ListsEachKeyOnlyItsTools(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		g := newGateway(t, db)
		github := newUpstream(t, "search", "create_issue", "sum")
		slack := newUpstream(t, "post", "read")
		g.register("acme", "github", github.url(), nil, 0)
		g.register("acme", "slack", slack.url(), nil, 0)
		other := newUpstream(t, "secret")
		g.register("globex", "github", other.url(), nil, 0)

		tests := []struct {
			note   string
			tenant string
			scope  []string
			want   []string
		}{
			{"a glob reaches one server's tools", "acme", []string{"github__*"}, []string{"github__create_issue", "github__search", "github__sum"}},
			{"exact names across servers", "acme", []string{"github__search", "slack__post"}, []string{"github__search", "slack__post"}},
			{"everything", "acme", []string{"*"}, []string{"github__create_issue", "github__search", "github__sum", "slack__post", "slack__read"}},
			{"an empty scope sees nothing", "acme", nil, nil},
			{"a name without the prefix matches nothing", "acme", []string{"search", "post"}, nil},
			{"another tenant's key sees its own tenant's tools only", "globex", []string{"*"}, []string{"github__secret"}},
		}
		for i, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				_, token := g.key(tt.tenant, "k"+string(rune('a'+i)), tt.scope...)
				c := connect(t, g.url, token)
				got := c.toolNames(t)
				slices.Sort(got)
				if !slices.Equal(got, tt.want) {
					t.Fatalf("tools %v, want %v", got, tt.want)
				}
			})
		}

		t.Run("definitions come through under the exposed name", func(t *testing.T) {
			_, token := g.key("acme", "defs", "github__sum")
			c := connect(t, g.url, token)
			res, err := c.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Tools) != 1 {
				t.Fatalf("tools %v", res.Tools)
			}
			tool := res.Tools[0]
			schema := mustJSON(t, tool.InputSchema)
			if tool.Name != "github__sum" || tool.Description != "adds a and b" || !strings.Contains(schema, `"A"`) || tool.OutputSchema == nil {
				t.Fatalf("tool %+v (schema %s): the upstream's definition did not come through", tool, schema)
			}
		})
	})
}

func TestGateway_CallsProxyFaithfully(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	github := newUpstream(t, "search", "sum", "fail")
	g.register("acme", "github", github.url(), map[string]string{"Authorization": "Bearer upstream-credential"}, 0)
	keyID, token := g.key("acme", "bot", "github__*")
	c := connect(t, g.url, token)

	tests := []struct {
		note    string
		tool    string
		args    any
		text    string
		isError bool
		result  string
	}{
		{"text content", "github__search", map[string]any{"text": "hello"}, "search: hello", false, "ok"},
		{"structured content", "github__sum", map[string]any{"A": 2, "B": 40}, `{"sum":42}`, false, "ok"},
		{"a tool's own error is its result, not a protocol error", "github__fail", nil, "it failed upstream", true, "tool_error"},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			before := len(g.audit.calls())
			res, err := c.call(tt.tool, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got := textOf(t, res); got != tt.text || res.IsError != tt.isError {
				t.Fatalf("result %q isError=%v, want %q isError=%v", got, res.IsError, tt.text, tt.isError)
			}
			if tt.tool == "github__sum" && mustJSON(t, res.StructuredContent) != `{"sum":42}` {
				t.Fatalf("structured content %s", mustJSON(t, res.StructuredContent))
			}
			evs := g.audit.calls()
			if len(evs) != before+1 {
				t.Fatalf("%d call events, want one more than %d", len(evs), before)
			}
			ev := evs[len(evs)-1]
			if ev.ActorID != keyID || ev.TargetID != tt.tool || ev.Outcome != authz.OutcomeSuccess || ev.TenantID != "acme" ||
				ev.Details["result"] != tt.result || ev.Details["allowed"] != true || ev.Details["server"] != "github" ||
				ev.Details["decision_id"] == "" {
				t.Fatalf("audit event %+v", ev)
			}
			if _, ok := ev.Details["duration_ms"].(float64); !ok {
				t.Fatalf("audit event has no duration: %+v", ev.Details)
			}
		})
	}

	t.Run("the upstream sees its own credential, never the client's key", func(t *testing.T) {
		seen := github.authHeaders()
		if len(seen) == 0 {
			t.Fatal("the upstream saw no request")
		}
		for _, h := range seen {
			if h != "Bearer upstream-credential" {
				t.Fatalf("the upstream was sent Authorization %q", h)
			}
		}
	})
	t.Run("arguments are never logged or audited", func(t *testing.T) {
		if _, err := c.call("github__search", map[string]any{"text": "arg-canary-7f3a"}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(g.logs.String(), "arg-canary-7f3a") {
			t.Fatal("tool arguments reached the logs")
		}
		for _, ev := range g.audit.calls() {
			if strings.Contains(mustJSON(t, ev), "arg-canary-7f3a") {
				t.Fatal("tool arguments reached the audit trail")
			}
		}
	})
}

func TestGateway_RefusesDeniedAndUnknownToolsWithoutContactingTheUpstream(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	github := newUpstream(t, "search", "delete_repo")
	g.register("acme", "github", github.url(), nil, 0)
	keyID, token := g.key("acme", "bot", "github__search", "github__ghost*")
	c := connect(t, g.url, token)

	tests := []struct {
		note    string
		tool    string
		code    int64
		message []string
		outcome string
	}{
		{"a tool outside the scope is denied, with the reason", "github__delete_repo", mcp.CodeToolDenied,
			[]string{`tool "github__delete_repo" is not allowed for this API key`, `not in the key's mcp_tool_ids`}, authz.OutcomeDenied},
		{"an unknown tool outside the scope is denied too", "jira__anything", mcp.CodeToolDenied,
			[]string{`"jira__anything" is not allowed`}, authz.OutcomeDenied},
		{"an unknown tool the scope would allow is unknown", "github__ghost", jsonrpc.CodeInvalidParams,
			[]string{`unknown tool "github__ghost"`}, authz.OutcomeFailure},
		{"a name no tool can have is invalid", strings.Repeat("x", 300), jsonrpc.CodeInvalidParams,
			[]string{"unknown tool", "1 to 200 characters"}, authz.OutcomeFailure},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			before, recorded := github.calls.Load(), g.audit.count()
			_, err := c.call(tt.tool, map[string]any{"text": "x"})
			rpcErr := rpcError(t, err)
			if rpcErr.Code != tt.code {
				t.Fatalf("code %d (%s), want %d", rpcErr.Code, rpcErr.Message, tt.code)
			}
			for _, m := range tt.message {
				if !strings.Contains(rpcErr.Message, m) {
					t.Fatalf("message %q does not say %q", rpcErr.Message, m)
				}
			}
			if github.calls.Load() != before {
				t.Fatal("the upstream was contacted")
			}
			if n := g.audit.count() - recorded; n != 1 {
				t.Fatalf("the call left %d audit events, want exactly 1", n)
			}
			evs := g.audit.calls()
			ev := evs[len(evs)-1]
			if ev.Outcome != tt.outcome || ev.ActorID != keyID || len(ev.TargetID) > authz.MaxResourceIDLen {
				t.Fatalf("audit event %+v, want outcome %s", ev, tt.outcome)
			}
			if tt.outcome == authz.OutcomeDenied && (ev.Action != authz.AuditAuthzDenied || ev.TargetID != tt.tool || ev.Reason == "") {
				t.Fatalf("a denied call's event %+v must name the tool and the reason", ev)
			}
		})
	}
	t.Run("a denial carries its decision id and reasons as data", func(t *testing.T) {
		_, err := c.call("github__delete_repo", nil)
		var data struct {
			Tool       string   `json:"tool"`
			Reasons    []string `json:"reasons"`
			DecisionID string   `json:"decision_id"`
		}
		if err := json.Unmarshal(rpcError(t, err).Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.Tool != "github__delete_repo" || len(data.Reasons) == 0 || !authz.ValidID(data.DecisionID) {
			t.Fatalf("data %+v", data)
		}
	})
	t.Run("the allowed tool still works on the same session", func(t *testing.T) {
		res, err := c.call("github__search", map[string]any{"text": "ok"})
		if err != nil || textOf(t, res) != "search: ok" {
			t.Fatalf("%v %+v", err, res)
		}
	})
}

func TestGateway_SlowUpstreamTimesOutAloneAndOthersStay(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	slow := newUpstream(t, "slow")
	fast := newUpstream(t, "search")
	// Registered with the default timeout, so a loaded machine cannot fail
	// the first sync, then given the shortest.
	sluggish := g.register("acme", "sluggish", slow.url(), nil, 0)
	shortest := authz.MinMCPTimeoutMS
	if _, err := g.mcpSvc.UpdateServer(as("acme", "admin", authz.RoleAdmin), sluggish.ID, authz.MCPServerUpdate{TimeoutMS: &shortest}); err != nil {
		t.Fatal(err)
	}
	g.register("acme", "github", fast.url(), nil, 0)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token)

	res, err := c.call("sluggish__slow", nil)
	if err != nil {
		t.Fatalf("a timeout must be an error result, not a protocol error: %v", err)
	}
	if !res.IsError || !strings.Contains(textOf(t, res), "did not answer within 100ms") {
		t.Fatalf("result %+v", res)
	}
	if ev := g.audit.calls()[0]; ev.Details["result"] != "timeout" || ev.Outcome != authz.OutcomeFailure {
		t.Fatalf("audit event %+v", ev)
	}
	if got := c.toolNames(t); !slices.Equal(got, []string{"github__search", "sluggish__slow"}) {
		t.Fatalf("tools %v: a slow call hides nothing", got)
	}
	if res, err := c.call("github__search", map[string]any{"text": "still here"}); err != nil || textOf(t, res) != "search: still here" {
		t.Fatalf("the other server: %v %+v", err, res)
	}
}

func TestGateway_DeadUpstreamHidesItsToolsOnly(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	github := newUpstream(t, "search")
	slack := newUpstream(t, "post")
	slackSrv := g.register("acme", "slack", slack.url(), nil, 0)
	g.register("acme", "github", github.url(), nil, 0)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token)
	if got := c.toolNames(t); !slices.Equal(got, []string{"github__search", "slack__post"}) {
		t.Fatalf("tools %v", got)
	}

	// The upstream dies: its process and every connection to it go away.
	slack.http.CloseClientConnections()
	slack.http.Close()

	res, err := c.call("slack__post", map[string]any{"text": "x"})
	if err != nil {
		t.Fatalf("a dead upstream must be an error result, not a protocol error: %v", err)
	}
	if !res.IsError || !strings.Contains(textOf(t, res), `MCP server "slack" could not be reached`) {
		t.Fatalf("result %+v", res)
	}
	g.gw.WaitIdle() // the failed call started a health check

	if got := c.toolNames(t); !slices.Equal(got, []string{"github__search"}) {
		t.Fatalf("tools %v: the dead server's tools must be hidden, the other's kept", got)
	}
	select {
	case <-c.listChanged: // the catalog was loaded before the session began: this is the hiding
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not told the tool list changed")
	}
	srv, err := g.mcpSvc.Server(as("acme", "admin", authz.RoleAdmin), slackSrv.ID)
	if err != nil || srv.SyncError == "" || srv.Available() {
		t.Fatalf("server %+v, %v: want the failure recorded", srv, err)
	}
	if strings.Contains(srv.SyncError, slack.url()) {
		t.Fatalf("sync error %q quotes the URL", srv.SyncError)
	}
	res, err = c.call("slack__post", nil)
	if err != nil || !res.IsError || !strings.Contains(textOf(t, res), "at its last sync") {
		t.Fatalf("a hidden tool: %v %+v", err, res)
	}
	if res, err := c.call("github__search", map[string]any{"text": "alive"}); err != nil || textOf(t, res) != "search: alive" {
		t.Fatalf("the other server: %v %+v", err, res)
	}
}

func TestGateway_UpstreamComesBack(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	flaky := newUpstream(t, "post")
	g.register("acme", "slack", flaky.url(), nil, 0)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token)

	flaky.down.Store(true)
	flaky.http.CloseClientConnections() // the pooled session's stream breaks
	if res, err := c.call("slack__post", nil); err != nil || !res.IsError {
		t.Fatalf("down: %v %+v", err, res)
	}
	g.gw.WaitIdle()
	if got := c.toolNames(t); len(got) != 0 {
		t.Fatalf("tools %v while down", got)
	}

	flaky.down.Store(false)
	// Within the backoff a call to the hidden tool starts no health check.
	if res, _ := c.call("slack__post", nil); !res.IsError {
		t.Fatal("the tool answered before any sync saw its server again")
	}
	g.gw.WaitIdle()
	if got := c.toolNames(t); len(got) != 0 {
		t.Fatalf("tools %v: a health check ran within the backoff", got)
	}
	g.clock.Advance(mcp.DefaultResyncBackoff)
	if res, _ := c.call("slack__post", nil); !res.IsError {
		t.Fatal("a hidden tool is not called even when the check will find it back")
	}
	g.gw.WaitIdle()
	if got := c.toolNames(t); !slices.Equal(got, []string{"slack__post"}) {
		t.Fatalf("tools %v: the server came back", got)
	}
	if res, err := c.call("slack__post", map[string]any{"text": "back"}); err != nil || textOf(t, res) != "post: back" {
		t.Fatalf("after recovery: %v %+v", err, res)
	}
}

func TestGateway_ScheduledSyncFollowsTheUpstream(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	g.register("acme", "github", up.url(), nil, 0)
	_, token := g.key("acme", "bot", "github__*")
	c := connect(t, g.url, token)

	up.down.Store(true)
	up.http.CloseClientConnections()
	if err := g.gw.SyncAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.gw.WaitIdle()
	if got := c.toolNames(t); len(got) != 0 {
		t.Fatalf("tools %v after a failed scheduled sync", got)
	}
	up.down.Store(false)
	if err := g.gw.SyncAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.gw.WaitIdle()
	if got := c.toolNames(t); !slices.Equal(got, []string{"github__search"}) {
		t.Fatalf("tools %v after the upstream came back", got)
	}
}

func TestGateway_UpstreamListChangedResyncs(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	g.register("acme", "github", up.url(), nil, 0)
	_, token := g.key("acme", "bot", "github__*")
	c := connect(t, g.url, token)
	if got := c.toolNames(t); !slices.Equal(got, []string{"github__search"}) {
		t.Fatalf("tools %v", got)
	}

	up.addTool("create_issue") // the upstream sends notifications/tools/list_changed
	c.waitTools(t, "github__create_issue", "github__search")
	if res, err := c.call("github__create_issue", map[string]any{"text": "bug"}); err != nil || textOf(t, res) != "create_issue: bug" {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestGateway_ManagementChangesApplyAtOnce(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	srv := g.register("acme", "github", up.url(), nil, 0)
	keyID, token := g.key("acme", "bot", "github__*")
	c := connect(t, g.url, token)
	admin := as("acme", "admin", authz.RoleAdmin)
	off, on, gh := false, true, "gh"

	steps := []struct {
		note string
		do   func() error
		want []string
	}{
		{"disabling the server hides its tools", func() error {
			_, err := g.mcpSvc.UpdateServer(admin, srv.ID, authz.MCPServerUpdate{Enabled: &off})
			return err
		}, nil},
		{"enabling it shows them again", func() error {
			_, err := g.mcpSvc.UpdateServer(admin, srv.ID, authz.MCPServerUpdate{Enabled: &on})
			return err
		}, []string{"github__search"}},
		{"renaming it renames its tools, out of the key's scope", func() error {
			_, err := g.mcpSvc.UpdateServer(admin, srv.ID, authz.MCPServerUpdate{Name: &gh})
			return err
		}, nil},
		{"a new scope applies on the next request of the same session", func() error {
			scope := authz.Scope{MCPToolIDs: []string{"gh__*"}}
			_, err := g.keys.UpdateKey(admin, keyID, authz.APIKeyUpdate{Scope: &scope})
			return err
		}, []string{"gh__search"}},
		{"deleting the server removes its tools", func() error {
			return g.mcpSvc.DeleteServer(admin, srv.ID)
		}, nil},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.note, err)
		}
		if got := c.toolNames(t); !slices.Equal(got, step.want) {
			t.Fatalf("%s: tools %v, want %v", step.note, got, step.want)
		}
	}
}

func TestGateway_EveryRequestIsAuthenticatedAgain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note   string
		revoke func(g *gateway, keyID string) error
		reason string
	}{
		{"disabled mid-session", func(g *gateway, keyID string) error {
			off := false
			_, err := g.keys.UpdateKey(as("acme", "admin", authz.RoleAdmin), keyID, authz.APIKeyUpdate{Enabled: &off})
			return err
		}, "the key is disabled"},
		{"deleted mid-session", func(g *gateway, keyID string) error {
			return g.keys.DeleteKey(as("acme", "admin", authz.RoleAdmin), keyID)
		}, "the API key is not valid"},
		{"expired mid-session", func(g *gateway, keyID string) error {
			g.clock.Advance(2 * time.Hour)
			return nil
		}, "the key has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			t.Parallel()
			g := newSQLiteGateway(t)
			up := newUpstream(t, "search")
			g.register("acme", "github", up.url(), nil, 0)
			expires := g.clock.Now().Add(time.Hour)
			k, token, err := g.keys.CreateKey(as("acme", "admin", authz.RoleAdmin), authz.CreateKeyInput{
				Name: "bot", Scope: authz.Scope{MCPToolIDs: []string{"*"}}, ExpiresAt: &expires,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := connect(t, g.url, token)
			if _, err := c.call("github__search", map[string]any{"text": "before"}); err != nil {
				t.Fatal(err)
			}
			if err := tt.revoke(g, k.ID); err != nil {
				t.Fatal(err)
			}
			before := up.calls.Load()
			_, err = c.call("github__search", map[string]any{"text": "after"})
			if err == nil || !strings.Contains(err.Error(), "Unauthorized") {
				t.Fatalf("call after revocation: %v, want a 401", err)
			}
			if up.calls.Load() != before {
				t.Fatal("the upstream was called with a revoked key")
			}
			// The session is still there; a raw request on it says why.
			res := post(t, g.url, token, c.ID(), `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
			if res.status != http.StatusUnauthorized || !strings.Contains(res.body, tt.reason) {
				t.Fatalf("raw request: %d %q, want 401 saying %q", res.status, res.body, tt.reason)
			}
		})
	}
}

type rawResponse struct {
	status int
	header http.Header
	body   string
}

// post sends one raw JSON-RPC POST to url.
func post(t testing.TB, url, token, session, body string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return rawResponse{status: res.StatusCode, header: res.Header, body: string(b)}
}

const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func TestGateway_RefusedKeysGetABearerChallenge(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	_, token := g.key("acme", "bot", "*")
	disabledID, disabled := g.key("acme", "off", "*")
	off := false
	if _, err := g.keys.UpdateKey(as("acme", "admin", authz.RoleAdmin), disabledID, authz.APIKeyUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	random, _ := authz.NewToken(nil)

	tests := []struct {
		note, token string
		status      int
		body        string
	}{
		{"no key", "", http.StatusUnauthorized, "no bearer token"},
		{"a malformed key", "pk_nope", http.StatusUnauthorized, "the API key is not valid"},
		{"an unknown key", random, http.StatusUnauthorized, "the API key is not valid"},
		{"a disabled key", disabled, http.StatusUnauthorized, "the key is disabled"},
		{"a live key", token, http.StatusOK, `"protocolVersion"`},
	}
	for _, tt := range tests {
		t.Run(tt.note, func(t *testing.T) {
			res := post(t, g.url, tt.token, "", initialize)
			if res.status != tt.status || !strings.Contains(res.body, tt.body) {
				t.Fatalf("%d %q, want %d with %q", res.status, res.body, tt.status, tt.body)
			}
			challenge := res.header.Values("WWW-Authenticate")
			if tt.status == http.StatusUnauthorized {
				if len(challenge) != 1 || challenge[0] != `Bearer realm="keygate"` {
					t.Fatalf("WWW-Authenticate %q, want exactly Bearer realm=\"keygate\"", challenge)
				}
			} else if len(challenge) != 0 {
				t.Fatalf("WWW-Authenticate %q on a %d", challenge, res.status)
			}
			if strings.Contains(strings.Join(challenge, ","), "resource_metadata") {
				t.Fatal("the challenge points clients at OAuth metadata")
			}
		})
	}
}

func TestGateway_ASessionBelongsToTheKeyThatOpenedIt(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	_, alice := g.key("acme", "alice", "*")
	_, bob := g.key("acme", "bob", "*")
	c := connect(t, g.url, alice)
	res := post(t, g.url, bob, c.ID(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	if res.status != http.StatusForbidden {
		t.Fatalf("another key on alice's session: %d %q, want 403", res.status, res.body)
	}
}

func TestGateway_ServesGetStreamsAndDelete(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token) // opens the standalone GET stream

	req, _ := http.NewRequest(http.MethodDelete, g.url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Mcp-Session-Id", c.ID())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", res.StatusCode)
	}
	if r := post(t, g.url, token, c.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`); r.status != http.StatusNotFound {
		t.Fatalf("a deleted session: %d %q, want 404", r.status, r.body)
	}
}

func TestGateway_HeadersAreSentAndNeverShown(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	const secret = "hdr-canary-0b5e9d"
	srv := g.register("acme", "github", up.url()+"?token=url-canary-41c2", map[string]string{"X-Api-Token": secret}, 0)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token)
	if _, err := c.call("github__search", map[string]any{"text": "x"}); err != nil {
		t.Fatal(err)
	}
	up.down.Store(true)
	up.http.CloseClientConnections()
	_, _ = c.call("github__search", nil)
	g.gw.WaitIdle()
	got, err := g.mcpSvc.Server(as("acme", "admin", authz.RoleAdmin), srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The URL's query may hold a token: its values are redacted wherever
	// the URL is shown, and it is never logged or audited.
	for where, text := range map[string]string{"logs": g.logs.String(), "sync error": got.SyncError, "server JSON": mustJSON(t, got), "audit": mustJSON(t, g.audit.events)} {
		for _, needle := range []string{secret, "url-canary-41c2"} {
			if strings.Contains(text, needle) {
				t.Errorf("%s hold %q", where, needle)
			}
		}
	}
	if got.SyncError == "" {
		t.Fatal("the failure was not recorded")
	}
}

// TestGateway_ConcurrentCalls runs many calls at once on several sessions,
// for the race detector.
func TestGateway_ConcurrentCalls(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	g.register("acme", "github", up.url(), nil, 0)
	_, token := g.key("acme", "bot", "github__*")
	errs := make(chan error, 40)
	for s := range 4 {
		c := connect(t, g.url, token)
		for i := range 10 {
			go func() {
				res, err := c.call("github__search", map[string]any{"text": "x"})
				if err == nil && (len(res.Content) != 1 || res.Content[0].(*sdk.TextContent).Text != "search: x") {
					err = errors.New("wrong result")
				}
				if err == nil && (s+i)%3 == 0 {
					_, err = c.ListTools(context.Background(), nil)
				}
				errs <- err
			}()
		}
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(g.audit.calls()); n != 40 {
		t.Fatalf("%d call events, want 40", n)
	}
}

// downKeys is a key service whose store cannot be reached.
type downKeys struct{ mcp.Keys }

func (downKeys) Authenticate(context.Context, string) (*authz.Principal, error) {
	return nil, authz.Errorf(authz.EUNAVAILABLE, "keys cannot be looked up right now")
}

func TestGateway_KeysThatCannotBeLookedUpAreA503(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	gw, err := mcp.New(mcp.Options{Keys: downKeys{g.keys}, Catalog: g.mcpSvc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler())
	defer srv.Close()
	_, token := g.key("acme", "bot", "*")
	res := post(t, srv.URL, token, "", initialize)
	if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "cannot be looked up") {
		t.Fatalf("%d %v %q, want a 503 to retry", res.status, res.header, res.body)
	}
	if res.header.Get("WWW-Authenticate") != "" {
		t.Fatal("an outage is not a bad credential")
	}
}
