package mcp_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}

// recorder keeps audit events in memory.
type recorder struct {
	mu     sync.Mutex
	events []authz.AuditEvent
}

func (r *recorder) Record(ev authz.AuditEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// calls returns the events of tool calls, oldest first: mcp_tool.called,
// and authorization.denied for a call the policy refused.
func (r *recorder) calls() []authz.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []authz.AuditEvent
	for _, ev := range r.events {
		if ev.Action == authz.AuditMCPToolCalled ||
			ev.Action == authz.AuditAuthzDenied && ev.TargetType == string(authz.ResourceMCPTool) {
			out = append(out, ev)
		}
	}
	return out
}

// count returns how many events were recorded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// gateway is keygate as internal/app builds it, on a test database and
// clock, with only /mcp served on loopback and audit events kept in memory.
type gateway struct {
	t      *testing.T
	db     *storage.DB
	clock  *authztest.Clock
	keys   *authz.KeyService
	mcpSvc *authz.MCPServerService
	gw     *mcp.Gateway
	audit  *recorder
	logs   *authztest.SyncBuffer
	url    string // the /mcp endpoint
}

func newGateway(t *testing.T, db *storage.DB, opts ...func(*app.Config)) *gateway {
	t.Helper()
	clk := authztest.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	logs := &authztest.SyncBuffer{}
	audit := &recorder{}
	cfg := app.Defaults()
	cfg.DB, cfg.Migrate = db, false
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.JWTSecret = "gateway-test-secret-of-at-least-32-bytes"
	cfg.DecisionCacheSize = 0
	cfg.AuditRecorder = audit
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg.Version = "test"
	cfg.MCPAllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.EncryptionKey = storagetest.KeyringText
	for _, opt := range opts {
		opt(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Gateway.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Close(ctx)
		srv.Close()
	})
	return &gateway{t: t, db: db, clock: clk, keys: a.Keys, mcpSvc: a.MCP, gw: a.Gateway, audit: audit, logs: logs, url: srv.URL}
}

func newSQLiteGateway(t *testing.T, opts ...func(*app.Config)) *gateway {
	t.Helper()
	return newGateway(t, storagetest.MustOpenSQLite(t), opts...)
}

// as returns a context acting as a user of tenant.
func as(tenant, user string, roles ...string) context.Context {
	return authz.NewContextWithActor(context.Background(), &authz.Actor{TenantID: tenant, UserID: user, Roles: roles})
}

// key creates a key of tenant's admin scoped to tools and returns its id and
// token.
func (g *gateway) key(tenant, name string, tools ...string) (string, string) {
	g.t.Helper()
	if tools == nil {
		tools = []string{}
	}
	k, token, err := g.keys.CreateKey(as(tenant, "admin", authz.RoleAdmin), authz.CreateKeyInput{Name: name, Scope: authz.Scope{MCPToolIDs: tools}})
	if err != nil {
		g.t.Fatal(err)
	}
	return k.ID, token
}

// register adds an upstream to tenant and returns it as created (and
// synced).
func (g *gateway) register(tenant, name, url string, headers map[string]string, timeoutMS int) *authz.MCPServer {
	g.t.Helper()
	in := authz.CreateMCPServerInput{Name: name, URL: url, Headers: headers}
	if timeoutMS != 0 {
		in.TimeoutMS = &timeoutMS
	}
	srv, err := g.mcpSvc.CreateServer(as(tenant, "admin", authz.RoleAdmin), in)
	if err != nil {
		g.t.Fatalf("register %s: %v", name, err)
	}
	return srv
}

// bearer adds a fixed Authorization header to every request.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// client is an MCP client session on keygate's /mcp with a key.
type client struct {
	*sdk.ClientSession
	listChanged chan struct{}
}

// connect opens a session to url as token. MaxRetries is off so a refused
// key fails at once rather than after reconnect attempts.
func connect(t testing.TB, url, token string) *client {
	t.Helper()
	c, err := dial(url, token)
	if err != nil {
		t.Fatalf("connect to keygate: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dial(url, token string) (*client, error) {
	changed := make(chan struct{}, 16)
	cl := sdk.NewClient(&sdk.Implementation{Name: "test-client", Version: "1"}, &sdk.ClientOptions{
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	})
	transport := &sdk.StreamableClientTransport{
		Endpoint:   url,
		HTTPClient: &http.Client{Transport: &bearer{token: token, base: http.DefaultTransport}},
		MaxRetries: -1,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, transport, nil)
	if err != nil {
		return nil, err
	}
	return &client{ClientSession: cs, listChanged: changed}, nil
}

func (c *client) toolNames(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var names []string
	for tool, err := range c.Tools(ctx, nil) {
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		names = append(names, tool.Name)
	}
	return names
}

// waitTools waits until the client lists exactly want, checking again on
// each change notification.
func (c *client) waitTools(t testing.TB, want ...string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got := c.toolNames(t)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-c.listChanged:
		case <-deadline:
			t.Fatalf("tools %v, want %v", got, want)
		}
	}
}

func (c *client) call(name string, args any) (*sdk.CallToolResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
}

// upstream is an in-process go-sdk MCP server on loopback. It counts tool
// calls and remembers the Authorization headers it was sent.
type upstream struct {
	t      *testing.T
	server *sdk.Server
	http   *httptest.Server
	calls  atomic.Int64
	down   atomic.Bool // answer every request 503 while set
	mu     sync.Mutex
	auth   []string
	// release unblocks calls to "slow".
	release chan struct{}
}

type echoArgs struct {
	Text string `json:"text"`
}

type sumOut struct {
	Sum int `json:"sum"`
}

// newUpstream serves tools named in names; "echo", "sum", "fail" and
// "slow" behave as their names say, any other name echoes.
func newUpstream(t *testing.T, names ...string) *upstream {
	t.Helper()
	u := &upstream{t: t, release: make(chan struct{})}
	u.server = sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
	for _, name := range names {
		u.addTool(name)
	}
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return u.server }, nil)
	u.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		u.mu.Lock()
		u.auth = append(u.auth, r.Header.Get("Authorization"))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-u.release:
		default:
			close(u.release)
		}
		u.http.CloseClientConnections()
		u.http.Close()
	})
	return u
}

func (u *upstream) url() string { return u.http.URL }

func (u *upstream) addTool(name string) {
	switch name {
	case "sum":
		sdk.AddTool(u.server, &sdk.Tool{Name: name, Description: "adds a and b"},
			func(_ context.Context, _ *sdk.CallToolRequest, in struct{ A, B int }) (*sdk.CallToolResult, sumOut, error) {
				u.calls.Add(1)
				return nil, sumOut{Sum: in.A + in.B}, nil
			})
	case "fail":
		sdk.AddTool(u.server, &sdk.Tool{Name: name, Description: "always fails"},
			func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
				u.calls.Add(1)
				return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "it failed upstream"}}}, nil, nil
			})
	case "slow":
		sdk.AddTool(u.server, &sdk.Tool{Name: name, Description: "waits to be released"},
			func(ctx context.Context, _ *sdk.CallToolRequest, _ struct{}) (*sdk.CallToolResult, any, error) {
				u.calls.Add(1)
				select {
				case <-u.release:
				case <-ctx.Done():
				}
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "finally"}}}, nil, nil
			})
	default:
		sdk.AddTool(u.server, &sdk.Tool{Name: name, Description: "echoes text (" + name + ")"},
			func(_ context.Context, _ *sdk.CallToolRequest, in echoArgs) (*sdk.CallToolResult, any, error) {
				u.calls.Add(1)
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ": " + in.Text}}}, nil, nil
			})
	}
}

func (u *upstream) authHeaders() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auth...)
}

func textOf(t testing.TB, res *sdk.CallToolResult) string {
	t.Helper()
	if res == nil || len(res.Content) != 1 {
		t.Fatalf("result %+v: want one content block", res)
	}
	tc, ok := res.Content[0].(*sdk.TextContent)
	if !ok {
		t.Fatalf("content %T, want text", res.Content[0])
	}
	return tc.Text
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
