package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
)

func authorizeBody(token string) map[string]any {
	return map[string]any{"api_key": token, "resource": map[string]any{"type": "flow", "id": "f1"}, "action": "execute"}
}

func wantRateLimited(t *testing.T, note string, res response) {
	t.Helper()
	wantProblem(t, note, res, http.StatusTooManyRequests, "rate_limited", "")
	if res.header.Get("Retry-After") == "" {
		t.Fatalf("%s: no Retry-After", note)
	}
}

// TestDecisionsOverBudget: after the burst of failed authentications an
// address gets 429 on /v1/authorize and /v1/whoami, for any key the cache
// does not hold as live; a live key keeps working from it, and another
// address is not affected.
func TestDecisionsOverBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.AuthFailureBurst = 5 })
	jwt := h.jwt("t1", "alice", "admin")
	_, live := h.createKey(jwt, "live", flowScope)
	_, unused := h.createKey(jwt, "unused", flowScope)
	if got := h.authorize(live, "flow", "f1", "execute"); got["code"] != "ALLOWED" {
		t.Fatalf("live key: %v", got)
	}
	for i := range 5 {
		random, _ := authz.NewToken(nil)
		if got := h.authorize(random, "flow", "f1", "execute"); got["code"] != "KEY_INVALID" {
			t.Fatalf("bad key %d: %v", i, got)
		}
	}
	random, _ := authz.NewToken(nil)
	wantRateLimited(t, "over budget", h.do("POST", "/v1/authorize", "", authorizeBody(random)))
	wantRateLimited(t, "a malformed key over budget", h.do("POST", "/v1/authorize", "", authorizeBody("pk_nope")))
	wantRateLimited(t, "a valid key not in the cache", h.do("POST", "/v1/authorize", "", authorizeBody(unused)))
	wantRateLimited(t, "whoami", h.do("GET", "/v1/whoami", random, nil))
	// X-Forwarded-For is not believed from a peer that is not a trusted proxy.
	wantRateLimited(t, "spoofed address", h.do("POST", "/v1/authorize", "", authorizeBody(random), "X-Forwarded-For", "198.51.100.9"))
	if got := h.authorize(live, "flow", "f1", "execute"); got["code"] != "ALLOWED" {
		t.Fatalf("a live key from an address over budget: %v", got)
	}
	wantStatus(t, "whoami with a live key", h.do("GET", "/v1/whoami", live, nil), http.StatusOK)
	req := httptest.NewRequest("POST", "/v1/authorize", strings.NewReader(mustMarshal(t, authorizeBody(random))))
	req.RemoteAddr = "203.0.113.50:4000"
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("another address: %d %s", rec.Code, rec.Body)
	}
	if n := h.app.AuthLimiter.Refused(); n != 5 {
		t.Fatalf("%d refusals counted, want 5", n)
	}
}

// TestTrustedProxiesDecideTheAddress: behind a trusted proxy the client's
// address is the one X-Forwarded-For names, so clients behind it have
// budgets of their own.
func TestTrustedProxiesDecideTheAddress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) {
		c.AuthFailureBurst, c.TrustedProxies = 2, []string{"192.0.2.1"}
	})
	from := func(addr string) response {
		random, _ := authz.NewToken(nil)
		return h.do("POST", "/v1/authorize", "", authorizeBody(random), "X-Forwarded-For", addr)
	}
	for range 2 {
		wantStatus(t, "client A", from("198.51.100.1"), http.StatusOK)
	}
	wantRateLimited(t, "client A over budget", from("198.51.100.1"))
	wantStatus(t, "client B behind the same proxy", from("198.51.100.2"), http.StatusOK)
}

// TestManagementJWTOverBudget: bad management tokens are charged to the
// address like bad keys; over budget they get 429, while a JWT that
// verifies is served.
func TestManagementJWTOverBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.AuthFailureBurst = 4 })
	good := h.jwt("t1", "alice", "admin")
	forged := good[:len(good)-4] + "AAAA"
	for i, bad := range []string{forged, "not.a.jwt", "pk_looks_like_a_key", forged} {
		wantProblem(t, fmt.Sprintf("bad token %d", i), h.do("GET", "/api/v1/api-keys", bad, nil), http.StatusUnauthorized, "unauthorized", "")
	}
	wantRateLimited(t, "over budget", h.do("GET", "/api/v1/api-keys", forged, nil))
	wantStatus(t, "a good JWT", h.do("GET", "/api/v1/api-keys", good, nil), http.StatusOK)
	if strings.Count(h.logs.String(), "too many failed authentications") != 1 {
		t.Fatalf("want one log line about the address: %s", h.logs.String())
	}
}

// TestRequireAPIKeyInAnotherRouter: the middleware mounted in another
// service's gin router budgets by the client's address too.
func TestRequireAPIKeyInAnotherRouter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.AuthFailureBurst = 2 })
	r := gin.New()
	r.GET("/stores/:id", server.RequireAPIKey(h.svc), func(c *gin.Context) { c.Status(http.StatusNoContent) })
	get := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/stores/s1", nil)
		req.Header.Set("X-API-Key", token)
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec
	}
	for range 2 {
		if rec := get("pk_nope"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("bad key: %d", rec.Code)
		}
	}
	rec := get("pk_nope")
	var p server.Problem
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" || json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Code != "rate_limited" {
		t.Fatalf("over budget: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

// TestTenantlessAuditEvents: the refusals of credentials that matched no
// key belong to no tenant; a platform_admin reads them with tenantless=true,
// nobody else does.
func TestTenantlessAuditEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "alice", "admin")
	platform := h.jwt("ops", "pat", "platform_admin")
	_, token := h.createKey(admin, "k", flowScope)
	h.authorize("pk_nope", "flow", "f1", "execute")
	h.authorize(token, "flow", "nope", "execute")
	h.flushAudit()

	res := h.do("GET", "/api/v1/audit-events?tenantless=true", platform, nil)
	wantStatus(t, "platform admin", res, http.StatusOK)
	data := res.json(t)["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("%d tenant-less events, want the one refusal: %v", len(data), data)
	}
	ev := data[0].(map[string]any)
	if ev["tenant_id"] != "" || ev["action"] != authz.AuditAuthFailed || ev["reason"] != "malformed token" || ev["details"].(map[string]any)["count"] != 1.0 {
		t.Fatalf("event %v", ev)
	}
	wantProblem(t, "a tenant admin", h.do("GET", "/api/v1/audit-events?tenantless=true", admin, nil), http.StatusForbidden, "forbidden", "")
	wantProblem(t, "a bad value", h.do("GET", "/api/v1/audit-events?tenantless=yes", platform, nil), http.StatusUnprocessableEntity, "invalid", "tenantless")
	own := h.do("GET", "/api/v1/audit-events?tenantless=false", admin, nil).json(t)["data"].([]any)
	for _, e := range own {
		if e.(map[string]any)["tenant_id"] != "t1" {
			t.Fatalf("tenant admin sees %v", e)
		}
	}
}

// TestScopeLimitsAreFieldErrors: a key over the glob bounds is a 422
// naming the entry.
func TestScopeLimitsAreFieldErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	globs := make([]string, authz.MaxScopeGlobs+1)
	for i := range globs {
		globs[i] = fmt.Sprintf("tool_%d_*", i)
	}
	res := h.do("POST", "/api/v1/api-keys", jwt, map[string]any{"name": "k", "permission_scope": map[string]any{"mcp_tool_ids": globs}})
	wantProblem(t, "too many globs", res, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("permission_scope.mcp_tool_ids[%d]", authz.MaxScopeGlobs))
	res = h.do("POST", "/api/v1/api-keys", jwt, map[string]any{"name": "k", "permission_scope": map[string]any{"flow_ids": []string{"a*b*c*d*e"}}})
	wantProblem(t, "too many stars", res, http.StatusUnprocessableEntity, "invalid", "permission_scope.flow_ids[0]")
}

// TestDeniedBatchAuditRowIsBounded: a batch of 100 denied checks with long
// ids is one row naming the first few checks and counting the others.
func TestDeniedBatchAuditRowIsBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice", "admin")
	_, token := h.createKey(jwt, "k", flowScope)
	checks := make([]any, authz.MaxBatchChecks)
	for i := range checks {
		checks[i] = map[string]any{"resource": map[string]any{"type": "flow", "id": fmt.Sprintf("%0190d", i)}, "action": "execute"}
	}
	wantStatus(t, "batch", h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": checks}), http.StatusOK)
	h.flushAudit()
	var size int
	if err := h.db.Bun().NewRaw("SELECT MAX(LENGTH(reason) + LENGTH(details)) FROM audit_events WHERE action = ?", authz.AuditAuthzDenied).Scan(t.Context(), &size); err != nil {
		t.Fatal(err)
	}
	if size > 8<<10 {
		t.Fatalf("the denial row is %d bytes", size)
	}
	ev := h.do("GET", "/api/v1/audit-events?action=authorization.denied", jwt, nil).json(t)["data"].([]any)[0].(map[string]any)
	d := ev["details"].(map[string]any)
	if len(d["denied"].([]any)) != authz.MaxAuditDeniedChecks || d["denied_omitted"] != float64(authz.MaxBatchChecks-authz.MaxAuditDeniedChecks) ||
		ev["reason"] != "100 of 100 checks denied" {
		t.Fatalf("denial event %v", ev)
	}
	t.Logf("a denied batch of 100 checks with 190-character ids: a row of %d bytes (reason and details)", size)
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
