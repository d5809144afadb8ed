package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/mcp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestBearerCheckOverBudget: /mcp answers 429 with Retry-After and the
// rate_limited problem once the address has spent its failed
// authentications, and a key keygate holds as live still connects.
func TestBearerCheckOverBudget(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t, func(c *app.Config) { c.AuthFailureBurst = 3 })
	_, good := g.key("acme", "good", "*")
	connect(t, g.url, good) // now cached
	const ping = `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	for i := range 3 {
		if res := post(t, g.url, "pk_not_a_key", "", ping); res.status != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d, want 401", i, res.status)
		}
	}
	res := post(t, g.url, "pk_not_a_key", "", ping)
	var problem map[string]any
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" ||
		res.header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(res.body), &problem) != nil || problem["code"] != "rate_limited" {
		t.Fatalf("over budget: %d %v %s", res.status, res.header, res.body)
	}
	if c, err := dial(g.url, good); err != nil {
		t.Fatalf("a live key over budget: %v", err)
	} else {
		_ = c.Close()
	}
}

// bigUpstream is an MCP server whose tool "big" answers size bytes of
// text, as JSON or as an event stream, counting every request it gets.
type bigUpstream struct {
	posts, calls atomic.Int64
	http         *httptest.Server
}

func newBigUpstream(t *testing.T, jsonAnswers bool, size int, description int) *bigUpstream {
	t.Helper()
	u := &bigUpstream{}
	s := sdk.NewServer(&sdk.Implementation{Name: "big", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "big", Description: strings.Repeat("d", description)},
		func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
			u.calls.Add(1)
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: strings.Repeat("x", size)}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "small"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		u.calls.Add(1)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "ok"}}}, nil, nil
	})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{JSONResponse: jsonAnswers})
	u.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			u.posts.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		u.http.CloseClientConnections()
		u.http.Close()
	})
	return u
}

// TestUpstreamAnswerTooLarge: an answer over MCPMaxResponseBytes fails the
// call with a clear JSON-RPC error, is asked for once only, and leaves the
// upstream usable; a catalog over the bound is a sync error saying so.
func TestUpstreamAnswerTooLarge(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	for _, tc := range []struct {
		note string
		json bool
	}{{"json", true}, {"event stream", false}} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			g := newSQLiteGateway(t, func(c *app.Config) { c.MCPMaxResponseBytes = limit })
			up := newBigUpstream(t, tc.json, 10*limit, 0)
			srv := g.register("acme", "up", up.http.URL, nil, 0)
			if srv.SyncError != "" {
				t.Fatalf("sync: %s", srv.SyncError)
			}
			_, token := g.key("acme", "k", "up__*")
			c := connect(t, g.url, token)
			before := up.posts.Load()
			_, err := c.call("up__big", nil)
			var rpcErr *jsonrpc.Error
			if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeUpstreamTooLarge || !strings.Contains(rpcErr.Message, "KEYGATE_MCP_MAX_RESPONSE_BYTES") {
				t.Fatalf("too large an answer: %v, want JSON-RPC error %d naming the setting", err, mcp.CodeUpstreamTooLarge)
			}
			if up.calls.Load() != 1 || up.posts.Load()-before != 1 {
				t.Fatalf("the upstream ran the tool %d times over %d requests, want once", up.calls.Load(), up.posts.Load()-before)
			}
			if res, err := c.call("up__small", nil); err != nil || textOf(t, res) != "ok" {
				t.Fatalf("the next call: %v %v", res, err)
			}
			calls := g.audit.calls()
			if last := calls[len(calls)-2]; last.Details["result"] != "too_large" || !strings.Contains(last.Reason, "KEYGATE_MCP_MAX_RESPONSE_BYTES") {
				t.Fatalf("audit event %+v, want result too_large", last)
			}
		})
	}
	t.Run("catalog", func(t *testing.T) {
		t.Parallel()
		g := newSQLiteGateway(t, func(c *app.Config) { c.MCPMaxResponseBytes = limit })
		up := newBigUpstream(t, true, 1, 2*limit)
		srv := g.register("acme", "up", up.http.URL, nil, 0)
		if !strings.Contains(srv.SyncError, "larger than 65536 bytes (KEYGATE_MCP_MAX_RESPONSE_BYTES)") {
			t.Fatalf("sync error %q, want the bound named", srv.SyncError)
		}
	})
}

// TestSessionLimits: past the per-key or the total bound an initialize is
// 429, no open session is closed for it, and a session that ends frees its
// place.
func TestSessionLimits(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t, func(c *app.Config) { c.MCPMaxSessionsPerKey, c.MCPMaxSessions = 3, 5 })
	aID, a := g.key("acme", "a", "*")
	bID, b := g.key("acme", "b", "*")
	var mine []*client
	for range 3 {
		mine = append(mine, connect(t, g.url, a))
	}
	res := post(t, g.url, a, "", initialize)
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" || !strings.Contains(res.body, "KEYGATE_MCP_MAX_SESSIONS_PER_KEY") {
		t.Fatalf("a 4th session of one key: %d %s, want 429 naming the setting", res.status, res.body)
	}
	if _, err := dial(g.url, a); err == nil || !strings.Contains(err.Error(), "Too Many Requests") {
		t.Fatalf("an SDK client past the bound: %v", err)
	}
	if res := post(t, g.url, b, "", initialize); res.status != http.StatusOK {
		t.Fatalf("another key: %d", res.status)
	}
	connect(t, g.url, b)
	if total, ofB := g.gw.OpenSessions(bID); total != 5 || ofB != 2 {
		t.Fatalf("%d sessions, %d of b; want 5 and 2", total, ofB)
	}
	if res := post(t, g.url, b, "", initialize); res.status != http.StatusTooManyRequests || !strings.Contains(res.body, "KEYGATE_MCP_MAX_SESSIONS") {
		t.Fatalf("past the total: %d %s, want 429", res.status, res.body)
	}
	for _, c := range mine {
		if _, err := c.call("nothing", nil); err != nil && !strings.Contains(err.Error(), "unknown tool") {
			t.Fatalf("an open session was disturbed: %v", err)
		}
	}
	// One of a's sessions ends (DELETE): b may open one.
	_ = mine[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ofA := g.gw.OpenSessions(aID); ofA == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed session still counts")
		}
		time.Sleep(10 * time.Millisecond)
	}
	connect(t, g.url, b)
}
