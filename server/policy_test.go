package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestPolicyStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	for _, tc := range []struct {
		note string
		jwt  string
	}{
		{"a tenant admin", h.jwt("t1", "alice", "admin")},
		{"a platform admin", h.jwt("ops", "pat", "platform_admin")},
	} {
		res := h.do("GET", "/api/v1/policy", tc.jwt, nil)
		wantStatus(t, tc.note, res, 200)
		m := res.json(t)
		rev, _ := m["revision"].(string)
		if !strings.HasPrefix(rev, "sha256:") || rev != h.app.Engine.Revision() || m["source"] != "embedded" ||
			m["last_error"] != nil || m["last_error_at"] != nil || m["loaded_at"] != "2026-11-25T12:00:00Z" {
			t.Errorf("%s: %v", tc.note, m)
		}
	}
	wantProblem(t, "a member", h.do("GET", "/api/v1/policy", h.jwt("t1", "bob"), nil), 403, "forbidden", "")
	wantProblem(t, "no JWT", h.do("GET", "/api/v1/policy", "", nil), 401, "unauthorized", "")
	wantProblem(t, "an API key", h.do("GET", "/api/v1/policy", "pk_nope", nil), 401, "unauthorized", "")
}

// TestDecisionLogsRecordEveryDecision: with KEYGATE_DECISION_LOG a file,
// every decision of /v1/authorize and of the middleware is a line in
// OPA's decision-log shape, the refusals too, and no line holds a token or
// its hash.
func TestDecisionLogsRecordEveryDecision(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "decisions.log")
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.DecisionLog = "file:" + path })
	_, token := h.createKey(h.jwt("t1", "alice"), "k", map[string]any{"flow_ids": []string{"f1"}, "vector_store_ids": []string{"docs"}})

	ids := map[string]bool{}
	for _, id := range []string{"f1", "f2"} {
		ids[h.authorize(token, "flow", id, "read")["decision_id"].(string)] = true
	}
	batch := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": []any{
		map[string]any{"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"},
		map[string]any{"resource": map[string]any{"type": "agent", "id": "a1"}, "action": "read"},
	}})
	ids[batch.json(t)["decision_id"].(string)] = true
	unknown := "pk_" + strings.Repeat("A", 43) // well-formed length, bad checksum
	ids[h.authorize(unknown, "flow", "f1", "read")["decision_id"].(string)] = true

	// Forward auth: allowed, denied by the scope, and a request the http
	// policy maps to no check; and a key its own rate limit refuses.
	for _, f := range []struct {
		method, uri string
		status      int
	}{{"GET", "/flows/f1", 200}, {"GET", "/flows/f2?secret=s3cr3t", 403}, {"DELETE", "/agents/a1?secret=s3cr3t", 403}} {
		res := h.forward("GET", "", "X-API-Key", token, "X-Forwarded-Method", f.method, "X-Forwarded-Uri", f.uri)
		wantStatus(t, "forward auth "+f.method+" "+f.uri, res, f.status)
		id := res.header.Get(server.HeaderDecisionID)
		if f.status != 200 {
			var p server.Problem
			if err := json.Unmarshal(res.body, &p); err != nil {
				t.Fatal(err)
			}
			id = p.DecisionID
		}
		ids[id] = true
	}
	_, limited := h.createKey(h.jwt("t1", "alice"), "limited", map[string]any{"flow_ids": []string{"f1"}},
		"rate_limit", map[string]any{"limit": 1, "window_ms": 60000})
	for range 2 {
		ids[h.authorize(limited, "flow", "f1", "read")["decision_id"].(string)] = true
	}

	r := gin.New()
	r.GET("/stores/:id", server.RequireAPIKey(h.svc), server.RequirePermission(h.svc, authz.ResourceVectorStore, "query", server.Param("id")),
		func(c *gin.Context) { c.String(200, "ok") })
	req := httptest.NewRequest("GET", "/stores/docs", nil)
	req.Header.Set("X-API-Key", token)
	r.ServeHTTP(httptest.NewRecorder(), req)

	if err := h.app.DecisionLog.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if strings.Contains(text, token) || strings.Contains(text, authz.HashToken(token)) || strings.Contains(text, unknown) {
		t.Fatal("the decision log holds a token or its hash")
	}
	if strings.Contains(text, "s3cr3t") {
		t.Fatal("the decision log holds a forwarded request's query")
	}
	sources := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var ev struct {
			DecisionID string            `json:"decision_id"`
			Path       string            `json:"path"`
			Labels     map[string]string `json:"labels"`
			Custom     map[string]any    `json:"custom"`
			Result     any               `json:"result"`
			Input      map[string]any    `json:"input"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		delete(ids, ev.DecisionID)
		sources[ev.Custom["source"].(string)+" "+ev.Custom["code"].(string)]++
		if ev.Custom["source"] == authz.SourceForwardAuth {
			forwarded, _ := ev.Custom["http"].(map[string]any)
			if forwarded["method"] == "DELETE" {
				// Mapped to no check: the http policy's decision, with the
				// input it saw.
				if ev.Path != "keygate/http/decision" || ev.Input["path"] != "/agents/a1" || forwarded["path"] != "/agents/a1" {
					t.Errorf("an unmapped forwarded request: %s", sc.Bytes())
				}
			} else if ev.Path != "keygate/authz/decision" || forwarded["method"] != "GET" || ev.Input["resource"] == nil {
				t.Errorf("a forwarded request mapped to a check: %s", sc.Bytes())
			}
		}
		if ev.Labels["version"] != "test" || ev.Labels["id"] == "" || ev.Result == nil || ev.Input == nil {
			t.Errorf("line %d: %s", lines, sc.Bytes())
		}
	}
	want := map[string]int{"authorize ALLOWED": 2, "authorize DENIED": 2, "authorize KEY_INVALID": 1, "authorize RATE_LIMITED": 1,
		"middleware ALLOWED": 1, "forward_auth ALLOWED": 1, "forward_auth DENIED": 2}
	if lines != 10 || len(ids) != 0 || len(sources) != len(want) {
		t.Fatalf("%d lines, decisions not logged %v, by source and code %v; want %v", lines, ids, sources, want)
	}
	for k, n := range want {
		if sources[k] != n {
			t.Errorf("%s: %d events, want %d", k, sources[k], n)
		}
	}
}
