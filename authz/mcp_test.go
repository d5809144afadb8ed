package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestCreateMCPServerInputValidate(t *testing.T) {
	t.Parallel()
	valid := func() authz.CreateMCPServerInput {
		return authz.CreateMCPServerInput{Name: "github", URL: "https://mcp.example.com/mcp?x=1"}
	}
	many := map[string]string{}
	for i := range authz.MaxMCPHeaders + 1 {
		many[fmt.Sprintf("X-%d", i)] = "v"
	}
	big := map[string]string{}
	for i := range 3 {
		big[fmt.Sprintf("X-%d", i)] = strings.Repeat("v", authz.MaxMCPHeaderValueLen)
	}
	tests := []struct {
		note   string
		edit   func(*authz.CreateMCPServerInput)
		fields []string
	}{
		{"valid", func(*authz.CreateMCPServerInput) {}, nil},
		{"a slug with digits and hyphens", func(in *authz.CreateMCPServerInput) { in.Name = "gh-2" }, nil},
		{"32 characters", func(in *authz.CreateMCPServerInput) { in.Name = strings.Repeat("a", 32) }, nil},
		{"http and a port", func(in *authz.CreateMCPServerInput) { in.URL = "http://127.0.0.1:3001/mcp" }, nil},
		{"bounds of the timeout", func(in *authz.CreateMCPServerInput) { in.TimeoutMS = ptr(authz.MaxMCPTimeoutMS) }, nil},
		{"a credential header", func(in *authz.CreateMCPServerInput) {
			in.Headers = map[string]string{"Authorization": "Bearer x", "X-Tenant": "a\tb"}
		}, nil},
		{"empty name", func(in *authz.CreateMCPServerInput) { in.Name = "" }, []string{"name"}},
		{"33 characters", func(in *authz.CreateMCPServerInput) { in.Name = strings.Repeat("a", 33) }, []string{"name"}},
		{"upper case", func(in *authz.CreateMCPServerInput) { in.Name = "GitHub" }, []string{"name"}},
		{"an underscore would make exposed names ambiguous", func(in *authz.CreateMCPServerInput) { in.Name = "git_hub" }, []string{"name"}},
		{"empty url", func(in *authz.CreateMCPServerInput) { in.URL = "" }, []string{"url"}},
		{"no scheme", func(in *authz.CreateMCPServerInput) { in.URL = "mcp.example.com/mcp" }, []string{"url"}},
		{"ws scheme", func(in *authz.CreateMCPServerInput) { in.URL = "ws://mcp.example.com/mcp" }, []string{"url"}},
		{"no host", func(in *authz.CreateMCPServerInput) { in.URL = "https:///mcp" }, []string{"url"}},
		{"userinfo", func(in *authz.CreateMCPServerInput) { in.URL = "https://u:p@mcp.example.com/" }, []string{"url"}},
		{"fragment", func(in *authz.CreateMCPServerInput) { in.URL = "https://mcp.example.com/#f" }, []string{"url"}},
		{"a space", func(in *authz.CreateMCPServerInput) { in.URL = "https://mcp.example.com/a b" }, []string{"url"}},
		{"too long", func(in *authz.CreateMCPServerInput) {
			in.URL = "https://mcp.example.com/" + strings.Repeat("a", authz.MaxMCPURLLen)
		}, []string{"url"}},
		{"timeout below the floor", func(in *authz.CreateMCPServerInput) { in.TimeoutMS = ptr(authz.MinMCPTimeoutMS - 1) }, []string{"timeout_ms"}},
		{"timeout above the ceiling", func(in *authz.CreateMCPServerInput) { in.TimeoutMS = ptr(authz.MaxMCPTimeoutMS + 1) }, []string{"timeout_ms"}},
		{"header name with a space", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"X Y": "v"} }, []string{"headers"}},
		{"header name with a colon", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"X:Y": "v"} }, []string{"headers"}},
		{"header value with a newline", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"X-A": "v\nX-B: w"} }, []string{"headers.X-A"}},
		{"header value with NUL", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"X-A": "v\x00"} }, []string{"headers.X-A"}},
		{"transport header", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"Content-Type": "text/plain"} }, []string{"headers.Content-Type"}},
		{"session header", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"MCP-Protocol-Version": "1"} }, []string{"headers.MCP-Protocol-Version"}},
		{"same header twice", func(in *authz.CreateMCPServerInput) { in.Headers = map[string]string{"X-A": "1", "x-a": "2"} }, []string{"headers.x-a"}},
		{"too many headers", func(in *authz.CreateMCPServerInput) { in.Headers = many }, []string{"headers"}},
		{"too large in all", func(in *authz.CreateMCPServerInput) { in.Headers = big }, []string{"headers"}},
		{"every field at once", func(in *authz.CreateMCPServerInput) {
			*in = authz.CreateMCPServerInput{Name: "A", URL: "x", TimeoutMS: ptr(1)}
		}, []string{"name", "url", "timeout_ms"}},
	}
	for _, tc := range tests {
		in := valid()
		tc.edit(&in)
		err := in.Validate()
		var got []string
		for _, f := range authz.ErrorFields(err) {
			got = append(got, f.Field)
		}
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v (%v), want %v", tc.note, got, err, tc.fields)
		}
		if err != nil && (strings.Contains(err.Error(), "v\nX-B") || strings.Contains(fmt.Sprint(authz.ErrorFields(err)), "Bearer x")) {
			t.Errorf("%s: an error quotes a header value", tc.note)
		}
	}
}

func TestMCPServerUpdate(t *testing.T) {
	t.Parallel()
	base := func() *authz.MCPServer {
		return &authz.MCPServer{Name: "gh", URL: "https://a.example.com/", Headers: map[string]string{"X-A": "1"}, Enabled: true,
			TimeoutMS: 1000, UpdatedAt: fixedTime.Add(-time.Hour)}
	}
	off, ms, same := false, 2000, 1000
	tests := []struct {
		note string
		upd  authz.MCPServerUpdate
		want []string
	}{
		{"nothing", authz.MCPServerUpdate{}, nil},
		{"same values", authz.MCPServerUpdate{Name: ptr("gh"), TimeoutMS: &same, SetHeaders: true, Headers: map[string]string{"X-A": "1"}}, nil},
		{"every field", authz.MCPServerUpdate{Name: ptr("github"), URL: ptr("https://b.example.com/"), SetHeaders: true,
			Headers: map[string]string{"X-B": "2"}, Enabled: &off, TimeoutMS: &ms}, []string{"name", "url", "headers", "enabled", "timeout_ms"}},
		{"clearing the headers", authz.MCPServerUpdate{SetHeaders: true}, []string{"headers"}},
	}
	for _, tc := range tests {
		if err := tc.upd.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tc.note, err)
		}
		s := base()
		got := s.Apply(tc.upd, fixedTime)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: changed %v, want %v", tc.note, got, tc.want)
		}
		if moved := s.UpdatedAt.Equal(fixedTime); moved != (len(tc.want) > 0) {
			t.Errorf("%s: UpdatedAt moved = %v", tc.note, moved)
		}
	}
	bad := authz.MCPServerUpdate{Name: ptr("Bad"), URL: ptr("file:///etc/passwd"), SetHeaders: true, Headers: map[string]string{"Host": "x"}, TimeoutMS: ptr(0)}
	var fields []string
	for _, f := range authz.ErrorFields(bad.Validate()) {
		fields = append(fields, f.Field)
	}
	if !slices.Equal(fields, []string{"name", "url", "headers.Host", "timeout_ms"}) {
		t.Errorf("fields %v", fields)
	}
}

func TestMCPServerStateAndNames(t *testing.T) {
	t.Parallel()
	synced := fixedTime
	tests := []struct {
		note string
		srv  authz.MCPServer
		want bool
	}{
		{"never synced", authz.MCPServer{Enabled: true}, false},
		{"synced", authz.MCPServer{Enabled: true, LastSyncedAt: &synced}, true},
		{"its last sync failed", authz.MCPServer{Enabled: true, LastSyncedAt: &synced, SyncError: "refused"}, false},
		{"disabled", authz.MCPServer{LastSyncedAt: &synced}, false},
	}
	for _, tc := range tests {
		if got := tc.srv.Available(); got != tc.want {
			t.Errorf("%s: Available = %v", tc.note, got)
		}
	}
	if got := authz.ExposedToolName("github", "search_code"); got != "github__search_code" {
		t.Errorf("exposed name %q", got)
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":[1,2]}`, `{ "b": [1, 2], "a": 1 }`, true},
		{`{"a":1}`, `{"a":2}`, false},
		{``, `null`, true},
		{``, `{}`, false},
	} {
		if got := authz.SameJSON(json.RawMessage(tc.a), json.RawMessage(tc.b)); got != tc.want {
			t.Errorf("SameJSON(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
}

// memMCPStore is an authz.MCPStore in memory, enough for the service.
type memMCPStore struct {
	mu      sync.Mutex
	servers map[string]*authz.MCPServer
	tools   map[string][]*authz.MCPTool
	events  []authz.AuditEvent
	// beforeSave runs inside SaveMCPSync, to change the server under a sync.
	beforeSave func(*authz.MCPServer)
}

var _ authz.MCPStore = (*memMCPStore)(nil)

func newMemMCPStore() *memMCPStore {
	return &memMCPStore{servers: map[string]*authz.MCPServer{}, tools: map[string][]*authz.MCPTool{}}
}

func clone(s *authz.MCPServer) *authz.MCPServer {
	c := *s
	c.Headers = maps.Clone(s.Headers)
	return &c
}

func (m *memMCPStore) CreateMCPServer(_ context.Context, srv *authz.MCPServer, events ...authz.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.servers {
		if s.TenantID == srv.TenantID && s.Name == srv.Name {
			return authz.Errorf(authz.ECONFLICT, "taken")
		}
	}
	m.servers[srv.ID] = clone(srv)
	m.events = append(m.events, events...)
	return nil
}

func (m *memMCPStore) FindMCPServerByID(_ context.Context, tenantID, id string) (*authz.MCPServer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.servers[id]
	if s == nil || s.TenantID != tenantID {
		return nil, authz.Errorf(authz.ENOTFOUND, "MCP server not found")
	}
	return clone(s), nil
}

func (m *memMCPStore) FindMCPServers(_ context.Context, f authz.MCPServerFilter) (*authz.MCPServerPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	page := &authz.MCPServerPage{}
	for _, s := range m.servers {
		if s.TenantID == f.TenantID && (f.UserID == nil || s.UserID == *f.UserID) {
			page.Servers = append(page.Servers, clone(s))
		}
	}
	return page, nil
}

func (m *memMCPStore) UpdateMCPServer(_ context.Context, tenantID, id string, fn func(*authz.MCPServer) ([]string, []authz.AuditEvent, error)) (*authz.MCPServer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.servers[id]
	if s == nil || s.TenantID != tenantID {
		return nil, authz.Errorf(authz.ENOTFOUND, "MCP server not found")
	}
	c := clone(s)
	changed, events, err := fn(c)
	if err != nil {
		return nil, err
	}
	if len(changed) > 0 {
		m.servers[id] = clone(c)
		m.events = append(m.events, events...)
	}
	return c, nil
}

func (m *memMCPStore) DeleteMCPServer(_ context.Context, tenantID, id string, events ...authz.AuditEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.servers[id]; s == nil || s.TenantID != tenantID {
		return authz.Errorf(authz.ENOTFOUND, "MCP server not found")
	}
	delete(m.servers, id)
	delete(m.tools, id)
	m.events = append(m.events, events...)
	return nil
}

func (m *memMCPStore) SaveMCPSync(_ context.Context, tenantID, id string, fn func(*authz.MCPServer, []*authz.MCPTool) (*authz.MCPSync, error)) (*authz.MCPServer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.beforeSave != nil {
		m.beforeSave(m.servers[id])
	}
	s := m.servers[id]
	if s == nil || s.TenantID != tenantID {
		return nil, authz.Errorf(authz.ENOTFOUND, "MCP server not found")
	}
	c := clone(s)
	out, err := fn(c, slices.Clone(m.tools[id]))
	if err != nil || out == nil {
		return c, err
	}
	m.servers[id] = clone(c)
	if out.Tools != nil {
		m.tools[id] = out.Tools
	}
	m.events = append(m.events, out.Events...)
	return c, nil
}

func (m *memMCPStore) FindMCPTools(_ context.Context, f authz.MCPToolFilter) (*authz.MCPToolPage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	page := &authz.MCPToolPage{}
	for id, tools := range m.tools {
		s := m.servers[id]
		if s.TenantID != f.TenantID || f.ServerID != "" && f.ServerID != id || f.UserID != nil && s.UserID != *f.UserID {
			continue
		}
		page.Tools = append(page.Tools, tools...)
	}
	return page, nil
}

func (m *memMCPStore) FindMCPCatalog(context.Context, string) (*authz.MCPCatalog, error) {
	return nil, errors.New("not used")
}

func (m *memMCPStore) FindEnabledMCPServers(context.Context) ([]*authz.MCPServer, error) {
	return nil, errors.New("not used")
}

func (m *memMCPStore) allEvents() []authz.AuditEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// fakeUpstreams answers ListMCPTools with tools or err, and counts calls.
type fakeUpstreams struct {
	mu    sync.Mutex
	tools []*authz.MCPTool
	err   error
	calls int
}

func (f *fakeUpstreams) ListMCPTools(ctx context.Context, srv *authz.MCPServer) ([]*authz.MCPTool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("a sync must be bounded by the server's timeout")
	}
	return f.tools, f.err
}

func (f *fakeUpstreams) set(err error, tools ...*authz.MCPTool) {
	f.mu.Lock()
	f.tools, f.err = tools, err
	f.mu.Unlock()
}

type notified struct {
	mu      sync.Mutex
	tenants []string
}

func (n *notified) MCPCatalogChanged(_ context.Context, tenantID string) {
	n.mu.Lock()
	n.tenants = append(n.tenants, tenantID)
	n.mu.Unlock()
}

func upTool(name string) *authz.MCPTool {
	return &authz.MCPTool{Name: name, Description: "does " + name, InputSchema: json.RawMessage(`{"type":"object"}`)}
}

type mcpFixture struct {
	svc      *authz.MCPServerService
	store    *memMCPStore
	up       *fakeUpstreams
	notified *notified
}

func newMCPFixture(t *testing.T) *mcpFixture {
	t.Helper()
	f := &mcpFixture{store: newMemMCPStore(), up: &fakeUpstreams{}, notified: &notified{}}
	f.svc = &authz.MCPServerService{
		Store: f.store, Policy: newEngine(t, embeddedModules(t)), Upstreams: f.up, Notifier: f.notified,
		Now: func() time.Time { return fixedTime },
	}
	return f
}

func actorCtx(tenant, user string, roles ...string) context.Context {
	return authz.NewContextWithActor(context.Background(), &authz.Actor{TenantID: tenant, UserID: user, Roles: roles})
}

func TestMCPServerServiceCreateSyncs(t *testing.T) {
	t.Parallel()
	f := newMCPFixture(t)
	f.up.set(nil, upTool("search"), upTool("create_issue"))
	ctx := actorCtx("t1", "alice", authz.RoleAdmin)
	srv, err := f.svc.CreateServer(ctx, authz.CreateMCPServerInput{
		Name: "github", URL: "https://mcp.example.com/", Headers: map[string]string{"Authorization": "Bearer hdr-canary"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !srv.Enabled || srv.TimeoutMS != authz.DefaultMCPTimeoutMS || srv.UserID != "alice" || !srv.Available() || !authz.ValidID(srv.ID) {
		t.Fatalf("created %+v", srv)
	}
	page, _ := f.store.FindMCPTools(context.Background(), authz.MCPToolFilter{TenantID: "t1"})
	var names []string
	for _, tool := range page.Tools {
		names = append(names, tool.ExposedName)
	}
	if !slices.Equal(names, []string{"github__create_issue", "github__search"}) {
		t.Fatalf("catalog %v", names)
	}
	evs := f.store.allEvents()
	if len(evs) != 2 || evs[0].Action != authz.AuditMCPServerCreated || evs[1].Action != authz.AuditMCPServerSynced ||
		evs[1].ActorType != authz.ActorTypeUser || evs[1].ActorID != "alice" {
		t.Fatalf("events %+v", evs)
	}
	if strings.Contains(fmt.Sprintf("%+v", evs), "hdr-canary") {
		t.Fatal("an audit event holds a header value")
	}
	if len(f.notified.tenants) != 1 || f.notified.tenants[0] != "t1" {
		t.Fatalf("notified %v", f.notified.tenants)
	}

	f.up.set(errors.New("raw network error quoting https://mcp.example.com/?token=x"))
	disabled := false
	off, err := f.svc.CreateServer(ctx, authz.CreateMCPServerInput{Name: "off", URL: "https://off.example.com/", Enabled: &disabled})
	if err != nil || off.LastSyncedAt != nil {
		t.Fatalf("a disabled server is not synced: %+v %v", off, err)
	}
	down, err := f.svc.CreateServer(ctx, authz.CreateMCPServerInput{Name: "down", URL: "https://down.example.com/"})
	if err != nil {
		t.Fatalf("an unreachable upstream fails the create: %v", err)
	}
	if down.Available() || down.SyncError != "the upstream could not be reached" {
		t.Fatalf("created %+v: want the failure recorded in the service's own words", down)
	}
	if _, err := f.svc.CreateServer(ctx, authz.CreateMCPServerInput{Name: "github", URL: "https://x.example.com/"}); authz.ErrorCode(err) != authz.ECONFLICT {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, err := f.svc.CreateServer(context.Background(), authz.CreateMCPServerInput{Name: "x", URL: "https://x.example.com/"}); authz.ErrorCode(err) != authz.EUNAUTHORIZED {
		t.Fatalf("no actor: %v", err)
	}
}

func TestMCPServerServiceSyncReportsAndSkips(t *testing.T) {
	t.Parallel()
	f := newMCPFixture(t)
	f.up.set(nil, upTool("search"), upTool("old"))
	admin := actorCtx("t1", "root", authz.RoleAdmin)
	srv, err := f.svc.CreateServer(admin, authz.CreateMCPServerInput{Name: "github", URL: "https://mcp.example.com/"})
	if err != nil {
		t.Fatal(err)
	}

	changed := upTool("search")
	changed.Description = "searches better"
	bad := func(name, schema string) *authz.MCPTool {
		return &authz.MCPTool{Name: name, InputSchema: json.RawMessage(schema)}
	}
	f.up.set(nil, changed, upTool("new"), upTool("new"),
		bad("has space", `{"type":"object"}`), bad("star*", `{"type":"object"}`), bad(strings.Repeat("x", 129), `{"type":"object"}`),
		bad("arr", `{"type":"array"}`), bad("noschema", ``), nil)
	report, err := f.svc.SyncServer(admin, srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(report.Added, []string{"new"}) || !slices.Equal(report.Removed, []string{"old"}) || !slices.Equal(report.Changed, []string{"search"}) {
		t.Fatalf("added %v removed %v changed %v", report.Added, report.Removed, report.Changed)
	}
	if len(report.Tools) != 2 || len(report.Skipped) != 6 {
		t.Fatalf("tools %d, skipped %q", len(report.Tools), report.Skipped)
	}
	for _, want := range []string{"listed twice", "A-Z a-z 0-9", "1 to 128", `"type": "object"`} {
		if !strings.Contains(strings.Join(report.Skipped, "\n"), want) {
			t.Errorf("skipped %q does not say %q", report.Skipped, want)
		}
	}
	ev := f.store.allEvents()[len(f.store.allEvents())-1]
	if ev.Action != authz.AuditMCPServerSynced || ev.Details["skipped"] == nil {
		t.Fatalf("sync event %+v", ev)
	}

	t.Run("a quiet scheduled sync leaves no trail and rewrites nothing", func(t *testing.T) {
		before := len(f.store.allEvents())
		if _, err := f.svc.Resync(context.Background(), "t1", srv.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(f.store.allEvents()); n != before {
			t.Fatalf("%d new events for a sync that changed nothing", n-before)
		}
	})
	t.Run("a scheduled sync that finds the upstream down is recorded", func(t *testing.T) {
		f.up.set(authz.Errorf(authz.EUNAVAILABLE, "connection failed: refused"))
		report, err := f.svc.Resync(context.Background(), "t1", srv.ID)
		if authz.ErrorCode(err) != authz.EUNAVAILABLE || report == nil || report.Server.Available() {
			t.Fatalf("%v %+v", err, report)
		}
		if len(report.Tools) != 2 {
			t.Fatalf("the last catalog must be kept: %d tools", len(report.Tools))
		}
		ev := f.store.allEvents()[len(f.store.allEvents())-1]
		if ev.ActorType != authz.ActorTypeSystem || ev.Outcome != authz.OutcomeFailure || ev.Reason != "connection failed: refused" {
			t.Fatalf("event %+v", ev)
		}
		before := len(f.store.allEvents())
		_, _ = f.svc.Resync(context.Background(), "t1", srv.ID)
		if len(f.store.allEvents()) != before {
			t.Fatal("the same failure was recorded twice")
		}
	})
	t.Run("too many tools fail the sync", func(t *testing.T) {
		many := make([]*authz.MCPTool, authz.MaxMCPToolsPerServer+1)
		for i := range many {
			many[i] = upTool(fmt.Sprintf("t%d", i))
		}
		f.up.set(nil, many...)
		_, err := f.svc.SyncServer(admin, srv.ID)
		if authz.ErrorCode(err) != authz.EUNAVAILABLE || !strings.Contains(authz.ErrorMessage(err), "at most 1000") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("a sync overtaken by a change gives way", func(t *testing.T) {
		f.up.set(nil, upTool("search"))
		f.store.beforeSave = func(s *authz.MCPServer) {
			s.URL, s.UpdatedAt = "https://moved.example.com/", fixedTime.Add(time.Minute)
		}
		defer func() { f.store.beforeSave = nil }()
		if _, err := f.svc.SyncServer(admin, srv.ID); authz.ErrorCode(err) != authz.ECONFLICT {
			t.Fatalf("%v", err)
		}
	})
	t.Run("a disabled server is left alone", func(t *testing.T) {
		off := false
		if _, err := f.svc.UpdateServer(admin, srv.ID, authz.MCPServerUpdate{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		calls := f.up.calls
		if _, err := f.svc.SyncServer(admin, srv.ID); authz.ErrorCode(err) != authz.ECONFLICT {
			t.Fatalf("manual sync of a disabled server: %v", err)
		}
		if report, err := f.svc.Resync(context.Background(), "t1", srv.ID); report != nil || err != nil || f.up.calls != calls {
			t.Fatalf("scheduled sync of a disabled server: %+v %v", report, err)
		}
	})
}

func TestMCPServerServiceRights(t *testing.T) {
	t.Parallel()
	f := newMCPFixture(t)
	f.up.set(nil, upTool("search"))
	alice, bob, admin := actorCtx("t1", "alice"), actorCtx("t1", "bob"), actorCtx("t1", "root", authz.RoleAdmin)
	intruder := actorCtx("t2", "mallory", authz.RoleAdmin)
	// Upstreams are an admin's decision: a member registers none.
	if _, err := f.svc.CreateServer(alice, authz.CreateMCPServerInput{Name: "alices", URL: "https://a.example.com/"}); authz.ErrorCode(err) != authz.EFORBIDDEN {
		t.Fatalf("a member registers an upstream: %v", err)
	}
	srv, err := f.svc.CreateServer(admin, authz.CreateMCPServerInput{Name: "roots", URL: "https://a.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	verbs := []struct {
		note string
		do   func(ctx context.Context) error
	}{
		{"read", func(ctx context.Context) error { _, err := f.svc.Server(ctx, srv.ID); return err }},
		{"update", func(ctx context.Context) error {
			_, err := f.svc.UpdateServer(ctx, srv.ID, authz.MCPServerUpdate{Enabled: &off})
			return err
		}},
		{"sync", func(ctx context.Context) error { _, err := f.svc.SyncServer(ctx, srv.ID); return err }},
		{"list its tools", func(ctx context.Context) error {
			_, err := f.svc.ListTools(ctx, authz.MCPToolFilter{ServerID: srv.ID})
			return err
		}},
		{"delete", func(ctx context.Context) error { return f.svc.DeleteServer(ctx, srv.ID) }},
	}
	for _, v := range verbs {
		if code := authz.ErrorCode(v.do(bob)); code != authz.EFORBIDDEN {
			t.Errorf("another user may %s: %s", v.note, code)
		}
		if code := authz.ErrorCode(v.do(intruder)); code != authz.ENOTFOUND {
			t.Errorf("another tenant may %s: %s, want not found", v.note, code)
		}
	}
	for _, v := range verbs[:4] {
		if err := v.do(admin); err != nil && authz.ErrorCode(err) != authz.ECONFLICT {
			t.Errorf("the admin may not %s: %v", v.note, err)
		}
	}
	if page, err := f.svc.ListServers(bob, authz.MCPServerFilter{}); err != nil || len(page.Servers) != 0 {
		t.Errorf("bob lists %v, %v: want only his own (none)", page, err)
	}
	rootID := "root"
	if _, err := f.svc.ListServers(bob, authz.MCPServerFilter{UserID: &rootID}); authz.ErrorCode(err) != authz.EFORBIDDEN {
		t.Errorf("bob lists root's servers: %v", err)
	}
	if page, err := f.svc.ListTools(admin, authz.MCPToolFilter{}); err != nil || len(page.Tools) != 1 {
		t.Errorf("admin lists tools %v, %v", page, err)
	}
	if err := verbs[4].do(admin); err != nil {
		t.Errorf("the admin may not delete: %v", err)
	}
}

// countingDecider counts batch evaluations of an engine.
type countingDecider struct {
	authz.Policy
	mu      sync.Mutex
	batches int
}

func (c *countingDecider) DecideBatch(ctx context.Context, p *authz.Principal, checks []authz.Check, dc authz.DecisionContext) ([]authz.Decision, error) {
	c.mu.Lock()
	c.batches++
	c.mu.Unlock()
	return c.Policy.DecideBatch(ctx, p, checks, dc)
}

type eventLog struct {
	mu     sync.Mutex
	events []authz.AuditEvent
}

func (l *eventLog) Record(ev authz.AuditEvent) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func TestDecideListingIsOneQuietEvaluation(t *testing.T) {
	t.Parallel()
	decider := &countingDecider{Policy: newEngine(t, embeddedModules(t))}
	events := &eventLog{}
	svc := &authz.KeyService{Policy: decider, Events: events, Now: func() time.Time { return fixedTime }}
	p := testPrincipal()
	var checks []authz.Check
	for i := range 250 { // more than MaxBatchChecks
		checks = append(checks, authz.Check{
			Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: fmt.Sprintf("github__t%d", i)}, Action: authz.ActionMCPToolCall})
	}
	checks = append(checks, authz.Check{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: "jira__x"}, Action: authz.ActionMCPToolCall})
	res, err := svc.Decide(context.Background(), authz.DecisionRequest{Principal: p, Checks: checks, Listing: true})
	if err != nil {
		t.Fatal(err)
	}
	if decider.batches != 1 || len(res.Decisions) != 251 || !authz.ValidID(res.DecisionID) {
		t.Fatalf("%d evaluations, %d decisions", decider.batches, len(res.Decisions))
	}
	if !res.Decisions[0].Allow || res.Decisions[250].Allow {
		t.Fatalf("decisions %v … %v", res.Decisions[0], res.Decisions[250])
	}
	if len(events.events) != 0 {
		t.Fatalf("a listing recorded %d denials", len(events.events))
	}
	if res, err := svc.Decide(context.Background(), authz.DecisionRequest{Principal: p, Listing: true}); err != nil || len(res.Decisions) != 0 || decider.batches != 1 {
		t.Fatalf("an empty listing: %v %v (%d evaluations)", res, err, decider.batches)
	}
	if res, err := svc.Decide(context.Background(), authz.DecisionRequest{Checks: checks, Listing: true}); err != nil || res.Code != authz.KeyInvalid || res.Principal != nil || decider.batches != 1 {
		t.Fatalf("no principal and no key: %+v, %v", res, err)
	}
	bad := []authz.Check{{Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: ""}, Action: "call"}}
	if _, err := svc.Decide(context.Background(), authz.DecisionRequest{Principal: p, Checks: bad, Listing: true}); authz.ErrorCode(err) != authz.EINVALID {
		t.Fatalf("a bad check: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ note, in, want string }{
		{"no query", "https://mcp.example.com/mcp", "https://mcp.example.com/mcp"},
		{"one value", "https://mcp.example.com/mcp?apikey=s3cret", "https://mcp.example.com/mcp?apikey=REDACTED"},
		{"several, names kept", "https://h/p?a=1&b=two&flag", "https://h/p?a=REDACTED&b=REDACTED&flag=REDACTED"},
		{"unparsable query", "https://h/p?a=%zz", "https://h/p?REDACTED"},
	} {
		if got := authz.RedactURL(tc.in); got != tc.want {
			t.Errorf("%s: RedactURL(%q) = %q, want %q", tc.note, tc.in, got, tc.want)
		}
	}
	b, err := json.Marshal(&authz.MCPServer{URL: "https://h/p?token=s3cret"})
	if err != nil || strings.Contains(string(b), "s3cret") || !strings.Contains(string(b), `"url":"https://h/p?token=REDACTED"`) {
		t.Fatalf("server JSON %s, %v", b, err)
	}
}
