package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/storage/storagetest"
)

// TestStrictParsing: member names match exactly, a member given twice is a
// 400, invalid UTF-8 and control or bidirectional-override characters in
// ids are a 422 naming the field, on /v1/authorize and management bodies.
func TestStrictParsing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	_, token := h.createKey(admin, "k", map[string]any{"flow_ids": []string{"f*"}})
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	authorize := func(apiKey, resource, action string) string {
		return `{"api_key": ` + apiKey + `, "resource": ` + resource + `, "action": ` + action + `}`
	}
	flow := func(id string) string { return `{"type": "flow", "id": ` + id + `}` }
	for _, tc := range []struct {
		note, method, path, body string
		status                   int
		field                    string
	}{
		{"valid", "POST", "/v1/authorize", authorize(q(token), flow(`"f1"`), `"execute"`), 200, ""},
		{"upper-case member", "POST", "/v1/authorize", `{"API_KEY": ` + q(token) + `, "resource": ` + flow(`"f1"`) + `, "action": "execute"}`, 422, "API_KEY"},
		{"upper-case nested member", "POST", "/v1/authorize", authorize(q(token), `{"type": "flow", "ID": "f1"}`, `"execute"`), 422, "resource.ID"},
		{"both id and ID", "POST", "/v1/authorize", authorize(q(token), `{"type": "flow", "id": "x", "ID": "f1"}`, `"execute"`), 422, "resource.ID"},
		{"Kelvin sign folds to k in encoding/json", "POST", "/v1/authorize", `{"api_\u212aey": ` + q(token) + `, "resource": ` + flow(`"f1"`) + `, "action": "execute"}`, 422, ""},
		{"duplicate member", "POST", "/v1/authorize", `{"api_key": "pk_x", "api_key": ` + q(token) + `, "resource": ` + flow(`"f1"`) + `, "action": "execute"}`, 400, ""},
		{"duplicate nested member", "POST", "/v1/authorize", authorize(q(token), `{"type": "flow", "id": "zzz", "id": "f1"}`, `"execute"`), 400, ""},
		{"duplicate spelled with an escape", "POST", "/v1/authorize", authorize(q(token), `{"type": "flow", "id": "zzz", "\u0069d": "f1"}`, `"execute"`), 400, ""},
		{"invalid UTF-8", "POST", "/v1/authorize", authorize(q(token), flow("\"f\xff1\""), `"execute"`), 422, "resource.id"},
		{"lone surrogate", "POST", "/v1/authorize", authorize(q(token), flow(`"f\ud800"`), `"execute"`), 422, "resource.id"},
		{"control character", "POST", "/v1/authorize", authorize(q(token), flow(`"f\u0007"`), `"execute"`), 422, "resource.id"},
		{"bidirectional override", "POST", "/v1/authorize", authorize(q(token), flow(`"f\u202e1"`), `"execute"`), 422, "resource.id"},
		{"bidirectional isolate in a batch", "POST", "/v1/authorize", `{"api_key": ` + q(token) + `, "checks": [{"resource": {"type": "flow", "id": "f\u2066"}, "action": "read"}]}`, 422, "checks[0].resource.id"},
		{"upper-case member in a batch", "POST", "/v1/authorize", `{"api_key": ` + q(token) + `, "checks": [{"Resource": {"type": "flow", "id": "f"}, "action": "read"}]}`, 422, "checks[0].Resource"},
		{"trailing data", "POST", "/v1/authorize", authorize(q(token), flow(`"f1"`), `"execute"`) + "{}", 400, ""},

		{"key: duplicate member", "POST", "/api/v1/api-keys", `{"name": "a", "name": "b", "permission_scope": {}}`, 400, ""},
		{"key: duplicate scope list", "POST", "/api/v1/api-keys", `{"name": "a", "permission_scope": {"flow_ids": [], "flow_ids": ["*"]}}`, 400, ""},
		{"key: upper-case scope list", "POST", "/api/v1/api-keys", `{"name": "a", "permission_scope": {"FLOW_IDS": ["*"]}}`, 422, "permission_scope.FLOW_IDS"},
		{"key: upper-case member", "POST", "/api/v1/api-keys", `{"Name": "a", "permission_scope": {}}`, 422, "Name"},
		{"key: bidi in the name", "POST", "/api/v1/api-keys", `{"name": "admin\u202e", "permission_scope": {}}`, 422, "name"},
		{"key: invalid UTF-8 in the name", "POST", "/api/v1/api-keys", "{\"name\": \"a\xc3\", \"permission_scope\": {}}", 422, "name"},
		{"server: duplicate header", "POST", "/api/v1/mcp-servers", `{"name": "a", "url": "http://127.0.0.1:1/", "headers": {"X-A": "1", "X-A": "2"}}`, 400, ""},
		{"ceiling: upper-case list", "PUT", "/api/v1/users/bob/scope-ceiling", `{"permission_scope": {"Agent_Ids": []}}`, 422, "permission_scope.Agent_Ids"},
	} {
		res := h.do(tc.method, tc.path, admin, tc.body)
		if tc.path == "/v1/authorize" {
			res = h.do(tc.method, tc.path, "", tc.body)
		}
		if tc.status == 200 {
			wantStatus(t, tc.note, res, 200)
			continue
		}
		code := map[int]string{400: "malformed", 422: "invalid"}[tc.status]
		wantProblem(t, tc.note, res, tc.status, code, tc.field)
		if strings.Contains(string(res.body), token) {
			t.Errorf("%s: the problem echoes the key", tc.note)
		}
	}
}
