// Package apptest runs keygate in-process on loopback, as internal/app
// builds it for `keygate serve`, for tests that talk to it over real HTTP
// (the Go client's, the management command line's). Tests only.
package apptest

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// Instance is a running keygate.
type Instance struct {
	URL string
	App *app.App
	tb  testing.TB
}

// Start serves keygate on SQLite in a temporary folder until the test
// ends. Upstream MCP servers on loopback are allowed.
func Start(tb testing.TB, opts ...func(*app.Config)) *Instance {
	tb.Helper()
	cfg := app.Defaults()
	cfg.DB, cfg.Migrate = storagetest.MustOpenSQLite(tb), false
	cfg.DataDir = tb.TempDir()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.JWTSecret = "apptest-secret-of-at-least-32-bytes!"
	cfg.FlushInterval = 20 * time.Millisecond // audit events are readable soon after
	cfg.Version = "test"
	cfg.MCPAllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.EncryptionKey = storagetest.KeyringText
	for _, opt := range opts {
		opt(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(a.Handler())
	tb.Cleanup(func() {
		a.Gateway.EndSessions()
		ts.CloseClientConnections()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Close(ctx)
	})
	return &Instance{URL: ts.URL, App: a, tb: tb}
}

// Token signs a management JWT valid for an hour.
func (i *Instance) Token(tenant, user string, roles ...string) string {
	i.tb.Helper()
	tok, err := server.SignHS256(i.App.JWT, tenant, user, roles, time.Hour)
	if err != nil {
		i.tb.Fatal(err)
	}
	return tok
}

// UpstreamServer is an MCP server on loopback.
type UpstreamServer struct {
	URL string
	// Auth holds the Authorization header of each request, the first 1,000.
	Auth chan string
	// Close stops it at once, connections and all; it may be called again.
	Close func()
}

// Upstream serves an MCP server on loopback whose tools echo their "text"
// argument, until Close or the end of the test.
func Upstream(tb testing.TB, tools ...string) *UpstreamServer {
	tb.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1"}, nil)
	for _, name := range tools {
		sdk.AddTool(s, &sdk.Tool{Name: name, Description: "echoes " + name},
			func(_ context.Context, _ *sdk.CallToolRequest, in struct {
				Text string `json:"text"`
			}) (*sdk.CallToolResult, any, error) {
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ": " + in.Text}}}, nil, nil
			})
	}
	u := &UpstreamServer{Auth: make(chan string, 1000)}
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case u.Auth <- r.Header.Get("Authorization"):
		default:
		}
		h.ServeHTTP(w, r)
	}))
	var once sync.Once
	u.URL, u.Close = ts.URL, func() {
		once.Do(func() {
			ts.CloseClientConnections()
			ts.Close()
		})
	}
	tb.Cleanup(u.Close)
	return u
}
