package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// TestNoSecretLeaks drives every path that sees a token, then searches the
// logs, every audit row and every answer (but the one create answer that
// must carry its token) for any token or token hash.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		h := newHarness(t, db)
		jwt := h.jwt("t1", "alice", "admin")
		var bodies []string
		record := func(r response) { bodies = append(bodies, string(r.body)) }

		id, token := h.createKey(jwt, "k", flowScope)
		disabledID, disabled := h.createKey(jwt, "d", flowScope)
		record(h.do("PATCH", "/api/v1/api-keys/"+disabledID, jwt, map[string]any{"enabled": false}))
		random, _ := authz.NewToken(nil)
		mistyped := token[:len(token)-1] + flipCase(token[len(token)-1])
		secrets := []string{token, disabled, random, mistyped}

		for _, tok := range secrets {
			for _, body := range []any{
				map[string]any{"api_key": tok, "resource": map[string]any{"type": "flow", "id": "f1"}, "action": "execute"},
				map[string]any{"api_key": tok, "resource": map[string]any{"type": "flow", "id": "zzz"}, "action": "execute"},
				map[string]any{"api_key": tok, "checks": []any{map[string]any{"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"}}},
				map[string]any{"api_key": tok, "resource": map[string]any{"type": "robot", "id": "r"}, "action": "read"},
			} {
				record(h.do("POST", "/v1/authorize", "", body))
			}
			record(h.do("GET", "/v1/whoami", tok, nil))
			record(h.do("GET", "/v1/whoami", "", nil, "X-API-Key", tok))
			record(h.do("GET", "/api/v1/api-keys", tok, nil))
			record(h.do("POST", "/api/v1/api-keys", jwt, `{"name":"`+tok+`", "permission_scope": {"flow_ids": ["`+tok+`"]}, "x": 1}`))
		}
		record(h.do("GET", "/api/v1/api-keys/"+id, jwt, nil))
		record(h.do("GET", "/api/v1/api-keys", jwt, nil))
		record(h.do("DELETE", "/api/v1/api-keys/"+id, jwt, nil))
		record(h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "resource": map[string]any{"type": "flow", "id": "f1"}, "action": "execute"}))
		h.flushAudit()
		record(h.do("GET", "/api/v1/audit-events?limit=100", jwt, nil))

		rows := auditRowsAsText(t, db)
		// Refusals are counted into one row per key, address and reason.
		if len(rows) < 8 {
			t.Fatalf("only %d audit rows: the scenario did not run", len(rows))
		}
		haystacks := map[string]string{"logs": h.logs.String(), "audit rows": strings.Join(rows, "\n"), "answers": strings.Join(bodies, "\n")}
		for _, secret := range secrets {
			needles := []string{secret, secret[len(authz.TokenPrefix) : len(authz.TokenPrefix)+20], authz.HashToken(secret)}
			for where, text := range haystacks {
				for _, n := range needles {
					if strings.Contains(text, n) {
						t.Errorf("%s contain a token or its hash (%.12s…)", where, n)
					}
				}
			}
		}
	})
}

// auditRowsAsText reads every column of every audit row as text.
func auditRowsAsText(t *testing.T, db *storage.DB) []string {
	t.Helper()
	rows, err := db.Bun().QueryContext(context.Background(), "SELECT * FROM audit_events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, v := range vals {
			if raw, ok := v.([]byte); ok {
				v = string(raw)
			}
			fmt.Fprintf(&b, "%v|", v)
		}
		out = append(out, b.String())
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
