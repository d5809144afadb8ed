package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// keygate is the whole service in-process, wired as cmd/keygate wires it
// (key cache, audit writer, the gateway mounted on the router) and served on
// loopback, for tests and benchmarks that go through the real HTTP API.
type keygate struct {
	tb    testing.TB
	base  string
	admin string // a tenant admin's JWT for tenant "acme"
	gw    *mcp.Gateway
	db    *storage.DB
	audit *authz.AuditWriter
}

func newKeygate(tb testing.TB, logger *slog.Logger) *keygate {
	tb.Helper()
	ctx := context.Background()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db := storagetest.MustOpenSQLite(tb)
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		tb.Fatal(err)
	}
	engine, err := authz.NewEngine(ctx, modules, authz.EngineOptions{DecisionCacheSize: 10_000})
	if err != nil {
		tb.Fatal(err)
	}
	keyStore, auditStore := storage.NewKeyStore(db), storage.NewAuditStore(db)
	audit := authz.NewAuditWriter(auditStore, authz.AuditWriterOptions{Interval: 50 * time.Millisecond, Logger: logger})
	cache := authz.NewKeyCache(keyStore, authz.KeyCacheOptions{})
	keys := &authz.KeyService{Store: keyStore, AuditLog: auditStore, Policy: engine, Lookup: cache, Notifier: cache, Events: audit}
	svc := &authz.MCPServerService{Store: storage.NewMCPStore(db), Policy: engine}
	gw, err := mcp.New(mcp.Options{Keys: keys, Catalog: svc, Audit: audit, Logger: logger, Version: "test"})
	if err != nil {
		tb.Fatal(err)
	}
	svc.Upstreams, svc.Notifier = gw, gw
	jwtCfg := server.JWTConfig{Secret: []byte("interop-secret-of-at-least-32-bytes!")}
	verifier, err := server.NewJWTVerifier(ctx, jwtCfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Keys: keys, JWT: verifier, Logger: logger, MCP: svc,
		Mounts: map[string]http.Handler{"/mcp": gw.Handler()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	tb.Cleanup(func() {
		gw.EndSessions()
		ts.CloseClientConnections()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Close(ctx)
		_ = audit.Close(ctx)
	})
	admin, err := server.SignHS256(jwtCfg, "acme", "admin", []string{authz.RoleAdmin}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return &keygate{tb: tb, base: ts.URL, admin: admin, gw: gw, db: db, audit: audit}
}

// api calls the management API as the tenant admin and decodes the answer.
func (k *keygate) api(method, path string, body any, want int) map[string]any {
	k.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			k.tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, k.base+path, rd)
	if err != nil {
		k.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		k.tb.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		k.tb.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, raw)
	}
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			k.tb.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return m
}

// register adds an upstream through the API and returns the answer.
func (k *keygate) register(name, url string) map[string]any {
	k.tb.Helper()
	return k.api("POST", "/api/v1/mcp-servers", map[string]any{"name": name, "url": url}, http.StatusCreated)
}

// createKey creates a key through the API scoped to tools and returns its
// token.
func (k *keygate) createKey(name string, tools ...string) string {
	k.tb.Helper()
	m := k.api("POST", "/api/v1/api-keys", map[string]any{
		"name": name, "permission_scope": map[string]any{"mcp_tool_ids": tools},
	}, http.StatusCreated)
	return m["token"].(string)
}

func (k *keygate) mcpURL() string { return k.base + "/mcp" }
