package storage_test

// Conformance tests of authz.MCPStore, on SQLite and Postgres alike.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// newMCPServer returns a valid, enabled server of tenant and user named
// name, created at t.
func newMCPServer(tb testing.TB, tenant, user, name string, t time.Time) *authz.MCPServer {
	tb.Helper()
	id, err := authz.NewID(t, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &authz.MCPServer{
		ID:        id,
		TenantID:  tenant,
		UserID:    user,
		Name:      name,
		URL:       "https://mcp.example.com/" + name + "/mcp",
		Headers:   map[string]string{"Authorization": "Bearer upstream-secret-" + name},
		Enabled:   true,
		TimeoutMS: authz.DefaultMCPTimeoutMS,
		CreatedAt: t,
		UpdatedAt: t,
	}
}

func mustCreateServer(tb testing.TB, ms *storage.MCPStore, srv *authz.MCPServer, events ...authz.AuditEvent) *authz.MCPServer {
	tb.Helper()
	if err := ms.CreateMCPServer(context.Background(), srv, events...); err != nil {
		tb.Fatalf("CreateMCPServer(%s): %v", srv.Name, err)
	}
	return srv
}

func serverEvent(action string, srv *authz.MCPServer, t time.Time) authz.AuditEvent {
	return authz.AuditEvent{
		OccurredAt: t, TenantID: srv.TenantID, ActorType: authz.ActorTypeUser, ActorID: srv.UserID,
		Action: action, TargetType: authz.TargetMCPServer, TargetID: srv.ID, Outcome: authz.OutcomeSuccess,
	}
}

func tool(name string) *authz.MCPTool {
	return &authz.MCPTool{
		Name:        name,
		Description: "does " + name,
		InputSchema: json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"}}}`),
	}
}

// mustSync records a successful sync at t that replaces srv's catalog with
// tools.
func mustSync(tb testing.TB, ms *storage.MCPStore, srv *authz.MCPServer, t time.Time, tools ...*authz.MCPTool) *authz.MCPServer {
	tb.Helper()
	saved, err := ms.SaveMCPSync(context.Background(), srv.TenantID, srv.ID, func(cur *authz.MCPServer, _ []*authz.MCPTool) (*authz.MCPSync, error) {
		cur.LastSyncedAt, cur.SyncError = &t, ""
		return &authz.MCPSync{Tools: tools}, nil
	})
	if err != nil {
		tb.Fatalf("SaveMCPSync(%s): %v", srv.Name, err)
	}
	return saved
}

func exposedNames(tools []*authz.MCPTool) []string {
	out := make([]string, len(tools))
	for i, t := range tools {
		out[i] = t.ExposedName
	}
	return out
}

func TestMCPServer_CreateAndFind(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ms, as := storage.NewMCPStore(db, storagetest.Keyring(t)), storage.NewAuditStore(db)
		existing := newMCPServer(t, "acme", "alice", "github", at(0))
		in := *existing
		mustCreateServer(t, ms, existing, serverEvent(authz.AuditMCPServerCreated, existing, at(0)))

		got, err := ms.FindMCPServerByID(ctx, "acme", existing.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, existing) {
			t.Fatalf("read back\n%+v\nwant\n%+v", got, existing)
		}
		if got.Headers["Authorization"] != in.Headers["Authorization"] || got.LastSyncedAt != nil || got.SyncError != "" {
			t.Fatalf("headers or sync fields did not survive: %+v", got)
		}
		if evs := allEvents(t, as, "acme"); len(evs) != 1 || evs[0].Action != authz.AuditMCPServerCreated {
			t.Fatalf("events %v, want the create event written with the server", actions(evs))
		}

		tests := []struct {
			note     string
			srv      func() *authz.MCPServer
			wantCode string
			wantMsg  string
		}{
			{
				note:     "the same name in the same tenant is taken",
				srv:      func() *authz.MCPServer { return newMCPServer(t, "acme", "bob", "github", at(time.Second)) },
				wantCode: authz.ECONFLICT,
				wantMsg:  `an MCP server named "github" already exists in this tenant`,
			},
			{
				note: "the same name in another tenant is fine",
				srv:  func() *authz.MCPServer { return newMCPServer(t, "globex", "alice", "github", at(2*time.Second)) },
			},
			{
				note: "no headers read back as an empty map",
				srv: func() *authz.MCPServer {
					s := newMCPServer(t, "acme", "alice", "slack", at(3*time.Second))
					s.Headers = nil
					return s
				},
			},
			{
				note: "an id is unique",
				srv: func() *authz.MCPServer {
					s := newMCPServer(t, "acme", "alice", "other", at(4*time.Second))
					s.ID = existing.ID
					return s
				},
				wantCode: authz.ECONFLICT,
			},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				srv := tt.srv()
				err := ms.CreateMCPServer(ctx, srv, serverEvent(authz.AuditMCPServerCreated, srv, srv.CreatedAt))
				wantCode(t, err, tt.wantCode)
				if tt.wantMsg != "" && authz.ErrorMessage(err) != tt.wantMsg {
					t.Errorf("message = %q, want %q", authz.ErrorMessage(err), tt.wantMsg)
				}
				if err != nil {
					if strings.Contains(err.Error(), "upstream-secret") {
						t.Errorf("error %q reveals a header", err)
					}
					return
				}
				got, err := ms.FindMCPServerByID(ctx, srv.TenantID, srv.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Headers == nil || !reflect.DeepEqual(got, srv) {
					t.Fatalf("read back %+v, want %+v", got, srv)
				}
			})
		}

		unknown, _ := authz.NewID(at(0), nil)
		for _, tt := range []struct{ note, tenant, id string }{
			{"another tenant's server is not found", "globex", existing.ID},
			{"an unknown id", "acme", unknown},
			{"an id that is no uuid", "acme", "1; DROP TABLE mcp_servers"},
		} {
			t.Run(tt.note, func(t *testing.T) {
				_, err := ms.FindMCPServerByID(ctx, tt.tenant, tt.id)
				wantCode(t, err, authz.ENOTFOUND)
			})
		}
	})
}

func TestMCPServer_FindPaged(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ms := storage.NewMCPStore(db, storagetest.Keyring(t))
		var want []string
		for i := range 7 {
			user := []string{"alice", "bob"}[i%2]
			srv := mustCreateServer(t, ms, newMCPServer(t, "acme", user, fmt.Sprintf("s%d", i), at(time.Duration(i)*time.Second)))
			want = append(want, srv.ID)
			mustCreateServer(t, ms, newMCPServer(t, "globex", user, fmt.Sprintf("s%d", i), at(time.Duration(i)*time.Second)))
		}
		slices.Reverse(want)
		bob := "bob"
		tests := []struct {
			note   string
			filter authz.MCPServerFilter
			want   []string
		}{
			{"every server of the tenant, newest first", authz.MCPServerFilter{TenantID: "acme", Limit: 3}, want},
			{"one user's servers", authz.MCPServerFilter{TenantID: "acme", UserID: &bob, Limit: 2}, []string{want[1], want[3], want[5]}},
			{"an unknown tenant has none", authz.MCPServerFilter{TenantID: "initech"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				var got []string
				f := tt.filter
				for {
					page, err := ms.FindMCPServers(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					for _, s := range page.Servers {
						got = append(got, s.ID)
					}
					if page.NextCursor == "" {
						break
					}
					f.Cursor = page.NextCursor
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("ids %v, want %v", got, tt.want)
				}
			})
		}
		t.Run("a key cursor is refused", func(t *testing.T) {
			ks := storage.NewKeyStore(db)
			for i := range 3 {
				mustCreate(t, ks, newKey(t, "acme", "alice", fmt.Sprintf("k%d", i), at(time.Duration(i)*time.Second)))
			}
			page, err := ks.FindKeys(ctx, authz.APIKeyFilter{TenantID: "acme", Limit: 1})
			if err != nil || page.NextCursor == "" {
				t.Fatalf("FindKeys: %v %+v", err, page)
			}
			_, err = ms.FindMCPServers(ctx, authz.MCPServerFilter{TenantID: "acme", Cursor: page.NextCursor})
			wantCode(t, err, authz.EINVALID)
		})
	})
}

func TestMCPServer_UpdateAndDelete(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ms, as := storage.NewMCPStore(db, storagetest.Keyring(t)), storage.NewAuditStore(db)
		srv := mustCreateServer(t, ms, newMCPServer(t, "acme", "alice", "github", at(0)))
		other := mustCreateServer(t, ms, newMCPServer(t, "acme", "alice", "slack", at(time.Second)))
		mustSync(t, ms, srv, at(time.Minute), tool("search"), tool("create_issue"))

		t.Run("fields change together with their event", func(t *testing.T) {
			got, err := ms.UpdateMCPServer(ctx, "acme", srv.ID, func(s *authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				s.URL, s.Headers, s.Enabled, s.TimeoutMS, s.UpdatedAt = "https://new.example.com/mcp", map[string]string{"X-Token": "t2"}, false, 500, at(time.Hour)
				s.ID, s.TenantID = "ignored", "ignored" // the row's identity is the one loaded
				return []string{"url"}, []authz.AuditEvent{serverEvent(authz.AuditMCPServerUpdated, srv, at(time.Hour))}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			read, err := ms.FindMCPServerByID(ctx, "acme", srv.ID)
			if err != nil {
				t.Fatal(err)
			}
			if read.URL != "https://new.example.com/mcp" || read.Headers["X-Token"] != "t2" || len(read.Headers) != 1 ||
				read.Enabled || read.TimeoutMS != 500 || !read.UpdatedAt.Equal(at(time.Hour)) || got.URL != read.URL {
				t.Fatalf("after update: %+v", read)
			}
			if read.LastSyncedAt == nil || !read.LastSyncedAt.Equal(at(time.Minute)) {
				t.Fatalf("an update must not touch the sync fields: %+v", read)
			}
		})
		t.Run("nothing changed writes nothing", func(t *testing.T) {
			before := len(allEvents(t, as, "acme"))
			_, err := ms.UpdateMCPServer(ctx, "acme", srv.ID, func(s *authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				s.Name = "renamed-but-not-reported"
				return nil, []authz.AuditEvent{serverEvent(authz.AuditMCPServerUpdated, srv, at(time.Hour))}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			read, _ := ms.FindMCPServerByID(ctx, "acme", srv.ID)
			if read.Name != "github" || len(allEvents(t, as, "acme")) != before {
				t.Fatalf("an update without changed fields wrote something")
			}
		})
		t.Run("a rename to a taken name is a conflict and rolls back", func(t *testing.T) {
			_, err := ms.UpdateMCPServer(ctx, "acme", srv.ID, func(s *authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				s.Name = other.Name
				return []string{"name"}, []authz.AuditEvent{serverEvent(authz.AuditMCPServerUpdated, srv, at(2*time.Hour))}, nil
			})
			wantCode(t, err, authz.ECONFLICT)
			for _, ev := range allEvents(t, as, "acme") {
				if ev.OccurredAt.Equal(at(2 * time.Hour)) {
					t.Fatal("the event of a failed update was written")
				}
			}
		})
		t.Run("fn's error rolls back", func(t *testing.T) {
			boom := errors.New("boom")
			_, err := ms.UpdateMCPServer(ctx, "acme", srv.ID, func(s *authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				return nil, nil, boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want fn's error", err)
			}
		})
		t.Run("another tenant cannot update", func(t *testing.T) {
			_, err := ms.UpdateMCPServer(ctx, "globex", srv.ID, func(*authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				t.Fatal("fn ran for another tenant's server")
				return nil, nil, nil
			})
			wantCode(t, err, authz.ENOTFOUND)
		})
		t.Run("a rename renames every exposed tool", func(t *testing.T) {
			_, err := ms.UpdateMCPServer(ctx, "acme", srv.ID, func(s *authz.MCPServer) ([]string, []authz.AuditEvent, error) {
				s.Name = "gh"
				return []string{"name"}, nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			page, err := ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			if got := exposedNames(page.Tools); !slices.Equal(got, []string{"gh__create_issue", "gh__search"}) {
				t.Fatalf("exposed names %v", got)
			}
		})
		t.Run("delete takes the catalog with it", func(t *testing.T) {
			wantCode(t, ms.DeleteMCPServer(ctx, "globex", srv.ID), authz.ENOTFOUND)
			if err := ms.DeleteMCPServer(ctx, "acme", srv.ID, serverEvent(authz.AuditMCPServerDeleted, srv, at(3*time.Hour))); err != nil {
				t.Fatal(err)
			}
			_, err := ms.FindMCPServerByID(ctx, "acme", srv.ID)
			wantCode(t, err, authz.ENOTFOUND)
			wantCode(t, ms.DeleteMCPServer(ctx, "acme", srv.ID), authz.ENOTFOUND)
			var n int
			if err := db.Bun().NewRaw("SELECT count(*) FROM mcp_tools WHERE server_id = ?", srv.ID).Scan(ctx, &n); err != nil || n != 0 {
				t.Fatalf("%d tools left after delete (%v)", n, err)
			}
			if evs := allEvents(t, as, "acme"); evs[0].Action != authz.AuditMCPServerDeleted {
				t.Fatalf("newest event %q, want the delete", evs[0].Action)
			}
		})
	})
}

func TestMCPSync_ReplacesTheCatalogAtomically(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ms, as := storage.NewMCPStore(db, storagetest.Keyring(t)), storage.NewAuditStore(db)
		srv := mustCreateServer(t, ms, newMCPServer(t, "acme", "alice", "github", at(0)))

		search := tool("search")
		search.Title = "Search"
		search.OutputSchema = json.RawMessage(`{"type":"object"}`)
		search.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
		saved := mustSync(t, ms, srv, at(time.Minute), search, tool("create_issue"))
		if saved.LastSyncedAt == nil || !saved.LastSyncedAt.Equal(at(time.Minute)) || !saved.Available() {
			t.Fatalf("saved server %+v", saved)
		}
		page, err := ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme", ServerID: srv.ID})
		if err != nil {
			t.Fatal(err)
		}
		if got := exposedNames(page.Tools); !slices.Equal(got, []string{"github__create_issue", "github__search"}) {
			t.Fatalf("catalog %v", got)
		}
		got := page.Tools[1]
		if got.Title != "Search" || !authz.SameJSON(got.InputSchema, search.InputSchema) || !authz.SameJSON(got.OutputSchema, search.OutputSchema) ||
			!authz.SameJSON(got.Annotations, search.Annotations) || got.ServerName != "github" || got.TenantID != "acme" || !got.Available {
			t.Fatalf("tool read back %+v", got)
		}
		if page.Tools[0].OutputSchema != nil || page.Tools[0].Annotations != nil {
			t.Fatalf("absent schemas must read back absent: %+v", page.Tools[0])
		}

		t.Run("fn sees the current catalog and a failing fn keeps it", func(t *testing.T) {
			boom := errors.New("boom")
			_, err := ms.SaveMCPSync(ctx, "acme", srv.ID, func(cur *authz.MCPServer, tools []*authz.MCPTool) (*authz.MCPSync, error) {
				if len(tools) != 2 || tools[0].Name != "create_issue" {
					t.Errorf("fn saw %v", exposedNames(tools))
				}
				cur.SyncError = "half done"
				return nil, boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v", err)
			}
			read, _ := ms.FindMCPServerByID(ctx, "acme", srv.ID)
			if read.SyncError != "" {
				t.Fatal("a failed sync was saved")
			}
		})
		t.Run("a failed fetch keeps the catalog and hides it", func(t *testing.T) {
			saved, err := ms.SaveMCPSync(ctx, "acme", srv.ID, func(cur *authz.MCPServer, _ []*authz.MCPTool) (*authz.MCPSync, error) {
				ts := at(2 * time.Minute)
				cur.LastSyncedAt, cur.SyncError = &ts, "connection refused"
				return &authz.MCPSync{Events: []authz.AuditEvent{serverEvent(authz.AuditMCPServerSynced, srv, ts)}}, nil
			})
			if err != nil || saved.Available() || saved.SyncError != "connection refused" {
				t.Fatalf("saved %+v, %v", saved, err)
			}
			page, _ := ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme"})
			if len(page.Tools) != 2 || page.Tools[0].Available {
				t.Fatalf("tools %+v: want both kept, unavailable", page.Tools)
			}
			cat, err := ms.FindMCPCatalog(ctx, "acme")
			if err != nil || len(cat.Tools) != 2 || len(cat.Servers) != 1 || cat.Servers[0].Available() {
				t.Fatalf("catalog %+v, %v: an enabled but failing server stays in it, unavailable", cat, err)
			}
			if evs := allEvents(t, as, "acme"); evs[0].Action != authz.AuditMCPServerSynced {
				t.Fatalf("newest event %q, want the sync", evs[0].Action)
			}
		})
		t.Run("a nil sync saves nothing", func(t *testing.T) {
			_, err := ms.SaveMCPSync(ctx, "acme", srv.ID, func(cur *authz.MCPServer, _ []*authz.MCPTool) (*authz.MCPSync, error) {
				cur.SyncError = "never saved"
				return nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			read, _ := ms.FindMCPServerByID(ctx, "acme", srv.ID)
			if read.SyncError == "never saved" {
				t.Fatal("a nil sync was saved")
			}
		})
		t.Run("a new catalog replaces the old one whole", func(t *testing.T) {
			mustSync(t, ms, srv, at(3*time.Minute), tool("list_prs"))
			page, _ := ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme"})
			if got := exposedNames(page.Tools); !slices.Equal(got, []string{"github__list_prs"}) || !page.Tools[0].Available {
				t.Fatalf("catalog %v", got)
			}
			mustSync(t, ms, srv, at(4*time.Minute), []*authz.MCPTool{}...)
			page, _ = ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme"})
			if len(page.Tools) != 0 {
				t.Fatalf("an empty catalog left %v", exposedNames(page.Tools))
			}
		})
		t.Run("a thousand tools fit one sync", func(t *testing.T) {
			many := make([]*authz.MCPTool, authz.MaxMCPToolsPerServer)
			for i := range many {
				many[i] = tool(fmt.Sprintf("t%04d", i))
			}
			mustSync(t, ms, srv, at(5*time.Minute), many...)
			cat, err := ms.FindMCPCatalog(ctx, "acme")
			if err != nil || len(cat.Tools) != authz.MaxMCPToolsPerServer {
				t.Fatalf("catalog has %d tools (%v)", len(cat.Tools), err)
			}
		})
		t.Run("another tenant's server cannot be synced", func(t *testing.T) {
			_, err := ms.SaveMCPSync(ctx, "globex", srv.ID, func(*authz.MCPServer, []*authz.MCPTool) (*authz.MCPSync, error) {
				t.Fatal("fn ran for another tenant's server")
				return nil, nil
			})
			wantCode(t, err, authz.ENOTFOUND)
		})
	})
}

func TestMCPTools_ListingAndCatalog(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ms := storage.NewMCPStore(db, storagetest.Keyring(t))
		// "a-b" sorts before "a" in exposed names ("a-b__…" < "a__…"), not in
		// server names: the listing follows the exposed name, bytewise.
		a := mustCreateServer(t, ms, newMCPServer(t, "acme", "alice", "a", at(0)))
		ab := mustCreateServer(t, ms, newMCPServer(t, "acme", "bob", "a-b", at(time.Second)))
		off := newMCPServer(t, "acme", "alice", "off", at(2*time.Second))
		off.Enabled = false
		mustCreateServer(t, ms, off)
		theirs := mustCreateServer(t, ms, newMCPServer(t, "globex", "alice", "a", at(0)))
		mustSync(t, ms, a, at(time.Minute), tool("x"), tool("Y"), tool("z.1"))
		mustSync(t, ms, ab, at(time.Minute), tool("x"))
		mustSync(t, ms, off, at(time.Minute), tool("x"))
		mustSync(t, ms, theirs, at(time.Minute), tool("secret"))

		all := []string{"a-b__x", "a__Y", "a__x", "a__z.1", "off__x"}
		bob := "bob"
		tests := []struct {
			note   string
			filter authz.MCPToolFilter
			want   []string
		}{
			{"the tenant's catalog in exposed-name order, two a page", authz.MCPToolFilter{TenantID: "acme", Limit: 2}, all},
			{"one page holds all", authz.MCPToolFilter{TenantID: "acme"}, all},
			{"one server's tools", authz.MCPToolFilter{TenantID: "acme", ServerID: a.ID, Limit: 1}, []string{"a__Y", "a__x", "a__z.1"}},
			{"another tenant's server yields nothing", authz.MCPToolFilter{TenantID: "acme", ServerID: theirs.ID}, nil},
			{"a malformed server id yields nothing", authz.MCPToolFilter{TenantID: "acme", ServerID: "nope"}, nil},
			{"the tools of one user's servers", authz.MCPToolFilter{TenantID: "acme", UserID: &bob}, []string{"a-b__x"}},
		}
		for _, tt := range tests {
			t.Run(tt.note, func(t *testing.T) {
				var got []string
				f := tt.filter
				for {
					page, err := ms.FindMCPTools(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, exposedNames(page.Tools)...)
					if page.NextCursor == "" {
						break
					}
					f.Cursor = page.NextCursor
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("tools %v, want %v", got, tt.want)
				}
			})
		}
		t.Run("a cursor of another listing is refused", func(t *testing.T) {
			for _, c := range []string{"garbage", "AQID", strings.Repeat("A", 400)} {
				_, err := ms.FindMCPTools(ctx, authz.MCPToolFilter{TenantID: "acme", Cursor: c})
				wantCode(t, err, authz.EINVALID)
			}
		})
		t.Run("the gateway's catalog has enabled servers only, headers included", func(t *testing.T) {
			cat, err := ms.FindMCPCatalog(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range cat.Servers {
				names = append(names, s.Name)
				if s.Headers["Authorization"] == "" {
					t.Errorf("server %s lost its headers", s.Name)
				}
			}
			if !slices.Equal(names, []string{"a", "a-b"}) {
				t.Fatalf("servers %v", names)
			}
			if got := exposedNames(cat.Tools); !slices.Equal(got, []string{"a-b__x", "a__Y", "a__x", "a__z.1"}) {
				t.Fatalf("tools %v", got)
			}
		})
		t.Run("the scheduler sees every tenant's enabled servers", func(t *testing.T) {
			servers, err := ms.FindEnabledMCPServers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range servers {
				ids = append(ids, s.ID)
			}
			slices.Sort(ids)
			want := []string{a.ID, ab.ID, theirs.ID}
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Fatalf("servers %v, want %v", ids, want)
			}
		})
		t.Run("offboarding a tenant takes its servers and tools", func(t *testing.T) {
			if _, err := storage.NewKeyStore(db).DeleteTenant(ctx, "globex"); err != nil {
				t.Fatal(err)
			}
			_, err := ms.FindMCPServerByID(ctx, "globex", theirs.ID)
			wantCode(t, err, authz.ENOTFOUND)
			var n int
			if err := db.Bun().NewRaw("SELECT count(*) FROM mcp_tools WHERE tenant_id = ?", "globex").Scan(ctx, &n); err != nil || n != 0 {
				t.Fatalf("%d tools left (%v)", n, err)
			}
		})
		t.Run("offboarding a user keeps the servers they registered", func(t *testing.T) {
			if _, err := storage.NewKeyStore(db).DeleteUser(ctx, "acme", "bob"); err != nil {
				t.Fatal(err)
			}
			if _, err := ms.FindMCPServerByID(ctx, "acme", ab.ID); err != nil {
				t.Fatalf("bob's server went with him: %v", err)
			}
		})
	})
}
