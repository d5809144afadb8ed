package server_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/mcp"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestRateLimitedKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	_, token := h.createKey(jwt, "k", map[string]any{"flow_ids": []string{"f1"}}, "rate_limit", map[string]any{"limit": 2, "window_ms": 60000})

	first := h.authorize(token, "flow", "f1", "read")
	if first["code"] != "ALLOWED" || member(first, "rate_limit.limit") != 2.0 || member(first, "rate_limit.remaining") != 1.0 ||
		member(first, "rate_limit.reset_at") != "2026-11-25T12:00:30Z" {
		t.Fatalf("first: %v", first)
	}
	// A denial counts too: a request is a request.
	if d := h.authorize(token, "flow", "f2", "read"); d["code"] != "DENIED" || member(d, "rate_limit.remaining") != 0.0 {
		t.Fatalf("second: %v", d)
	}
	third := h.authorize(token, "flow", "f1", "read")
	if third["allowed"] != false || third["code"] != "RATE_LIMITED" || member(third, "rate_limit.remaining") != 0.0 ||
		member(third, "rate_limit.retry_after_ms") != 30000.0 || third["principal"] == nil ||
		!strings.Contains(third["reasons"].([]any)[0].(string), "rate limit of 2 requests per 1m0s") {
		t.Fatalf("third: %v", third)
	}
	// A batch is one request, every check refused.
	res := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": []any{
		map[string]any{"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"},
		map[string]any{"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "execute"}}})
	batch := res.json(t)
	if batch["code"] != "RATE_LIMITED" || len(batch["results"].([]any)) != 2 || member(batch["results"].([]any)[1].(map[string]any), "allowed") != false {
		t.Fatalf("batch: %v", batch)
	}
	h.clock.Advance(30 * time.Second)
	if d := h.authorize(token, "flow", "f1", "read"); d["code"] != "ALLOWED" {
		t.Fatalf("half a window later: %v", d)
	}

	// The middleware answers 429 with Retry-After.
	r := gin.New()
	r.GET("/flows/:id", server.RequireAPIKey(h.svc), server.RequirePermission(h.svc, authz.ResourceFlow, "read", server.Param("id")),
		func(c *gin.Context) { c.String(200, "ok") })
	req := httptest.NewRequest("GET", "/flows/f1", nil)
	req.Header.Set("X-API-Key", token)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "30" || !strings.Contains(rec.Body.String(), `"code":"RATE_LIMITED"`) {
		t.Fatalf("middleware: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}

func TestCreditsOnAuthorize(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	admin := h.jwt("t1", "root", "admin")
	id, token := h.createKey(admin, "k", map[string]any{"flow_ids": []string{"f1", "f2"}},
		"credits", map[string]any{"remaining": 3, "refill": map[string]any{"amount": 3, "interval_ms": 3600000}})
	batch := func() map[string]any {
		return h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token, "checks": []any{
			map[string]any{"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"},
			map[string]any{"resource": map[string]any{"type": "flow", "id": "f2"}, "action": "read"},
			map[string]any{"resource": map[string]any{"type": "flow", "id": "nope"}, "action": "read"}}}).json(t)
	}
	if d := h.authorize(token, "flow", "f1", "read"); d["code"] != "ALLOWED" || d["credits_remaining"] != 2.0 {
		t.Fatalf("one allowed check spends one: %v", d)
	}
	if d := h.authorize(token, "flow", "nope", "read"); d["code"] != "DENIED" || d["credits_remaining"] != nil {
		t.Fatalf("a denied check spends none: %v", d)
	}
	if b := batch(); b["code"] != "DENIED" || b["credits_remaining"] != 0.0 || member(b["results"].([]any)[0].(map[string]any), "allowed") != true {
		t.Fatalf("a batch spends one per allowed check: %v", b)
	}
	d := h.authorize(token, "flow", "f1", "read")
	if d["code"] != "USAGE_EXCEEDED" || d["allowed"] != false || d["credits_remaining"] != 0.0 ||
		!strings.Contains(d["reasons"].([]any)[0].(string), "no credits left; they are refilled at 2026-11-25T13:00:00Z") {
		t.Fatalf("out of credits: %v", d)
	}
	if b := batch(); b["code"] != "USAGE_EXCEEDED" || !strings.Contains(toString(b["results"]), "fewer") && !strings.Contains(toString(b["results"]), "no credits") {
		t.Fatalf("a batch out of credits: %v", b)
	}
	// Only an admin tops up credits an admin set (TestAdminsLimitsStick).
	wantProblem(t, "another member's top-up", h.do("PATCH", "/api/v1/api-keys/"+id, h.jwt("t1", "alice"), map[string]any{"credits": map[string]any{"remaining": 9}}), 403, "forbidden", "")
	wantStatus(t, "an admin's top-up", h.do("PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{"credits": map[string]any{"remaining": 1,
		"refill": map[string]any{"amount": 3, "interval_ms": 3600000}}}), 200)
	if d := h.authorize(token, "flow", "f1", "read"); d["code"] != "ALLOWED" || d["credits_remaining"] != 0.0 {
		t.Fatalf("after the top-up: %v", d)
	}
	if d := h.authorize(token, "flow", "f1", "read"); d["code"] != "USAGE_EXCEEDED" {
		t.Fatalf("spent again: %v", d)
	}
	h.clock.Advance(time.Hour)
	if d := h.authorize(token, "flow", "f1", "read"); d["code"] != "ALLOWED" || d["credits_remaining"] != 2.0 {
		t.Fatalf("after the refill: %v", d)
	}
}

func TestAdminsLimitsStick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	alice := h.jwt("t1", "alice")
	id, _ := h.createKey(alice, "k", map[string]any{"flow_ids": []string{"f1"}})
	admin := h.jwt("t1", "root", "admin")
	wantStatus(t, "an admin sets limits", h.do("PATCH", "/api/v1/api-keys/"+id, admin, map[string]any{
		"credits": map[string]any{"remaining": 10}, "rate_limit": map[string]any{"limit": 10, "window_ms": 1000}}), 200)
	for _, body := range []map[string]any{
		{"credits": map[string]any{"remaining": 11}}, {"credits": nil},
		{"rate_limit": map[string]any{"limit": 11, "window_ms": 1000}}, {"rate_limit": nil},
	} {
		wantProblem(t, "the owner loosens an admin's limit", h.do("PATCH", "/api/v1/api-keys/"+id, alice, body), 403, "forbidden", "")
	}
	wantStatus(t, "the owner tightens it", h.do("PATCH", "/api/v1/api-keys/"+id, alice, map[string]any{
		"credits": map[string]any{"remaining": 5}, "rate_limit": map[string]any{"limit": 5, "window_ms": 2000}}), 200)
}

// TestCreditsAreExactAcrossInstances: two instances on one database, N
// concurrent requests against N/2 credits: exactly N/2 are allowed.
func TestCreditsAreExactAcrossInstances(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		a, b := newHarness(t, db), newHarness(t, db)
		const n = 60
		_, token := a.createKey(a.jwt("t1", "root", "admin"), "k", map[string]any{"flow_ids": []string{"f1"}},
			"credits", map[string]any{"remaining": n / 2})
		var allowed, exceeded atomic.Int64
		var wg sync.WaitGroup
		for i := range n {
			h := []*harness{a, b}[i%2]
			wg.Go(func() {
				res := h.do("POST", "/v1/authorize", "", map[string]any{"api_key": token,
					"resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"})
				if res.status != 200 {
					t.Errorf("status %d: %s", res.status, res.body)
					return
				}
				switch res.json(t)["code"] {
				case "ALLOWED":
					allowed.Add(1)
				case "USAGE_EXCEEDED":
					exceeded.Add(1)
				}
			})
		}
		wg.Wait()
		if allowed.Load() != n/2 || exceeded.Load() != n/2 {
			t.Fatalf("%d allowed and %d refused for lack of credits, want %d each", allowed.Load(), exceeded.Load(), n/2)
		}
	})
}

func TestUsageHistory(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	jwt := h.jwt("t1", "alice")
	id, token := h.createKey(jwt, "k", map[string]any{"flow_ids": []string{"f1"}},
		"rate_limit", map[string]any{"limit": 3, "window_ms": 3600000}, "credits", map[string]any{"remaining": 1})
	h.authorize(token, "flow", "f1", "read") // allowed
	h.authorize(token, "flow", "f2", "read") // denied
	h.authorize(token, "flow", "f1", "read") // usage exceeded
	h.authorize(token, "flow", "f1", "read") // rate limited
	h.clock.Advance(time.Hour)
	h.authorize(token, "flow", "f2", "read") // denied, in the next hour
	jwt = h.jwt("t1", "alice")
	wantStatus(t, "disable", h.do("PATCH", "/api/v1/api-keys/"+id, jwt, map[string]any{"enabled": false}), 200)
	h.authorize(token, "flow", "f1", "read") // refused
	if err := h.app.Rollups.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	rep := h.do("GET", "/api/v1/api-keys/"+id+"/usage?since=2026-11-25T12:00:00Z&until=2026-11-25T14:00:00Z", jwt, nil)
	wantStatus(t, "usage", rep, 200)
	got := rep.json(t)
	data := got["data"].([]any)
	if len(data) != 2 || got["granularity"] != "hour" {
		t.Fatalf("usage: %v", got)
	}
	want := []map[string]any{
		{"start": "2026-11-25T12:00:00Z", "allowed": 1.0, "denied": 1.0, "rate_limited": 1.0, "usage_exceeded": 1.0, "refused": 0.0},
		{"start": "2026-11-25T13:00:00Z", "allowed": 0.0, "denied": 1.0, "rate_limited": 0.0, "usage_exceeded": 0.0, "refused": 1.0},
	}
	for i, w := range want {
		for k, v := range w {
			if data[i].(map[string]any)[k] != v {
				t.Fatalf("interval %d: %v, want %v", i, data[i], w)
			}
		}
	}
	if member(got, "total.denied") != 2.0 {
		t.Fatalf("total: %v", got["total"])
	}
	day := h.do("GET", "/api/v1/api-keys/"+id+"/usage?granularity=day", jwt, nil).json(t)
	if days := day["data"].([]any); len(days) != 30 || member(days[29].(map[string]any), "denied") != 2.0 || days[29].(map[string]any)["start"] != "2026-11-25T00:00:00Z" {
		t.Fatalf("days: %v", day)
	}
	for _, tc := range []struct{ note, query, field string }{
		{"an unknown granularity", "granularity=week", "granularity"},
		{"a bad time", "since=yesterday", "since"},
		{"since after until", "since=2026-11-25T12:00:00Z&until=2026-11-25T11:00:00Z", "since"},
		{"more than 31 days of hours", "since=2026-10-01T00:00:00Z&until=2026-11-25T00:00:00Z", "since"},
	} {
		wantProblem(t, tc.note, h.do("GET", "/api/v1/api-keys/"+id+"/usage?"+tc.query, jwt, nil), 422, "invalid", tc.field)
	}
	wantProblem(t, "another tenant's key", h.do("GET", "/api/v1/api-keys/"+id+"/usage", h.jwt("t2", "root", "admin"), nil), 404, "not_found", "")
}

func TestMetaInAnswers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	_, token := h.createKey(h.jwt("t1", "alice"), "k", map[string]any{"flow_ids": []string{"f1"}},
		"meta", map[string]any{"plan": "pro"}, "external_id", "cus_7")
	d := h.authorize(token, "flow", "f1", "read")
	if member(d, "principal.meta.plan") != "pro" || member(d, "principal.external_id") != "cus_7" {
		t.Fatalf("authorize: %v", d)
	}
	who := h.do("GET", "/v1/whoami", token, nil).json(t)
	if member(who, "meta.plan") != "pro" || who["external_id"] != "cus_7" {
		t.Fatalf("whoami: %v", who)
	}
	_, plain := h.createKey(h.jwt("t1", "alice"), "plain", map[string]any{"flow_ids": []string{"f1"}})
	if d := h.authorize(plain, "flow", "f1", "read"); member(d, "principal.meta") != nil || d["rate_limit"] != nil || d["credits_remaining"] != nil {
		t.Fatalf("a key without them: %v", d)
	}
}

func toString(v any) string {
	var b strings.Builder
	for _, r := range v.([]any) {
		for _, reason := range r.(map[string]any)["reasons"].([]any) {
			b.WriteString(reason.(string) + "\n")
		}
	}
	return b.String()
}

// TestLimitedKeyOnMCP: a tools/call over the key's rate limit or credits
// is a JSON-RPC error saying so; tools/list is not limited.
func TestLimitedKeyOnMCP(t *testing.T) {
	t.Parallel()
	h := newMCPHarness(t, storagetest.MustOpenSQLite(t))
	base := h.listen()
	admin := h.jwt("t1", "root", "admin")
	up := newTestUpstream(t, "search")
	h.createServer(admin, map[string]any{"name": "github", "url": up.URL})
	scope := map[string]any{"mcp_tool_ids": []string{"github__search"}}
	_, limited := h.createKey(admin, "limited", scope, "rate_limit", map[string]any{"limit": 1, "window_ms": 60000})
	_, paid := h.createKey(admin, "paid", scope, "credits", map[string]any{"remaining": 1})
	for _, tc := range []struct {
		token string
		code  int64
		data  string
	}{{limited, mcp.CodeRateLimited, `"code":"RATE_LIMITED"`}, {paid, mcp.CodeUsageExceeded, `"code":"USAGE_EXCEEDED"`}} {
		cs := mcpConnect(t, base, tc.token)
		for range 2 {
			for _, err := range cs.Tools(context.Background(), nil) {
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
			}
		}
		call := func() error {
			_, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "github__search", Arguments: map[string]any{"text": "hi"}})
			return err
		}
		if err := call(); err != nil {
			t.Fatalf("first call: %v", err)
		}
		var rpcErr *jsonrpc.Error
		if err := call(); !errors.As(err, &rpcErr) || rpcErr.Code != tc.code || !strings.Contains(string(rpcErr.Data), tc.data) {
			t.Fatalf("second call: %v, want JSON-RPC error %d", err, tc.code)
		}
	}
}
