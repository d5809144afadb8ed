package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage/storagetest"
)

// get reads a member path ("a.b.c") of a decoded JSON object.
func member(m map[string]any, path string) any {
	var v any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[part]
	}
	return v
}

func TestKeyLifecycleFields(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	scope := map[string]any{"agent_ids": []string{"a1"}}

	res := h.do("POST", "/api/v1/api-keys", admin, map[string]any{
		"name": "billing-bot", "permission_scope": scope, "external_id": "cus_42",
		"meta":       map[string]any{"plan": "pro", "seats": 3},
		"rate_limit": map[string]any{"limit": 100, "window_ms": 60000},
		"credits":    map[string]any{"remaining": 500, "refill": map[string]any{"amount": 500, "interval_ms": 86400000}},
	})
	wantStatus(t, "create", res, http.StatusCreated)
	key := res.json(t)
	id := key["id"].(string)
	for path, want := range map[string]any{
		"external_id": "cus_42", "meta.plan": "pro", "meta.seats": 3.0, "rate_limit.limit": 100.0, "rate_limit.window_ms": 60000.0,
		"credits.remaining": 500.0, "credits.refill.amount": 500.0, "credits.refill.interval_ms": 86400000.0,
		"credits.refilled_at": "2026-11-25T12:00:00Z", "rate_limit_set_by.admin": true, "credits_set_by.user_id": "root",
	} {
		if got := member(key, path); got != want {
			t.Errorf("created key: %s = %v, want %v", path, got, want)
		}
	}

	// Each member changes alone; null clears.
	for _, tc := range []struct {
		note string
		body map[string]any
		path string
		want any
	}{
		{"top up the credits", map[string]any{"credits": map[string]any{"remaining": 1000}}, "credits.remaining", 1000.0},
		{"a top-up without a refill drops the refill", map[string]any{"credits": map[string]any{"remaining": 1000}}, "credits.refill", nil},
		{"clear the credits", map[string]any{"credits": nil}, "credits", nil},
		{"change the rate limit", map[string]any{"rate_limit": map[string]any{"limit": 5, "window_ms": 1000}}, "rate_limit.limit", 5.0},
		{"clear the rate limit", map[string]any{"rate_limit": nil}, "rate_limit", nil},
		{"replace the meta", map[string]any{"meta": map[string]any{"plan": "free"}}, "meta.plan", "free"},
		{"clear the meta", map[string]any{"meta": nil}, "meta", nil},
		{"clear the external id", map[string]any{"external_id": nil}, "external_id", nil},
	} {
		res := h.do("PATCH", "/api/v1/api-keys/"+id, admin, tc.body)
		wantStatus(t, tc.note, res, http.StatusOK)
		if got := member(res.json(t), tc.path); got != tc.want {
			t.Errorf("%s: %s = %v, want %v", tc.note, tc.path, got, tc.want)
		}
	}
	got := h.do("GET", "/api/v1/api-keys/"+id, admin, nil).json(t)
	if got["credits"] != nil || got["meta"] != nil || got["rate_limit"] != nil || got["external_id"] != nil {
		t.Fatalf("GET after clearing: %v", got)
	}

	// The trail records what the limits were set to.
	h.flushAudit()
	events := h.do("GET", "/api/v1/audit-events?key_id="+id+"&action=api_key.updated&limit=100", admin, nil).json(t)["data"].([]any)
	found := false
	for _, ev := range events {
		d := ev.(map[string]any)["details"].(map[string]any)
		if c, ok := d["credits"].(map[string]any); ok && c["remaining"] == 1000.0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no api_key.updated event records the top-up: %v", events)
	}
}

func TestKeyLifecycleValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	id, _ := h.createKey(jwt, "k", map[string]any{"agent_ids": []string{"a1"}})
	scope := map[string]any{"agent_ids": []string{"a1"}}
	for _, tc := range []struct {
		note, field string
		member      string
		value       any
	}{
		{"a rate limit of 0", "rate_limit.limit", "rate_limit", map[string]any{"limit": 0, "window_ms": 1000}},
		{"a rate limit without a window", "rate_limit.window_ms", "rate_limit", map[string]any{"limit": 1}},
		{"a rate limit's unknown member", "rate_limit.burst", "rate_limit", map[string]any{"limit": 1, "window_ms": 1000, "burst": 2}},
		{"a fractional limit", "rate_limit.limit", "rate_limit", map[string]any{"limit": 1.5, "window_ms": 1000}},
		{"credits without remaining", "credits.remaining", "credits", map[string]any{}},
		{"negative credits", "credits.remaining", "credits", map[string]any{"remaining": -1}},
		{"a refill without an interval", "credits.refill.interval_ms", "credits", map[string]any{"remaining": 1, "refill": map[string]any{"amount": 1}}},
		{"meta as a list", "meta", "meta", []any{"x"}},
		{"meta over 4 KiB", "meta", "meta", map[string]any{"x": strings.Repeat("y", 4100)}},
		{"an external id that is not a string", "external_id", "external_id", 42},
		{"an empty external id", "external_id", "external_id", ""},
	} {
		res := h.do("POST", "/api/v1/api-keys", jwt, map[string]any{"name": "n", "permission_scope": scope, tc.member: tc.value})
		wantProblem(t, "create: "+tc.note, res, 422, "invalid", tc.field)
		res = h.do("PATCH", "/api/v1/api-keys/"+id, jwt, map[string]any{tc.member: tc.value})
		wantProblem(t, "update: "+tc.note, res, 422, "invalid", tc.field)
	}
	wantProblem(t, "an empty external_id filter", h.do("GET", "/api/v1/api-keys?external_id=", jwt, nil), 422, "invalid", "external_id")
}

func TestListKeysByExternalID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	scope := map[string]any{"agent_ids": []string{"a1"}}
	a, _ := h.createKey(admin, "a", scope, "external_id", "cus_1")
	h.createKey(admin, "b", scope, "external_id", "cus_2")
	h.createKey(h.jwt("t2", "root", "admin"), "c", scope, "external_id", "cus_1")
	page := h.do("GET", "/api/v1/api-keys?external_id=cus_1", admin, nil).json(t)["data"].([]any)
	if len(page) != 1 || page[0].(map[string]any)["id"] != a {
		t.Fatalf("keys of cus_1 in t1: %v", page)
	}
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	alice := h.jwt("t1", "alice")
	scope := map[string]any{"flow_ids": []string{"f1"}}
	id, oldToken := h.createKey(alice, "k", scope, "meta", map[string]any{"plan": "pro"},
		"rate_limit", map[string]any{"limit": 1000, "window_ms": 1000})
	allowed := func(token string) string {
		t.Helper()
		return h.authorize(token, "flow", "f1", "read")["code"].(string)
	}
	allowed(oldToken) // cached as the key's token

	res := h.do("POST", "/api/v1/api-keys/"+id+"/rotate", alice, map[string]any{"grace_period_seconds": 60})
	wantStatus(t, "rotate", res, http.StatusOK)
	if res.header.Get("Cache-Control") != "no-store" {
		t.Error("the answer carrying a token must not be cached")
	}
	rotated := res.json(t)
	newToken := rotated["token"].(string)
	if newToken == oldToken || rotated["id"] != id || rotated["name"] != "k" || member(rotated, "meta.plan") != "pro" ||
		member(rotated, "rate_limit.limit") != 1000.0 || member(rotated, "permission_scope.flow_ids") == nil ||
		rotated["rotated_at"] != "2026-11-25T12:00:00Z" || rotated["previous_token_expires_at"] != "2026-11-25T12:01:00Z" ||
		rotated["start"] != newToken[:8] {
		t.Fatalf("rotated key: %v", rotated)
	}
	got := h.do("GET", "/api/v1/api-keys/"+id, alice, nil).json(t)
	if got["rotated_at"] != "2026-11-25T12:00:00Z" || got["previous_token_expires_at"] != "2026-11-25T12:01:00Z" || got["token"] != nil {
		t.Fatalf("GET after the rotation: %v", got)
	}
	if allowed(oldToken) != "ALLOWED" || allowed(newToken) != "ALLOWED" {
		t.Fatal("both tokens must work within the grace period")
	}
	h.clock.Advance(time.Minute)
	if code := allowed(oldToken); code != "KEY_INVALID" {
		t.Fatalf("the previous token after its grace: %s", code)
	}
	if allowed(newToken) != "ALLOWED" {
		t.Fatal("the new token after the grace")
	}

	// Without a grace period (and without a body), the previous token
	// stops at once.
	res = h.do("POST", "/api/v1/api-keys/"+id+"/rotate", alice, nil)
	wantStatus(t, "rotate without a body", res, http.StatusOK)
	if code := allowed(newToken); code != "KEY_INVALID" {
		t.Fatalf("the token replaced without a grace: %s", code)
	}
	if allowed(res.json(t)["token"].(string)) != "ALLOWED" {
		t.Fatal("the newest token")
	}

	wantProblem(t, "a grace over 7 days", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", alice, map[string]any{"grace_period_seconds": 604801}), 422, "invalid", "grace_period_seconds")
	wantProblem(t, "a negative grace", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", alice, map[string]any{"grace_period_seconds": -1}), 422, "invalid", "grace_period_seconds")
	wantProblem(t, "an unknown member", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", alice, map[string]any{"grace": 1}), 422, "invalid", "grace")
	wantProblem(t, "another user's key", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", h.jwt("t1", "bob"), nil), 403, "forbidden", "")
	wantProblem(t, "another tenant's key", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", h.jwt("t2", "alice", "admin"), nil), 404, "not_found", "")
	wantStatus(t, "an admin rotates a member's key", h.do("POST", "/api/v1/api-keys/"+id+"/rotate", h.jwt("t1", "root", "admin"), nil), 200)

	h.flushAudit()
	events := h.do("GET", "/api/v1/audit-events?action=api_key.rotated", h.jwt("t1", "root", "admin"), nil).json(t)["data"].([]any)
	if len(events) != 3 {
		t.Fatalf("%d api_key.rotated events, want 3", len(events))
	}
	first := events[2].(map[string]any)
	if member(first, "details.grace_period_seconds") != 60.0 || member(first, "details.previous_token_expires_at") != "2026-11-25T12:01:00Z" {
		t.Fatalf("the first rotation's event: %v", first)
	}
	for _, row := range auditRowsAsText(t, h.db) {
		for _, secret := range []string{oldToken, newToken, authz.HashToken(oldToken), authz.HashToken(newToken)} {
			if strings.Contains(row, secret) {
				t.Fatalf("a token or its hash reached the audit trail: %s", row)
			}
		}
	}
}
