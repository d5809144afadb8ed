package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// TestCreateRetriedAfterALostAnswer: a create that committed but whose
// answer never arrived, sent again, is a 409 naming the key it made, never
// a second key; the id is shown only to whoever may read that key.
func TestCreateRetriedAfterALostAnswer(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		h := newHarness(t, db)
		alice := h.jwt("t1", "alice")
		body := map[string]any{"name": "deploy", "permission_scope": flowScope}
		id, _ := h.createKey(alice, "deploy", flowScope)
		tests := []struct {
			note     string
			jwt      string
			status   int
			existing string
		}{
			{"the same create again", alice, http.StatusConflict, id},
			{"an admin of the tenant", h.jwt("t1", "root", authz.RoleAdmin), http.StatusConflict, id},
			{"another member, who may not read alice's key", h.jwt("t1", "bob"), http.StatusConflict, ""},
			{"another tenant: names are per tenant", h.jwt("t2", "alice"), http.StatusCreated, ""},
		}
		for _, tc := range tests {
			res := h.do("POST", "/api/v1/api-keys", tc.jwt, body)
			if tc.status == http.StatusCreated {
				wantStatus(t, tc.note, res, tc.status)
				continue
			}
			wantProblem(t, tc.note, res, tc.status, "conflict", "")
			var p server.Problem
			if err := json.Unmarshal(res.body, &p); err != nil {
				t.Fatal(err)
			}
			if p.ExistingID != tc.existing || strings.Contains(p.Detail, id) != (tc.existing != "") {
				t.Fatalf("%s: existing_id %q, detail %q; want the existing id %q named, or nothing", tc.note, p.ExistingID, p.Detail, tc.existing)
			}
		}
		list := h.do("GET", "/api/v1/api-keys", h.jwt("t1", "root", authz.RoleAdmin), nil)
		wantStatus(t, "list", list, http.StatusOK)
		if n := len(list.json(t)["data"].([]any)); n != 1 {
			t.Fatalf("tenant t1 holds %d keys after the retries, want 1", n)
		}
	})
}
