package mcp_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/internal/apptest"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/storage"
)

// keygate is the whole service in-process as internal/app builds it for
// keygate serve, served on loopback, for tests and benchmarks that go
// through the real HTTP API.
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
	inst := apptest.Start(tb, func(cfg *app.Config) {
		if logger != nil {
			cfg.Logger = logger
		}
		cfg.FlushInterval = 50 * time.Millisecond
	})
	a := inst.App
	return &keygate{tb: tb, base: inst.URL, admin: inst.Token("acme", "admin", authz.RoleAdmin), gw: a.Gateway, db: a.DB, audit: a.Audit}
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
	res, err := openapitest.Client(k.tb).Do(req) // checked against the OpenAPI document
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
