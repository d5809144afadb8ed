package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
)

// call sends a JSON request to an instance and decodes its answer.
func call(t *testing.T, a *App, method, path, jwt string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if jwt != "" {
		req.Header.Set("Authorization", "Bearer "+jwt)
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m
}

// TestKeyLifecycleAcrossInstances: on Postgres, what one instance does to a
// key reaches another through the change feed: a rotation without grace
// stops the previous token there at once, a grace period ends there on its
// own, and a top-up of credits lets a key it had found exhausted through.
func TestKeyLifecycleAcrossInstances(t *testing.T) {
	t.Parallel()
	dbURL := storagetest.PostgresURL(t)
	a, b := newOutageApp(t, dbURL), newOutageApp(t, dbURL)
	for _, x := range []*App{a, b} {
		x.Start(context.Background())
	}
	waitUntil(t, "both feeds to listen", func() bool { return a.Feed.Connected() && b.Feed.Connected() })
	admin, err := server.SignHS256(a.JWT, "t1", "root", []string{"admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	status, key := call(t, a, "POST", "/api/v1/api-keys", admin, map[string]any{"name": "k",
		"permission_scope": map[string]any{"flow_ids": []string{"f1"}}, "credits": map[string]any{"remaining": 1}})
	if status != 201 {
		t.Fatalf("create: %d %v", status, key)
	}
	id, token := key["id"].(string), key["token"].(string)
	code := func(x *App, token string) string {
		t.Helper()
		_, m := call(t, x, "POST", "/v1/authorize", "", map[string]any{"api_key": token,
			"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"})
		c, _ := m["code"].(string)
		return c
	}

	if c := code(b, token); c != "ALLOWED" {
		t.Fatalf("on b: %s", c)
	}
	if c := code(b, token); c != "USAGE_EXCEEDED" {
		t.Fatalf("on b, spent: %s", c)
	}
	if status, _ := call(t, a, "PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{"credits": map[string]any{"remaining": 1_000_000}}); status != 200 {
		t.Fatalf("top-up on a: %d", status)
	}
	waitUntil(t, "b to see the top-up", func() bool { return code(b, token) == "ALLOWED" })

	status, rotated := call(t, a, "POST", "/api/v1/api-keys/"+id+"/rotate", admin, map[string]any{"grace_period_seconds": 0})
	if status != 200 {
		t.Fatalf("rotate on a: %d %v", status, rotated)
	}
	waitUntil(t, "b to refuse the replaced token", func() bool { return code(b, token) == "KEY_INVALID" })
	second := rotated["token"].(string)
	if c := code(b, second); c != "ALLOWED" {
		t.Fatalf("the new token on b: %s", c)
	}

	status, rotated = call(t, a, "POST", "/api/v1/api-keys/"+id+"/rotate", admin, map[string]any{"grace_period_seconds": 2})
	if status != 200 {
		t.Fatalf("rotate with a grace on a: %d %v", status, rotated)
	}
	stops, err := time.Parse(time.RFC3339Nano, rotated["previous_token_expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if c := code(b, second); c != "ALLOWED" && time.Now().Before(stops) {
		t.Fatalf("the previous token on b within its grace: %s", c)
	}
	waitUntil(t, "the grace to end on b", func() bool { return code(b, second) == "KEY_INVALID" })
	if time.Now().Before(stops) {
		t.Fatal("b refused the previous token before its grace ended")
	}
	if c := code(b, rotated["token"].(string)); c != "ALLOWED" {
		t.Fatalf("the newest token on b: %s", c)
	}
}

// TestRedisSettings: a Redis URL that does not parse stops start-up naming
// the setting, never echoing the URL; a Redis that does not answer is shown
// by /readyz, and decisions go on.
func TestRedisSettings(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.DataDir, cfg.JWTSecret = t.TempDir(), "outage-test-secret-of-at-least-32-bytes"
	cfg.RedisURL = "http://user:s3cret@example.com"
	_, err := New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "KEYGATE_REDIS_URL") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("New: %v", err)
	}

	a := newOutageApp(t, "", func(c *Config) { c.RedisURL = "redis://127.0.0.1:1/0" })
	admin, err := server.SignHS256(a.JWT, "t1", "root", []string{"admin"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, key := call(t, a, "POST", "/api/v1/api-keys", admin, map[string]any{"name": "k",
		"permission_scope": map[string]any{"flow_ids": []string{"f1"}}, "rate_limit": map[string]any{"limit": 1, "window_ms": 60000}})
	var codes []any
	for range 2 {
		_, m := call(t, a, "POST", "/v1/authorize", "", map[string]any{"api_key": key["token"],
			"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"})
		codes = append(codes, m["code"])
	}
	if codes[0] != "ALLOWED" || codes[1] != "RATE_LIMITED" {
		t.Fatalf("codes %v: without Redis the instance counts alone", codes)
	}
	if _, body := readyz(t, a); fmt.Sprint(body["rate_limits"]) != "map[counted:redis redis:failing_open]" {
		t.Fatalf("readyz: %v", body["rate_limits"])
	}
}
