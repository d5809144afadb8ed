package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestAuthorizeSingle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	id, token := h.createKey(jwt, "k", map[string]any{"flow_ids": []string{"f1", "daily-*"}, "mcp_tool_ids": []string{"github__*"}})
	tests := []struct {
		note    string
		rtype   string
		id      string
		action  string
		allowed bool
		code    string
		reason  string
	}{
		{"exact id", "flow", "f1", "execute", true, "ALLOWED", `"f1"`},
		{"glob", "flow", "daily-report", "read", true, "ALLOWED", `"daily-*"`},
		{"tool glob", "mcp_tool", "github__create_issue", "call", true, "ALLOWED", "github__*"},
		{"not in scope", "flow", "f9", "execute", false, "DENIED", `flow "f9" is not in the key's flow_ids`},
		{"unsupported action", "flow", "f1", "delete", false, "DENIED", `"delete"`},
		{"empty list", "agent", "a1", "execute", false, "DENIED", "agent_ids"},
	}
	for _, tc := range tests {
		got := h.authorize(token, tc.rtype, tc.id, tc.action)
		if got["allowed"] != tc.allowed || got["code"] != tc.code || !strings.Contains(reasonText(got), tc.reason) {
			t.Errorf("%s: %v, want allowed=%v code=%s reason containing %q", tc.note, got, tc.allowed, tc.code, tc.reason)
		}
		p, _ := got["principal"].(map[string]any)
		if p["key_id"] != id || p["tenant_id"] != "t1" || p["user_id"] != "alice" || got["decision_id"] == "" {
			t.Errorf("%s: principal %v and decision id %v", tc.note, p, got["decision_id"])
		}
	}

	res := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token,
		"resource": map[string]any{"type": "flow", "id": "f1", "tenant_id": "t2"}, "action": "execute"}).json(t)
	if res["allowed"] != false || !strings.Contains(reasonText(res), "another tenant") {
		t.Errorf("a resource of another tenant: %v", res)
	}
}

func TestAuthorizeRefusedKeys(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	in := h.clock.Now().Add(time.Hour).Format(time.RFC3339)
	_, expiring := h.createKey(jwt, "expiring", flowScope, "expires_at", in)
	disabledID, disabled := h.createKey(jwt, "disabled", flowScope)
	h.do("PATCH", "/api/v1/api-keys/"+disabledID, jwt, map[string]any{"enabled": false})
	deletedID, deleted := h.createKey(jwt, "deleted", flowScope)
	h.do("DELETE", "/api/v1/api-keys/"+deletedID, jwt, nil)
	random, _ := authz.NewToken(nil)
	mistyped := expiring[:20] + flipCase(expiring[20]) + expiring[21:]

	if got := h.authorize(expiring, "flow", "f1", "execute"); got["allowed"] != true {
		t.Fatalf("before expiry: %v", got)
	}
	h.clock.Advance(time.Hour)
	for _, tc := range []struct{ note, token, code string }{
		{"expired", expiring, "KEY_EXPIRED"},
		{"disabled", disabled, "KEY_DISABLED"},
		{"deleted", deleted, "KEY_INVALID"},
		{"random but well-formed", random, "KEY_INVALID"},
		{"mistyped", mistyped, "KEY_INVALID"},
		{"not a token", "hello", "KEY_INVALID"},
	} {
		got := h.authorize(tc.token, "flow", "f1", "execute")
		if got["allowed"] != false || got["code"] != tc.code || got["principal"] != nil || got["decision_id"] == "" {
			t.Errorf("%s: %v, want denied with code %s and no principal", tc.note, got, tc.code)
		}
	}
}

func TestAuthorizeBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	_, token := h.createKey(h.jwt("t1", "alice"), "k", flowScope)
	check := func(id string) map[string]any {
		return map[string]any{"resource": map[string]any{"type": "flow", "id": id}, "action": "execute"}
	}
	res := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": []any{check("f1"), check("f9"), check("fax")}})
	wantStatus(t, "batch", res, 200)
	m := res.json(t)
	results := m["results"].([]any)
	if len(results) != 3 || m["code"] != "DENIED" || m["decision_id"] == "" || m["principal"] == nil {
		t.Fatalf("batch answer %v", m)
	}
	for i, want := range []bool{true, false, true} {
		if r := results[i].(map[string]any); r["allowed"] != want || len(r["reasons"].([]any)) == 0 {
			t.Errorf("result %d: %v, want allowed=%v with reasons", i, r, want)
		}
	}
	// The batch is one line of the audit trail, naming each denied check.
	h.flushAudit()
	events := h.do("GET", "/api/v1/audit-events?action=authorization.denied", h.jwt("t1", "root", "admin"), nil).json(t)["data"].([]any)
	if len(events) != 1 {
		t.Fatalf("%d denial events for one batch, want 1", len(events))
	}
	ev := events[0].(map[string]any)
	details := ev["details"].(map[string]any)
	denied := details["denied"].([]any)
	if ev["target_type"] != "checks" || details["checks"] != float64(3) || len(denied) != 1 ||
		denied[0].(map[string]any)["id"] != "f9" || details["decision_id"] != m["decision_id"] {
		t.Fatalf("batch denial event %v", ev)
	}
	all := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": []any{check("f1")}}).json(t)
	if all["code"] != "ALLOWED" {
		t.Errorf("all allowed: code %v", all["code"])
	}
	bad := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": "pk_nope", "checks": []any{check("f1"), check("f2")}}).json(t)
	if bad["code"] != "KEY_INVALID" || len(bad["results"].([]any)) != 2 {
		t.Errorf("batch with a bad key: %v", bad)
	}
}

func TestAuthorizeRefusesMalformedRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	_, token := h.createKey(h.jwt("t1", "alice"), "k", flowScope)
	res := map[string]any{"type": "flow", "id": "f1"}
	many := make([]any, authz.MaxBatchChecks+1)
	for i := range many {
		many[i] = map[string]any{"resource": res, "action": "read"}
	}
	tests := []struct {
		note   string
		body   any
		status int
		field  string
	}{
		{"not JSON", "{", 400, ""},
		{"no api_key", map[string]any{"resource": res, "action": "read"}, 422, "api_key"},
		{"empty api_key", map[string]any{"api_key": "", "resource": res, "action": "read"}, 422, "api_key"},
		{"no resource", map[string]any{"api_key": token, "action": "read"}, 422, "resource"},
		{"no action", map[string]any{"api_key": token, "resource": res}, 422, "action"},
		{"unknown type", map[string]any{"api_key": token, "resource": map[string]any{"type": "robot", "id": "r"}, "action": "read"}, 422, "resource.type"},
		{"empty id", map[string]any{"api_key": token, "resource": map[string]any{"type": "flow", "id": ""}, "action": "read"}, 422, "resource.id"},
		{"bad action", map[string]any{"api_key": token, "resource": res, "action": "DROP TABLE"}, 422, "action"},
		{"unknown field", map[string]any{"api_key": token, "resource": res, "action": "read", "context": map[string]any{}}, 422, "context"},
		{"unknown resource field", map[string]any{"api_key": token, "resource": map[string]any{"type": "flow", "id": "f1", "owner": "x"}, "action": "read"}, 422, "resource.owner"},
		{"both forms", map[string]any{"api_key": token, "resource": res, "action": "read", "checks": []any{}}, 422, "checks"},
		{"empty batch", map[string]any{"api_key": token, "checks": []any{}}, 422, "checks"},
		{"101 checks", map[string]any{"api_key": token, "checks": many}, 422, "checks"},
		{"bad check in a batch", map[string]any{"api_key": token, "checks": []any{map[string]any{"resource": res, "action": "read"}, map[string]any{"resource": map[string]any{"type": "x", "id": "1"}, "action": "read"}}}, 422, "checks[1].resource.type"},
	}
	for _, tc := range tests {
		code := "invalid"
		if tc.status == 400 {
			code = "malformed"
		}
		wantProblem(t, tc.note, h.do("POST", "/v1/authorize", "", tc.body), tc.status, code, tc.field)
	}
}

func TestWhoami(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	id, token := h.createKey(h.jwt("t1", "alice"), "me", flowScope)
	for _, tc := range []struct {
		note    string
		headers []string
	}{
		{"bearer", []string{"Authorization", "Bearer " + token}},
		{"X-API-Key", []string{"X-API-Key", token}},
	} {
		res := h.do("GET", "/v1/whoami", "", nil, tc.headers...)
		wantStatus(t, tc.note, res, 200)
		m := res.json(t)
		if m["id"] != id || m["name"] != "me" || m["tenant_id"] != "t1" || m["user_id"] != "alice" || m["permission_scope"] == nil {
			t.Errorf("%s: %v", tc.note, m)
		}
	}
	wantProblem(t, "no key", h.do("GET", "/v1/whoami", "", nil), 401, "unauthorized", "")
	wantProblem(t, "bad key", h.do("GET", "/v1/whoami", "pk_nope", nil), 401, "KEY_INVALID", "")
}

// TestMiddlewareForOtherServices mounts the exported middleware on a router
// of its own, as a Go service built on gin would.
func TestMiddlewareForOtherServices(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	_, token := h.createKey(h.jwt("t1", "alice"), "k", map[string]any{"vector_store_ids": []string{"docs-*"}})
	r := gin.New()
	r.GET("/stores/:id", server.RequireAPIKey(h.svc), server.RequirePermission(h.svc, authz.ResourceVectorStore, "query", server.Param("id")),
		func(c *gin.Context) { c.String(200, "results for "+server.PrincipalFrom(c).KeyName) })
	get := func(path, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec
	}
	if rec := get("/stores/docs-eng", token); rec.Code != 200 || rec.Body.String() != "results for k" {
		t.Fatalf("allowed: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/stores/hr", token); rec.Code != 403 || !strings.Contains(rec.Body.String(), "vector_store_ids") {
		t.Fatalf("denied: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/stores/docs-eng", ""); rec.Code != 401 {
		t.Fatalf("no key: %d", rec.Code)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	db := storagetest.MustOpenSQLite(t)
	h := newHarness(t, db)
	wantStatus(t, "healthz", h.do("GET", "/healthz", "", nil), 200)
	wantStatus(t, "readyz", h.do("GET", "/readyz", "", nil), 200)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "readyz with the database gone", h.do("GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	wantProblem(t, "unknown path", h.do("GET", "/nope", "", nil), 404, "not_found", "")
	wantProblem(t, "OAuth discovery is not offered", h.do("GET", "/.well-known/oauth-authorization-server", "", nil), 404, "not_found", "")
	wantProblem(t, "wrong method", h.do("PUT", "/v1/authorize", "", nil), 405, "method_not_allowed", "")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	res := h.do("GET", "/nope", "", nil, "X-Request-Id", "abc-123")
	if res.header.Get("X-Request-Id") != "abc-123" || !strings.Contains(string(res.body), `"request_id":"abc-123"`) {
		t.Fatalf("a sane request id must be kept: %v %s", res.header, res.body)
	}
	res = h.do("GET", "/nope", "", nil, "X-Request-Id", "bad id\twith spaces")
	if got := res.header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Fatalf("an insane request id must be replaced, got %q", got)
	}
	if !strings.Contains(h.logs.String(), "request_id=abc-123") {
		t.Fatal("the log line lacks the request id")
	}
}

func TestErrorStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   string
		status int
	}{
		{authz.EMALFORMED, 400}, {authz.EUNAUTHORIZED, 401}, {authz.KeyInvalid, 401}, {authz.KeyDisabled, 401},
		{authz.KeyExpired, 401}, {authz.EFORBIDDEN, 403}, {authz.ENOTFOUND, 404}, {authz.ECONFLICT, 409},
		{authz.ETOOLARGE, 413}, {authz.EINVALID, 422}, {authz.ERATELIMIT, 429}, {authz.CodeRateLimited, 429},
		{authz.CodeUsageExceeded, 429}, {authz.EINTERNAL, 500},
		{authz.EUNAVAILABLE, 503}, {"something new", 500},
	}
	for _, tc := range tests {
		if got := server.ErrorStatus(tc.code); got != tc.status {
			t.Errorf("ErrorStatus(%q) = %d, want %d", tc.code, got, tc.status)
		}
	}
}

// TestConcurrentCreatesOfOneName: exactly one of 50 wins; the rest are 409.
func TestConcurrentCreatesOfOneName(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		h := newHarness(t, db)
		jwt := h.jwt("t1", "alice")
		statuses := make(chan int, 50)
		for range 50 {
			go func() {
				statuses <- h.do("POST", "/api/v1/api-keys", jwt, map[string]any{"name": "same", "permission_scope": flowScope}).status
			}()
		}
		counts := map[int]int{}
		for range 50 {
			counts[<-statuses]++
		}
		if counts[201] != 1 || counts[409] != 49 {
			t.Fatalf("statuses %v: want one 201 and 49 409", counts)
		}
	})
}

func flipCase(c byte) string {
	switch {
	case 'a' <= c && c <= 'z':
		return string(c - 32)
	case 'A' <= c && c <= 'Z':
		return string(c + 32)
	case c == '0':
		return "1"
	}
	return "0"
}

// reasonText joins an answer's reasons.
func reasonText(answer map[string]any) string {
	var out []string
	for _, r := range answer["reasons"].([]any) {
		out = append(out, r.(string))
	}
	return strings.Join(out, "; ")
}
