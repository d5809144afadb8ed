package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/storage/storagetest"
)

var flowScope = map[string]any{"flow_ids": []string{"f1", "f*x"}, "agent_ids": []string{"a1"}}

func TestCreateKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "alice", "admin")

	res := h.do("POST", "/api/v1/api-keys", admin, map[string]any{"name": "ci", "permission_scope": flowScope})
	wantStatus(t, "create", res, http.StatusCreated)
	m := res.json(t)
	token, _ := m["token"].(string)
	if !strings.HasPrefix(token, "pk_") || m["start"] != token[:8] {
		t.Fatalf("token %q start %v: want pk_ token and its first 8 characters", token, m["start"])
	}
	for _, field := range []string{"id", "name", "start", "tenant_id", "user_id", "permission_scope", "enabled", "expires_at", "last_used_at", "created_at", "updated_at"} {
		if _, ok := m[field]; !ok {
			t.Errorf("created key lacks %q", field)
		}
	}
	if _, ok := m["key_hash"]; ok {
		t.Error("created key shows its hash")
	}
	if m["tenant_id"] != "t1" || m["user_id"] != "alice" || m["enabled"] != true {
		t.Errorf("created key %v: want tenant t1, user alice, enabled", m)
	}
	if loc := res.header.Get("Location"); loc != "/api/v1/api-keys/"+m["id"].(string) {
		t.Errorf("Location %q", loc)
	}
	if res.header.Get("Cache-Control") != "no-store" {
		t.Error("the answer carrying a token must not be cached")
	}

	got := h.do("GET", "/api/v1/api-keys/"+m["id"].(string), admin, nil)
	wantStatus(t, "get", got, http.StatusOK)
	if strings.Contains(string(got.body), `"token"`) || strings.Contains(string(got.body), token) {
		t.Fatalf("GET shows the token: %s", got.body)
	}
}

func TestCreateKeyRefusesBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	h.createKey(jwt, "taken", flowScope)
	past := h.clock.Now().Add(-time.Minute).Format(time.RFC3339)
	tests := []struct {
		note   string
		body   any
		status int
		code   string
		field  string
	}{
		{"not JSON", `{"name":`, 400, "malformed", ""},
		{"an array", `[]`, 400, "malformed", ""},
		{"empty body", ``, 400, "malformed", ""},
		{"trailing data", `{"name":"x","permission_scope":{}} x`, 400, "malformed", ""},
		{"unknown field is named", map[string]any{"name": "x", "permission_scope": flowScope, "scopes": 1}, 422, "invalid", "scopes"},
		{"missing name", map[string]any{"permission_scope": flowScope}, 422, "invalid", "name"},
		{"null name", map[string]any{"name": nil, "permission_scope": flowScope}, 422, "invalid", "name"},
		{"name of the wrong type", map[string]any{"name": 7, "permission_scope": flowScope}, 422, "invalid", "name"},
		{"name too long", map[string]any{"name": strings.Repeat("n", 101), "permission_scope": flowScope}, 422, "invalid", "name"},
		{"missing scope", map[string]any{"name": "x"}, 422, "invalid", "permission_scope"},
		{"unknown scope field", map[string]any{"name": "x", "permission_scope": map[string]any{"tools": []string{}}}, 422, "invalid", "permission_scope.tools"},
		{"bad scope entry", map[string]any{"name": "x", "permission_scope": map[string]any{"flow_ids": []string{"a b"}}}, 422, "invalid", "permission_scope.flow_ids[0]"},
		{"expiry in the past", map[string]any{"name": "x", "permission_scope": flowScope, "expires_at": past}, 422, "invalid", "expires_at"},
		{"expiry not a time", map[string]any{"name": "x", "permission_scope": flowScope, "expires_at": "tomorrow"}, 422, "invalid", "expires_at"},
		{"duplicate name", map[string]any{"name": "taken", "permission_scope": flowScope}, 409, "conflict", ""},
		{"body over 1 MiB", `{"name":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "too_large", ""},
	}
	for _, tc := range tests {
		wantProblem(t, tc.note, h.do("POST", "/api/v1/api-keys", jwt, tc.body), tc.status, tc.code, tc.field)
	}
}

func TestManagementAuthentication(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	_, apiKey := h.createKey(h.jwt("t1", "alice"), "k", flowScope)
	expired := h.jwt("t1", "alice")
	h.clock.Advance(2 * time.Hour)
	otherIssuer := h.jwtCfg
	otherIssuer.Issuer = "https://evil.test"
	wrongIss, _ := signWith(otherIssuer, "t1", "alice")
	otherAud := h.jwtCfg
	otherAud.Audience = "someone-else"
	wrongAud, _ := signWith(otherAud, "t1", "alice")
	otherSecret := h.jwtCfg
	otherSecret.Secret = []byte("another-secret-of-at-least-32-bytes")
	wrongSig, _ := signWith(otherSecret, "t1", "alice")
	noTenant := h.jwtCfg
	noTenant.TenantClaim = "org"
	missingTenant, _ := signWith(noTenant, "t1", "alice")

	tests := []struct {
		note string
		auth string
	}{
		{"no credential", ""},
		{"garbage", "not-a-jwt"},
		{"expired", expired},
		{"wrong signature", wrongSig},
		{"wrong issuer", wrongIss},
		{"wrong audience", wrongAud},
		{"no tenant claim", missingTenant},
		{"an API key instead of a JWT", apiKey},
	}
	for _, tc := range tests {
		res := h.do("GET", "/api/v1/api-keys", tc.auth, nil)
		wantProblem(t, tc.note, res, http.StatusUnauthorized, "unauthorized", "")
		if res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.note)
		}
	}
	wantStatus(t, "fresh token", h.do("GET", "/api/v1/api-keys", h.jwt("t1", "alice"), nil), http.StatusOK)
}

func TestOtherTenantsKeyIsNotFoundForEveryVerb(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	id, token := h.createKey(h.jwt("t1", "alice", "admin"), "k", flowScope)
	intruder := h.jwt("t2", "alice", "admin")
	path := "/api/v1/api-keys/" + id
	for _, tc := range []struct {
		method string
		body   any
	}{{"GET", nil}, {"PATCH", map[string]any{"enabled": false}}, {"DELETE", nil}} {
		wantProblem(t, tc.method+" another tenant's key", h.do(tc.method, path, intruder, tc.body), 404, "not_found", "")
	}
	wantProblem(t, "GET a malformed id", h.do("GET", "/api/v1/api-keys/not-a-uuid", intruder, nil), 404, "not_found", "")
	list := h.do("GET", "/api/v1/api-keys", intruder, nil).json(t)
	if data := list["data"].([]any); len(data) != 0 {
		t.Fatalf("another tenant lists %d keys", len(data))
	}
	if got := h.authorize(token, "flow", "f1", "execute"); got["allowed"] != true {
		t.Fatalf("the key must be untouched: %v", got)
	}
}

func TestKeyRightsWithinATenant(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	alice, bob, admin := h.jwt("t1", "alice"), h.jwt("t1", "bob"), h.jwt("t1", "root", "admin")
	aliceKey, _ := h.createKey(alice, "alice-key", flowScope)
	h.createKey(bob, "bob-key", flowScope)
	path := "/api/v1/api-keys/" + aliceKey

	wantStatus(t, "owner reads", h.do("GET", path, alice, nil), 200)
	wantStatus(t, "admin reads", h.do("GET", path, admin, nil), 200)
	wantProblem(t, "other user reads", h.do("GET", path, bob, nil), 403, "forbidden", "")
	wantProblem(t, "other user patches", h.do("PATCH", path, bob, map[string]any{"enabled": false}), 403, "forbidden", "")
	wantProblem(t, "other user deletes", h.do("DELETE", path, bob, nil), 403, "forbidden", "")

	names := func(jwt, query string) []string {
		res := h.do("GET", "/api/v1/api-keys"+query, jwt, nil)
		wantStatus(t, "list "+query, res, 200)
		var out []string
		for _, k := range res.json(t)["data"].([]any) {
			out = append(out, k.(map[string]any)["name"].(string))
		}
		return out
	}
	if got := names(alice, ""); len(got) != 1 || got[0] != "alice-key" {
		t.Errorf("alice lists %v, want only her key", got)
	}
	if got := names(admin, ""); len(got) != 2 {
		t.Errorf("admin lists %v, want both keys", got)
	}
	if got := names(admin, "?user_id=bob"); len(got) != 1 || got[0] != "bob-key" {
		t.Errorf("admin filtered by bob lists %v", got)
	}
	wantProblem(t, "alice lists bob's keys", h.do("GET", "/api/v1/api-keys?user_id=bob", alice, nil), 403, "forbidden", "")
	wantStatus(t, "admin deletes alice's key", h.do("DELETE", path, admin, nil), 204)
}

func TestListKeysPagesAndFilters(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	for i := range 25 {
		h.createKey(admin, fmt.Sprintf("k%02d", i), flowScope)
	}
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		res := h.do("GET", "/api/v1/api-keys?limit=10&cursor="+cursor, admin, nil)
		wantStatus(t, "page", res, 200)
		m := res.json(t)
		for _, k := range m["data"].([]any) {
			id := k.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("key %s listed twice", id)
			}
			seen[id] = true
		}
		pages++
		next, _ := m["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 25 || pages != 3 {
		t.Fatalf("saw %d keys on %d pages, want 25 on 3", len(seen), pages)
	}
	id, _ := h.createKey(admin, "off", flowScope)
	wantStatus(t, "disable", h.do("PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{"enabled": false}), 200)
	if data := h.do("GET", "/api/v1/api-keys?enabled=false", admin, nil).json(t)["data"].([]any); len(data) != 1 {
		t.Fatalf("enabled=false lists %d keys, want 1", len(data))
	}
	for _, tc := range []struct{ note, query, field string }{
		{"limit 0", "?limit=0", "limit"},
		{"limit 101", "?limit=101", "limit"},
		{"limit not a number", "?limit=ten", "limit"},
		{"enabled not a boolean", "?enabled=maybe", "enabled"},
		{"empty user filter", "?user_id=", "user_id"},
		{"forged cursor", "?cursor=bm90LWEtY3Vyc29y", "cursor"},
	} {
		wantProblem(t, tc.note, h.do("GET", "/api/v1/api-keys"+tc.query, admin, nil), 422, "invalid", tc.field)
	}
}

func TestUpdateKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	id, _ := h.createKey(jwt, "k", flowScope)
	h.createKey(jwt, "other", flowScope)
	path := "/api/v1/api-keys/" + id
	later := h.clock.Now().Add(48 * time.Hour).Format(time.RFC3339)

	m := h.do("PATCH", path, jwt, map[string]any{"name": "renamed", "expires_at": later, "permission_scope": map[string]any{"agent_ids": []string{"a*"}}}).json(t)
	if m["name"] != "renamed" || m["expires_at"] == nil || len(m["permission_scope"].(map[string]any)["agent_ids"].([]any)) != 1 {
		t.Fatalf("after PATCH: %v", m)
	}
	m = h.do("PATCH", path, jwt, map[string]any{"expires_at": nil}).json(t)
	if m["expires_at"] != nil {
		t.Fatalf("expires_at null must clear the expiry: %v", m)
	}
	wantStatus(t, "empty patch", h.do("PATCH", path, jwt, map[string]any{}), 200)
	for _, tc := range []struct {
		note   string
		body   any
		status int
		code   string
		field  string
	}{
		{"unknown field", map[string]any{"enabled": true, "owner": "bob"}, 422, "invalid", "owner"},
		{"null name", map[string]any{"name": nil}, 422, "invalid", "name"},
		{"null enabled", map[string]any{"enabled": nil}, 422, "invalid", "enabled"},
		{"enabled as string", map[string]any{"enabled": "no"}, 422, "invalid", "enabled"},
		{"null scope", map[string]any{"permission_scope": nil}, 422, "invalid", "permission_scope"},
		{"expiry in the past", map[string]any{"expires_at": "2001-01-01T00:00:00Z"}, 422, "invalid", "expires_at"},
		{"name taken", map[string]any{"name": "other"}, 409, "conflict", ""},
		{"not JSON", "{", 400, "malformed", ""},
	} {
		wantProblem(t, tc.note, h.do("PATCH", path, jwt, tc.body), tc.status, tc.code, tc.field)
	}
	wantProblem(t, "unknown key", h.do("PATCH", "/api/v1/api-keys/0190f0e2-8a4b-7c3d-9e1f-abcdefabcdef", jwt, map[string]any{"enabled": false}), 404, "not_found", "")
}

func TestDeleteKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	id, token := h.createKey(jwt, "k", flowScope)
	wantStatus(t, "delete", h.do("DELETE", "/api/v1/api-keys/"+id, jwt, nil), 204)
	wantProblem(t, "get deleted", h.do("GET", "/api/v1/api-keys/"+id, jwt, nil), 404, "not_found", "")
	wantProblem(t, "delete twice", h.do("DELETE", "/api/v1/api-keys/"+id, jwt, nil), 404, "not_found", "")
	if got := h.authorize(token, "flow", "f1", "execute"); got["code"] != "KEY_INVALID" {
		t.Fatalf("deleted key answers %v, want KEY_INVALID", got)
	}
}

func TestOffboarding(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin, alice := h.jwt("t1", "root", "admin"), h.jwt("t1", "alice")
	_, aliceToken := h.createKey(alice, "a", flowScope)
	_, rootToken := h.createKey(admin, "r", flowScope)
	_, otherToken := h.createKey(h.jwt("t2", "zed"), "z", flowScope)

	wantProblem(t, "a user may not offboard users", h.do("DELETE", "/api/v1/users/alice", alice, nil), 403, "forbidden", "")
	wantProblem(t, "unknown user", h.do("DELETE", "/api/v1/users/nobody", admin, nil), 404, "not_found", "")
	wantProblem(t, "another tenant's user", h.do("DELETE", "/api/v1/users/zed", admin, nil), 404, "not_found", "")
	wantStatus(t, "admin offboards alice", h.do("DELETE", "/api/v1/users/alice", admin, nil), 204)
	if got := h.authorize(aliceToken, "flow", "f1", "execute"); got["code"] != "KEY_INVALID" {
		t.Fatalf("offboarded user's key answers %v", got)
	}
	if got := h.authorize(rootToken, "flow", "f1", "execute"); got["allowed"] != true {
		t.Fatalf("the admin's own key must survive: %v", got)
	}

	wantProblem(t, "a tenant admin may not delete tenants", h.do("DELETE", "/api/v1/tenants/t2", admin, nil), 403, "forbidden", "")
	platform := h.jwt("ops", "pat", "platform_admin")
	wantProblem(t, "unknown tenant", h.do("DELETE", "/api/v1/tenants/nope", platform, nil), 404, "not_found", "")
	wantStatus(t, "platform admin deletes t2", h.do("DELETE", "/api/v1/tenants/t2", platform, nil), 204)
	if got := h.authorize(otherToken, "flow", "f1", "execute"); got["code"] != "KEY_INVALID" {
		t.Fatalf("a deleted tenant's key answers %v", got)
	}
	if got := h.authorize(rootToken, "flow", "f1", "execute"); got["allowed"] != true {
		t.Fatalf("another tenant's key must survive: %v", got)
	}
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin, alice := h.jwt("t1", "root", "admin"), h.jwt("t1", "alice")
	// Each step a millisecond apart, so the trail's time order is certain.
	step := func() { h.clock.Advance(time.Millisecond) }
	id, token := h.createKey(alice, "k", flowScope)
	step()
	h.do("PATCH", "/api/v1/api-keys/"+id, alice, map[string]any{"name": "k2", "enabled": false}, "User-Agent", "audit-test")
	step()
	h.authorize(token, "flow", "f1", "execute") // disabled: authentication fails
	step()
	h.do("PATCH", "/api/v1/api-keys/"+id, alice, map[string]any{"enabled": true})
	step()
	h.authorize(token, "flow", "nope", "execute") // denied by policy
	step()
	h.do("DELETE", "/api/v1/api-keys/"+id, alice, nil)
	step()
	h.authorize("pk_garbage", "flow", "f1", "execute") // malformed: no tenant to file under
	h.flushAudit()

	wantProblem(t, "a non-admin may not read the trail", h.do("GET", "/api/v1/audit-events", alice, nil), 403, "forbidden", "")
	res := h.do("GET", "/api/v1/audit-events?limit=100", admin, nil)
	wantStatus(t, "admin reads", res, 200)
	var actions []string
	var updated []map[string]any
	for _, e := range res.json(t)["data"].([]any) {
		ev := e.(map[string]any)
		actions = append(actions, ev["action"].(string))
		if ev["action"] == "api_key.updated" {
			updated = append(updated, ev)
		}
		if ev["tenant_id"] != "t1" || ev["request_id"] == "" {
			t.Errorf("event %v: want tenant t1 and a request id", ev)
		}
	}
	want := []string{"api_key.deleted", "authorization.denied", "api_key.updated", "authentication.failed", "api_key.updated", "api_key.created"}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Fatalf("actions newest first %v, want %v", actions, want)
	}
	first := updated[1]
	changed := first["details"].(map[string]any)["changed"].([]any)
	if len(changed) != 2 || changed[0] != "name" || changed[1] != "enabled" || first["user_agent"] != "audit-test" {
		t.Fatalf("update event %v: want changed [name enabled] and the user agent", first)
	}

	byKey := h.do("GET", "/api/v1/audit-events?key_id="+id+"&action=authentication.failed", admin, nil).json(t)["data"].([]any)
	if len(byKey) != 1 || byKey[0].(map[string]any)["details"].(map[string]any)["code"] != "KEY_DISABLED" {
		t.Fatalf("filtered by key and action: %v", byKey)
	}
	future := h.clock.Now().Add(time.Hour).Format(time.RFC3339)
	if none := h.do("GET", "/api/v1/audit-events?since="+future, admin, nil).json(t)["data"].([]any); len(none) != 0 {
		t.Fatalf("since the future: %d events", len(none))
	}
	wantProblem(t, "bad since", h.do("GET", "/api/v1/audit-events?since=yesterday", admin, nil), 422, "invalid", "since")
	other := h.do("GET", "/api/v1/audit-events", h.jwt("t2", "x", "admin"), nil).json(t)["data"].([]any)
	if len(other) != 0 {
		t.Fatalf("another tenant's admin sees %d events", len(other))
	}
}
