package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
	"google.golang.org/grpc/codes"
)

var forwardScope = map[string]any{"agent_ids": []string{"a1"}, "flow_ids": []string{"report-*"}, "vector_store_ids": []string{"docs"}}

// forward asks /v1/forward-auth as a gateway would: method and path of
// the request, then header pairs.
func (h *harness) forward(method, path string, headers ...string) response {
	h.t.Helper()
	return h.do(method, server.ForwardAuthPath+path, "", nil, headers...)
}

// wantAllowed checks a 200 carrying the key's identity for the upstream.
func wantAllowed(t *testing.T, note string, res response, keyID, tenant, user string) {
	t.Helper()
	wantStatus(t, note, res, http.StatusOK)
	got := [4]string{res.header.Get(server.HeaderKeyID), res.header.Get(server.HeaderTenantID), res.header.Get(server.HeaderUserID)}
	if got != [4]string{keyID, tenant, user} || !authz.ValidID(res.header.Get(server.HeaderDecisionID)) {
		t.Fatalf("%s: identity headers %v, decision %q; want %s %s %s and a decision id", note, got, res.header.Get(server.HeaderDecisionID), keyID, tenant, user)
	}
	if len(res.body) != 0 || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%s: body %q, Cache-Control %q; want none and no-store", note, res.body, res.header.Get("Cache-Control"))
	}
}

// wantRefused checks a refusal: its status, problem code, the reason it
// gives and, for 401, the challenge.
func wantRefused(t *testing.T, note string, res response, status int, code, reason string) server.Problem {
	t.Helper()
	wantProblem(t, note, res, status, code, "")
	var p server.Problem
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Detail, reason) {
		t.Fatalf("%s: detail %q, want it to say %q", note, p.Detail, reason)
	}
	if (status == http.StatusUnauthorized) != (res.header.Get("WWW-Authenticate") != "") {
		t.Fatalf("%s: WWW-Authenticate %q with status %d", note, res.header.Get("WWW-Authenticate"), status)
	}
	if res.header.Get(server.HeaderKeyID) != "" {
		t.Fatalf("%s: a refusal names a key", note)
	}
	return p
}

// TestForwardAuth: nginx's, Traefik's and Envoy's ways of asking, each
// answered from the key and the http policy's mapping.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	keyID, token := h.createKey(h.jwt("t1", "alice"), "gateway", forwardScope)
	_, other := h.createKey(h.jwt("t2", "bob"), "other-tenant", forwardScope)
	bearer := "Bearer " + token

	wantAllowed(t, "nginx", h.forward("GET", "", "Authorization", bearer,
		"X-Original-Method", "POST", "X-Original-URI", "/agents/a1/run?verbose=1"), keyID, "t1", "alice")
	res := h.forward("GET", "", "X-API-Key", token, "X-Forwarded-Method", "PUT", "X-Forwarded-Uri", "/vector-stores/docs/items/7")
	wantAllowed(t, "Traefik, X-API-Key", res, keyID, "t1", "alice")
	if got := res.header.Get("X-Envoy-Auth-Headers-To-Remove"); got != "x-api-key" {
		t.Fatalf("Envoy is told to remove %q, want the key's header", got)
	}
	wantAllowed(t, "Envoy: the request itself", h.forward("POST", "/flows/report-daily/run", "Authorization", bearer), keyID, "t1", "alice")
	wantAllowed(t, "both gateways' headers, agreeing", h.forward("GET", "", "Authorization", bearer,
		"X-Original-URI", "/agents/a1", "X-Forwarded-Uri", "/agents/a1"), keyID, "t1", "alice")
	res = h.forward("GET", "/agents/a1", "Authorization", "Bearer "+other)
	wantStatus(t, "another tenant's key", res, http.StatusOK)
	if got := res.header.Get("X-Envoy-Auth-Headers-To-Remove"); got != "authorization" {
		t.Fatalf("Envoy is told to remove %q, want the key's header", got)
	}
	if res.header.Get(server.HeaderTenantID) != "t2" {
		t.Fatalf("another tenant's key answered for tenant %q", res.header.Get(server.HeaderTenantID))
	}

	p := wantRefused(t, "denied by the key's scope", h.forward("GET", "", "Authorization", bearer, "X-Original-URI", "/agents/a2"),
		http.StatusForbidden, "forbidden", `agent "a2" is not in the key's agent_ids`)
	if len(p.Reasons) != 1 || !authz.ValidID(p.DecisionID) {
		t.Fatalf("a denial's problem: reasons %v, decision %q", p.Reasons, p.DecisionID)
	}
	wantRefused(t, "not mapped", h.forward("DELETE", "/agents/a1", "Authorization", bearer),
		http.StatusForbidden, "forbidden", "method DELETE is not mapped on /agents/{id}")
	wantRefused(t, "nothing to map", h.forward("GET", "", "Authorization", bearer),
		http.StatusForbidden, "forbidden", `path "/" names no resource`)
	wantRefused(t, "a path the backend could read otherwise", h.forward("GET", "", "Authorization", bearer, "X-Original-URI", "/agents/a1/..%2F..%2Fadmin"),
		http.StatusForbidden, "forbidden", "encoded slash")
	wantRefused(t, "a client's header beside the gateway's", h.forward("GET", "", "Authorization", bearer,
		"X-Original-URI", "/agents/a2", "X-Forwarded-Uri", "/agents/a1"), http.StatusForbidden, "forbidden", "names the forwarded method or URI twice")
	wantRefused(t, "methods that disagree", h.forward("GET", "", "Authorization", bearer,
		"X-Original-Method", "GET", "X-Forwarded-Method", "DELETE", "X-Original-URI", "/vector-stores/docs"), http.StatusForbidden, "forbidden", "twice")
	wantRefused(t, "a URI too long", h.forward("GET", "", "Authorization", bearer, "X-Original-URI", "/agents/a1/"+strings.Repeat("x", authz.MaxHTTPURILen)),
		http.StatusForbidden, "forbidden", "over 8192 bytes")

	wantRefused(t, "no key", h.forward("GET", "/agents/a1"), http.StatusUnauthorized, "unauthorized", "an API key is required")
	wantRefused(t, "no key, nothing mapped", h.forward("GET", "/admin"), http.StatusUnauthorized, "unauthorized", "an API key is required")
	bad, _ := authz.NewToken(nil)
	wantRefused(t, "unknown key", h.forward("GET", "/agents/a1", "Authorization", "Bearer "+bad), http.StatusUnauthorized, authz.KeyInvalid, "not valid")
	wantRefused(t, "malformed key", h.forward("GET", "/agents/a1", "X-API-Key", "pk_nope"), http.StatusUnauthorized, authz.KeyInvalid, "not valid")
	wantStatus(t, "disable the key", h.do("PATCH", "/api/v1/api-keys/"+keyID, h.jwt("t1", "alice"), map[string]any{"enabled": false}), http.StatusOK)
	wantRefused(t, "disabled key", h.forward("GET", "/agents/a1", "Authorization", bearer), http.StatusUnauthorized, authz.KeyDisabled, "disabled")

	// Each denial by the policy is one line of the audit trail, tagged with
	// the surface; a query never reaches it.
	h.flushAudit()
	res = h.do("GET", "/api/v1/audit-events?action=authorization.denied", h.jwt("t1", "admin", "admin"), nil)
	wantStatus(t, "audit trail", res, http.StatusOK)
	var page struct {
		Data []authz.AuditEvent `json:"data"`
	}
	if err := json.Unmarshal(res.body, &page); err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, ev := range page.Data {
		if ev.Details["source"] != authz.SourceForwardAuth || ev.ActorID != keyID {
			t.Fatalf("denial %+v, want one by the key through forward_auth", ev)
		}
		targets[ev.TargetType+" "+ev.TargetID] = true
	}
	for _, want := range []string{"agent a2", "http_request DELETE /agents/a1", "http_request GET /", "http_request GET /agents/a1/..%2F..%2Fadmin"} {
		if !targets[want] {
			t.Errorf("no denial of %q in the trail: %v", want, targets)
		}
	}
	if len(page.Data) != 7 {
		t.Errorf("%d denials recorded, want one per refused request with a live key (7)", len(page.Data))
	}
}

// TestForwardAuthOverBudget: failed authentications through forward auth
// count against the address's budget like any other; past it the answer is
// 429 with Retry-After, and a live key keeps working.
func TestForwardAuthOverBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.AuthFailureBurst = 3 })
	keyID, token := h.createKey(h.jwt("t1", "alice"), "gateway", forwardScope)
	wantAllowed(t, "live key", h.forward("GET", "/agents/a1", "X-API-Key", token), keyID, "t1", "alice")
	for range 3 {
		bad, _ := authz.NewToken(nil)
		wantStatus(t, "bad key", h.forward("GET", "/agents/a1", "X-API-Key", bad), http.StatusUnauthorized)
	}
	bad, _ := authz.NewToken(nil)
	wantRateLimited(t, "over budget", h.forward("GET", "/agents/a1", "X-API-Key", bad))
	wantAllowed(t, "the live key from the same address", h.forward("GET", "/agents/a1", "X-API-Key", token), keyID, "t1", "alice")
}

// fixedDecider answers every decision request with code, as the per-key
// limits answer over a key's rate or credits, and says when to try again.
type fixedDecider struct {
	code  string
	after time.Duration
}

func (d fixedDecider) Decide(_ context.Context, req authz.DecisionRequest) (*authz.DecisionResult, error) {
	return &authz.DecisionResult{DecisionID: "d1", Code: d.code, Principal: req.Principal, RetryAfter: d.after,
		Decisions: []authz.Decision{{Reasons: []string{"the key's limit says " + d.code}}}}, nil
}

// TestPerKeyLimitCodesAre429: a decision answered RATE_LIMITED or
// USAGE_EXCEEDED is a 429 on the surfaces that answer with HTTP statuses,
// with Retry-After when a wait helps (the rate limit's, the next refill),
// without it for credits that are never refilled; DENIED stays a 403.
func TestPerKeyLimitCodesAre429(t *testing.T) {
	t.Parallel()
	p := &authz.Principal{KeyID: "k1", TenantID: "t1", UserID: "u1"}
	for _, tc := range []struct {
		code       string
		after      time.Duration
		status     int
		retryAfter string
	}{
		{"RATE_LIMITED", 1500 * time.Millisecond, http.StatusTooManyRequests, "2"},
		{"USAGE_EXCEEDED", time.Hour, http.StatusTooManyRequests, "3600"},
		{"USAGE_EXCEEDED", 0, http.StatusTooManyRequests, ""},
		{authz.CodeDenied, 0, http.StatusForbidden, ""},
	} {
		d := fixedDecider{tc.code, tc.after}
		r := gin.New()
		r.GET("/stores/:id", func(c *gin.Context) {
			c.Request = c.Request.WithContext(authz.NewContextWithPrincipal(c.Request.Context(), p))
		}, server.RequirePermission(d, authz.ResourceVectorStore, "query", server.Param("id")),
			func(c *gin.Context) { c.Status(http.StatusNoContent) })
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", "/stores/s1", nil))
		if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retryAfter ||
			!strings.Contains(rec.Body.String(), "the key's limit says "+tc.code) {
			t.Errorf("%s: %d, Retry-After %q: %s", tc.code, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
		}
	}
}

// TestForwardAuthPerKeyLimits: a key's own rate limit and credits hold
// through forward auth and ext_authz as through /v1/authorize, since both
// decide with Decide: 429 with the code, the reasons and the decision id,
// and Retry-After when a wait helps.
func TestForwardAuthPerKeyLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	alice := h.jwt("t1", "alice")
	_, limited := h.createKey(alice, "limited", forwardScope, "rate_limit", map[string]any{"limit": 1, "window_ms": 60000})
	_, paid := h.createKey(alice, "paid", forwardScope, "credits", map[string]any{"remaining": 1})

	wantStatus(t, "within the rate limit", h.forward("GET", "/agents/a1", "X-API-Key", limited), http.StatusOK)
	res := h.forward("GET", "/agents/a1", "X-API-Key", limited)
	p := wantRefused(t, "over the rate limit", res, http.StatusTooManyRequests, authz.CodeRateLimited, "over its rate limit")
	if got := res.header.Get("Retry-After"); got != "60" || len(p.Reasons) != 1 || !authz.ValidID(p.DecisionID) {
		t.Fatalf("over the rate limit: Retry-After %q, problem %+v", got, p)
	}
	wantStatus(t, "one credit", h.forward("POST", "/flows/report-daily/run", "X-API-Key", paid), http.StatusOK)
	res = h.forward("POST", "/flows/report-daily/run", "X-API-Key", paid)
	wantRefused(t, "out of credits", res, http.StatusTooManyRequests, authz.CodeUsageExceeded, "no credits left")
	if got := res.header.Get("Retry-After"); got != "" {
		t.Fatalf("credits never refilled: Retry-After %q, want none", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	grpcRes, err := extAuthzClient(t, h).Check(ctx, checkRequest("GET", "/agents/a1", map[string]string{"x-api-key": limited}))
	if err != nil {
		t.Fatal(err)
	}
	d := grpcRes.GetDeniedResponse()
	var gp server.Problem
	if err := json.Unmarshal([]byte(d.GetBody()), &gp); err != nil {
		t.Fatal(err)
	}
	if d.GetStatus().GetCode() != typev3.StatusCode_TooManyRequests || grpcRes.GetStatus().GetCode() != int32(codes.ResourceExhausted) ||
		headerValues(d.GetHeaders())["retry-after"] == "" || gp.Code != authz.CodeRateLimited {
		t.Fatalf("ext_authz over the rate limit: HTTP %v, gRPC %v, headers %v, problem %+v", d.GetStatus(), grpcRes.GetStatus(),
			headerValues(d.GetHeaders()), gp)
	}
}
