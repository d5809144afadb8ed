package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apptest"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpHarness is the harness with the MCP gateway in view: the registry
// under /api/v1/mcp-servers and /mcp are mounted in every harness, as in
// keygate serve.
type mcpHarness struct {
	*harness
	mcp *authz.MCPServerService
	gw  *mcp.Gateway
}

func newMCPHarness(t *testing.T, db *storage.DB) *mcpHarness {
	t.Helper()
	h := newHarness(t, db)
	return &mcpHarness{harness: h, mcp: h.app.MCP, gw: h.app.Gateway}
}

// listen serves the router on loopback, for clients that need real HTTP
// (event streams).
func (h *mcpHarness) listen() string {
	h.t.Helper()
	ts := httptest.NewServer(h.srv)
	h.t.Cleanup(func() {
		h.gw.EndSessions()
		ts.Close()
	})
	return ts.URL
}

// newTestUpstream is an in-process go-sdk MCP server on loopback that
// records the Authorization headers it is sent.
func newTestUpstream(t *testing.T, tools ...string) *apptest.UpstreamServer {
	t.Helper()
	return apptest.Upstream(t, tools...)
}

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

// mcpConnect opens an MCP client session on base/mcp with an API key.
func mcpConnect(t *testing.T, base, token string) *sdk.ClientSession {
	t.Helper()
	cl := sdk.NewClient(&sdk.Implementation{Name: "test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: bearerTransport{token, openapitest.NewTransport(t, nil)}}, MaxRetries: -1,
	}, nil)
	if err != nil {
		t.Fatalf("connect to /mcp: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}
