package server_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/keygate/keygate/storage/storagetest"
)

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	for _, tc := range []struct {
		note, method, path, auth string
		body                     any
		noStore                  bool
	}{
		{"management answer", "GET", "/api/v1/api-keys", admin, nil, true},
		{"management error", "GET", "/api/v1/api-keys", "", nil, true},
		{"decision", "POST", "/v1/authorize", "", map[string]any{"api_key": "pk_x", "resource": map[string]any{"type": "flow", "id": "f"}, "action": "read"}, true},
		{"malformed decision", "POST", "/v1/authorize", "", "{", true},
		{"unknown endpoint", "GET", "/nope", "", nil, false},
		{"unknown management endpoint", "GET", "/api/v1/nope", admin, nil, true},
		{"health", "GET", "/healthz", "", nil, false},
		{"MCP without a key", "POST", "/mcp", "", "{}", false},
	} {
		res := h.do(tc.method, tc.path, tc.auth, tc.body)
		for name, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := res.header.Get(name); got != want {
				t.Errorf("%s (%d): %s = %q, want %q", tc.note, res.status, name, got, want)
			}
		}
		if got := res.header.Get("Cache-Control"); tc.noStore && got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tc.note, got)
		}
		if got := res.header.Get("Strict-Transport-Security"); got != "" {
			t.Errorf("%s: HSTS %q over plain HTTP", tc.note, got)
		}
	}
	req := httptest.NewRequest("GET", "/healthz", nil)
	req.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if got := rec.Header().Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Fatalf("HSTS over TLS: %q", got)
	}
}
