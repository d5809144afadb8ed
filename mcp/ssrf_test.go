package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestAddressAllowed(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		note  string
		ip    string
		allow []netip.Prefix
		want  bool
	}{
		{"public IPv4", "93.184.216.34", nil, true},
		{"public IPv6", "2606:4700::1111", nil, true},
		{"loopback", "127.0.0.1", nil, false},
		{"loopback elsewhere in 127/8", "127.1.2.3", nil, false},
		{"IPv6 loopback", "::1", nil, false},
		{"cloud metadata (link-local)", "169.254.169.254", nil, false},
		{"IPv6 link-local", "fe80::1", nil, false},
		{"private 10/8", "10.0.0.1", nil, false},
		{"private 172.16/12", "172.31.255.1", nil, false},
		{"private 192.168/16", "192.168.1.1", nil, false},
		{"unique local", "fd00::1", nil, false},
		{"CGNAT", "100.127.255.254", nil, false},
		{"multicast", "224.0.0.1", nil, false},
		{"IPv6 multicast", "ff02::1", nil, false},
		{"unspecified", "0.0.0.0", nil, false},
		{"IPv6 unspecified", "::", nil, false},
		{"this network", "0.1.2.3", nil, false},
		{"broadcast", "255.255.255.255", nil, false},
		{"IPv4-mapped loopback", "::ffff:127.0.0.1", nil, false},
		{"IPv4-mapped private", "::ffff:10.0.0.1", nil, false},
		{"IPv4-compatible loopback", "::127.0.0.1", nil, false},
		{"NAT64 of a private address", "64:ff9b::a00:1", nil, false},
		{"6to4 of a private address", "2002:a00:1::", nil, false},
		{"allowed loopback", "127.0.0.1", loopback, true},
		{"allowed loopback, mapped", "::ffff:127.0.0.1", loopback, true},
		{"allow-list does not open others", "10.0.0.1", loopback, false},
	} {
		if got := mcp.AddressAllowed(netip.MustParseAddr(tc.ip), tc.allow); got != tc.want {
			t.Errorf("%s: AddressAllowed(%s) = %v, want %v", tc.note, tc.ip, got, tc.want)
		}
	}
}

func TestParseNetworks(t *testing.T) {
	t.Parallel()
	got, err := mcp.ParseNetworks(" 127.0.0.0/8, ::ffff:10.0.0.0/104,192.168.1.7 ,")
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32")}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ParseNetworks = %v, %v; want %v", got, err, want)
	}
	if _, err := mcp.ParseNetworks("10.0.0.0/33"); err == nil || !strings.Contains(err.Error(), "KEYGATE_MCP_ALLOWED_NETWORKS") {
		t.Fatalf("a bad CIDR: %v", err)
	}
}

// TestSSRF_RegistrationAndDial: without KEYGATE_MCP_ALLOWED_NETWORKS an
// upstream at a loopback, link-local or private address is refused when it
// is registered, and a server that got past registration (a name that
// resolved elsewhere then, or a row written before) is refused at dial
// time: the upstream never sees a request.
func TestSSRF_RegistrationAndDial(t *testing.T) {
	t.Parallel()
	g := newGateway(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.MCPAllowedNetworks = nil })
	up := newUpstream(t, "search")
	var hits atomic.Int64
	inner := up.http.Config.Handler
	up.http.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); inner.ServeHTTP(w, r) })
	port := up.http.Listener.Addr().(*net.TCPAddr).Port
	admin := as("acme", "admin", authz.RoleAdmin)
	for _, u := range []string{
		up.url(),
		fmt.Sprintf("http://localhost:%d/", port),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/", port),
		"http://169.254.169.254/latest/meta-data/",
		"http://10.1.2.3/mcp",
		"http://[fd00::1]/mcp",
	} {
		_, err := g.mcpSvc.CreateServer(admin, authz.CreateMCPServerInput{Name: "evil", URL: u})
		fields := authz.ErrorFields(err)
		if authz.ErrorCode(err) != authz.EINVALID || len(fields) != 1 || fields[0].Field != "url" ||
			!strings.Contains(fields[0].Message, "KEYGATE_MCP_ALLOWED_NETWORKS") {
			t.Errorf("register %s: %v %+v; want 422 on url naming the setting", u, err, fields)
		}
	}

	// Past registration, the dial guard holds.
	now := g.clock.Now()
	srv := &authz.MCPServer{TenantID: "acme", UserID: "admin", Name: "sneaky", URL: up.url(), Enabled: true, TimeoutMS: 2000, CreatedAt: now, UpdatedAt: now}
	srv.ID, _ = authz.NewID(now, nil)
	if err := g.mcpSvc.Store.CreateMCPServer(context.Background(), srv); err != nil {
		t.Fatal(err)
	}
	_, err := g.mcpSvc.Resync(context.Background(), "acme", srv.ID)
	if authz.ErrorCode(err) != authz.EUNAVAILABLE {
		t.Fatalf("sync of a loopback upstream: %v", err)
	}
	got, _ := g.mcpSvc.Store.FindMCPServerByID(context.Background(), "acme", srv.ID)
	if got.SyncError != "unreachable: the address is not public (KEYGATE_MCP_ALLOWED_NETWORKS)" {
		t.Fatalf("sync_error %q", got.SyncError)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the upstream was sent %d requests", n)
	}
}

// TestUpstreamErrors_NotEchoed: a JSON-RPC error an upstream answers a
// call with goes back to the client by its code; its message and data do
// not, as an upstream may be an internal server and its words an oracle.
func TestUpstreamErrors_NotEchoed(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	s := sdk.NewServer(&sdk.Implementation{Name: "internal", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "query", InputSchema: json.RawMessage(`{"type":"object"}`)},
		func(context.Context, *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			return nil, &jsonrpc.Error{Code: -32001, Message: "db at 10.0.0.5:5432: password authentication failed", Data: json.RawMessage(`{"host":"10.0.0.5"}`)}
		})
	up := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(func() { up.CloseClientConnections(); up.Close() })
	g.register("acme", "internal", up.URL, nil, 0)
	_, token := g.key("acme", "bot", "*")
	c := connect(t, g.url, token)
	_, err := c.call("internal__query", map[string]any{})
	rpcErr := rpcError(t, err)
	want := `tool "internal__query": MCP server "internal" refused the call (JSON-RPC error -32001)`
	if rpcErr.Code != -32001 || rpcErr.Message != want || len(rpcErr.Data) != 0 {
		t.Fatalf("error %d %q %s; want -32001 %q and no data", rpcErr.Code, rpcErr.Message, rpcErr.Data, want)
	}
}

// TestUpstreamErrors_AreCategories: why an upstream could not be reached is
// told in a short category, never the raw error, and redirects are not
// followed (the upstream's headers would go to whatever host it names).
func TestUpstreamErrors_AreCategories(t *testing.T) {
	t.Parallel()
	g := newSQLiteGateway(t)
	up := newUpstream(t, "search")
	var redirected atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { redirected.Add(1) }))
	defer target.Close()
	serve := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return s.URL
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tlsSrv := httptest.NewTLSServer(up.http.Config.Handler)
	t.Cleanup(func() { tlsSrv.CloseClientConnections(); tlsSrv.Close() })
	for _, tc := range []struct{ note, url, want string }{
		{"connection refused", closedURL, "unreachable"},
		{"untrusted certificate", tlsSrv.URL, "tls"},
		{"forbidden", serve(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "Forbidden: internal detail", http.StatusForbidden)
		}), "http 403"},
		{"a web page", serve(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>internal admin console</html>"))
		}), "not an MCP server"},
		{"a redirect", serve(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target.URL, http.StatusFound) }), "http 302"},
	} {
		srv := g.register("acme", strings.ReplaceAll(strings.ReplaceAll(tc.note, " ", "-"), "a-", ""), tc.url, nil, 2000)
		if srv.SyncError != tc.want {
			t.Errorf("%s: sync_error %q, want %q", tc.note, srv.SyncError, tc.want)
		}
	}
	if n := redirected.Load(); n != 0 {
		t.Fatalf("a redirect was followed %d times", n)
	}
}
