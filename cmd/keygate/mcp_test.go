package main_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/mcp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// bearerTransport adds a fixed Authorization header to every request and
// sends it on next, which checks the exchange against the OpenAPI document.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestMCPGatewayEndToEnd runs the real binary as an MCP gateway in front of
// an in-process upstream: the registry and /mcp are wired, the scheduler
// runs, and SIGTERM with a client's event stream open still exits cleanly.
func TestMCPGatewayEndToEnd(t *testing.T) {
	t.Parallel()
	up := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
	for _, name := range []string{"search", "delete_repo"} {
		sdk.AddTool(up, &sdk.Tool{Name: name, Description: name},
			func(_ context.Context, req *sdk.CallToolRequest, in struct {
				Q string `json:"q"`
			}) (*sdk.CallToolResult, any, error) {
				if got := req.Extra.Header.Get("Authorization"); got != "Bearer upstream-credential" {
					return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "bad credential " + got}}}, nil, nil
				}
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + in.Q}}}, nil, nil
			})
	}
	upstream := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return up }, nil))
	t.Cleanup(func() {
		upstream.CloseClientConnections()
		upstream.Close()
	})

	inst := start(t, t.TempDir(), "", "KEYGATE_MCP_SYNC_INTERVAL=1s")
	admin := inst.devToken()
	srv := inst.call("POST", "/api/v1/mcp-servers", admin, map[string]any{
		"name": "github", "url": upstream.URL, "headers": map[string]string{"Authorization": "Bearer upstream-credential"}})
	want(t, "register the upstream", srv, 201, "")
	if srv.body["sync_error"] != "" || strings.Contains(srv.raw, "upstream-credential") {
		t.Fatalf("registered: %s", srv.raw)
	}
	key := inst.call("POST", "/api/v1/api-keys", admin, map[string]any{
		"name": "agent", "permission_scope": map[string]any{"mcp_tool_ids": []string{"github__search"}}})
	want(t, "create the key", key, 201, "")

	cl := sdk.NewClient(&sdk.Implementation{Name: "e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: inst.base + "/mcp", HTTPClient: &http.Client{Transport: bearerTransport{key.body["token"].(string), inst.http.Transport}}, MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect to /mcp: %v\n%s", err, inst.stderr.String())
	}
	listed, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range listed.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Equal(names, []string{"github__search"}) {
		t.Fatalf("tools %v", names)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "github__search", Arguments: map[string]any{"q": "arg-canary-91"}})
	if err != nil || res.IsError || res.Content[0].(*sdk.TextContent).Text != "search:arg-canary-91" {
		t.Fatalf("allowed call: %v %+v", err, res)
	}
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "github__delete_repo"})
	var rpcErr *jsonrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeToolDenied {
		t.Fatalf("denied call: %v", err)
	}

	// The client's standalone event stream is still open: stopping must not
	// wait on it.
	begin := time.Now()
	inst.stop()
	if took := time.Since(begin); took > 10*time.Second {
		t.Fatalf("shutdown took %s with an MCP session open", took)
	}
	logs := inst.stderr.String()
	for _, secret := range []string{"upstream-credential", "arg-canary-91", key.body["token"].(string)} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the logs hold %.12s…", secret)
		}
	}
}
