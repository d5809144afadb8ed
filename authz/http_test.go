package authz_test

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// TestMapHTTP: the shipped mapping through the engine, and what keygate
// refuses before the policy sees it.
func TestMapHTTP(t *testing.T) {
	t.Parallel()
	e := newEngine(t, embeddedModules(t))
	check := func(typ authz.ResourceType, id, action string) *authz.Check {
		return &authz.Check{Resource: authz.Resource{Type: typ, ID: id}, Action: action}
	}
	tests := []struct {
		note, method, uri string
		want              *authz.Check
		reason            string // a substring of the only reason, when want is nil
	}{
		{"read an agent", "GET", "/agents/a1", check(authz.ResourceAgent, "a1", "read"), ""},
		{"the query is not the path", "POST", "/flows/f1/run?x=/agents/b2", check(authz.ResourceFlow, "f1", "execute"), ""},
		{"absolute form", "POST", "https://api.example.com/mcp-tools/github__search/call", check(authz.ResourceMCPTool, "github__search", "call"), ""},
		{"escapes are decoded", "DELETE", "/vector-stores/team%20docs/items", check(authz.ResourceVectorStore, "team docs", "write"), ""},
		{"an id with glob characters is only an id", "GET", "/agents/*", check(authz.ResourceAgent, "*", "read"), ""},
		{"not mapped", "PUT", "/agents/a1", nil, "method PUT is not mapped on /agents/{id}"},
		{"no resource", "GET", "/healthz", nil, `path "/healthz" names no resource`},
		{"dot segment", "GET", "/agents/a1/../b2", nil, "dot segment"},
		{"encoded dot segment", "GET", "/agents/a1/%2e%2e/b2", nil, "dot segment"},
		{"encoded slash", "GET", "/agents/a1%2F..%2Fb2", nil, "encoded slash"},
		{"backslash", "GET", `/agents/a1\..\b2`, nil, "backslash"},
		{"bad escape", "GET", "/agents/a%zz", nil, "invalid percent escape"},
		{"control character", "GET", "/agents/a%00b", nil, "control"},
		{"bidi override", "GET", "/agents/a%E2%80%AEb", nil, "bidirectional"},
		{"invalid UTF-8", "GET", "/agents/a%ffb", nil, "invalid UTF-8"},
		{"not a path", "GET", "agents/a1", nil, "neither a path nor"},
		{"another scheme", "GET", "ftp://h/agents/a1", nil, "neither a path nor"},
		{"empty URI", "GET", "", nil, "neither a path nor"},
		{"URI too long", "GET", "/agents/" + strings.Repeat("a", authz.MaxHTTPURILen), nil, "over 8192 bytes"},
		{"too many segments", "GET", "/agents/a1" + strings.Repeat("/x", authz.MaxHTTPSegments), nil, "more than 64 segments"},
		{"no method", "", "/agents/a1", nil, "method must be 1 to 32 bytes"},
		{"method not a token", "GE T", "/agents/a1", nil, "not an HTTP token"},
		{"method too long", strings.Repeat("G", 33), "/agents/a1", nil, "1 to 32 bytes"},
	}
	for _, tc := range tests {
		m, err := e.MapHTTP(context.Background(), authz.HTTPRequest{Method: tc.method, URI: tc.uri})
		if err != nil {
			t.Fatalf("%s: %v", tc.note, err)
		}
		switch {
		case tc.want != nil && (m.Check == nil || *m.Check != *tc.want):
			t.Errorf("%s: %+v, want the check %+v", tc.note, m, tc.want)
		case tc.want == nil && (m.Check != nil || len(m.Reasons) != 1 || !strings.Contains(m.Reasons[0], tc.reason)):
			t.Errorf("%s: %+v, want a denial saying %q", tc.note, m, tc.reason)
		}
	}
	if !e.MapsHTTP() {
		t.Fatal("the embedded policy maps HTTP requests")
	}
}

// TestMapHTTPPolicyContract: a policy folder without the mapping still
// loads and denies every forwarded request, saying why; a mapping of the
// wrong shape is an error, never an allow.
func TestMapHTTPPolicyContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	req := authz.HTTPRequest{Method: "GET", URI: "/agents/a1"}
	without := embeddedModules(t)
	delete(without, "http.rego")
	e := newEngine(t, without)
	if m, err := e.MapHTTP(ctx, req); err != nil || m.Check != nil || len(m.Reasons) != 1 || m.Reasons[0] != authz.ReasonNoHTTPMapping || e.MapsHTTP() {
		t.Fatalf("no mapping: %+v, %v", m, err)
	}
	for _, tc := range []struct{ note, rule string }{
		{"an allow without a check", `decision := {"allow": true, "reasons": ["public"]}`},
		{"a deny without reasons", `decision := {"allow": false, "reasons": []}`},
		{"a resource that is not an object", `decision := {"resource": "agent/a1", "action": "read"}`},
		{"no action", `decision := {"resource": {"type": "agent", "id": "a1"}}`},
		{"an id that is not a string", `decision := {"resource": {"type": "agent", "id": 1}, "action": "read"}`},
		{"a tenant that is not a string", `decision := {"resource": {"type": "agent", "id": "a1", "tenant_id": 7}, "action": "read"}`},
		{"not an object", `decision := "agent"`},
	} {
		modules := maps.Clone(without)
		modules["http.rego"] = "package keygate.http\n\n" + tc.rule + "\n"
		m, err := newEngine(t, modules).MapHTTP(ctx, req)
		if authz.ErrorCode(err) != authz.EINTERNAL || m.Check != nil {
			t.Errorf("%s: %+v, %v, want EINTERNAL and no check", tc.note, m, err)
		}
	}
	modules := maps.Clone(without)
	modules["http.rego"] = "package keygate.http\n\ndecision := {\"resource\": {\"type\": \"agent\", \"id\": \"a1\", \"tenant_id\": \"t2\"}, \"action\": \"read\"}\n"
	if m, err := newEngine(t, modules).MapHTTP(ctx, req); err != nil || m.Check == nil || m.Check.Resource.TenantID != "t2" {
		t.Fatalf("a mapping naming a tenant: %+v, %v", m, err)
	}
	modules["http.rego"] = "package keygate.http\n\nx := 1\n"
	if m, err := newEngine(t, modules).MapHTTP(ctx, req); err != nil || len(m.Reasons) != 1 || m.Reasons[0] != authz.ReasonNoHTTPMapping {
		t.Fatalf("a package without decision: %+v, %v", m, err)
	}
}

// TestHTTPMappingKeepsDecisionsCacheable: the http policy reads its own
// input, which does not make the resource policy's answers uncacheable.
func TestHTTPMappingKeepsDecisionsCacheable(t *testing.T) {
	t.Parallel()
	e, err := authz.NewEngine(context.Background(), embeddedModules(t), authz.EngineOptions{DecisionCacheSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if on, why := e.DecisionCaching(); !on {
		t.Fatalf("decision cache off with the http policy loaded: %s", why)
	}
}

type decisionCount struct {
	source, code string
	elapsed      time.Duration
}

type countingMetrics struct {
	mu   sync.Mutex
	seen []decisionCount
}

func (m *countingMetrics) Decided(_ context.Context, source, code string, elapsed time.Duration) {
	m.mu.Lock()
	m.seen = append(m.seen, decisionCount{source, code, elapsed})
	m.mu.Unlock()
}

// TestDecideHTTP: a forwarded request is authenticated, mapped, decided and,
// when denied, recorded once; every answer is counted by source and code.
func TestDecideHTTP(t *testing.T) {
	t.Parallel()
	store := newLookupStore(0)
	token := mustToken(t)
	store.put(authz.APIKey{ID: "k1", Hash: authz.HashToken(token), TenantID: "t1", UserID: "u1", Enabled: true,
		Scope: authz.Scope{AgentIDs: []string{"a1"}}})
	events, metrics := &eventLog{}, &countingMetrics{}
	svc := &authz.KeyService{Lookup: store, Policy: newEngine(t, embeddedModules(t)), Events: events, Metrics: metrics,
		Now: func() time.Time { return fixedTime }}
	ctx := authz.NewContextWithRequestInfo(context.Background(), authz.RequestInfo{IP: "192.0.2.1", RequestID: "r1"})
	decide := func(tok, method, uri string) *authz.DecisionResult {
		t.Helper()
		res, err := svc.Decide(ctx, authz.DecisionRequest{Token: tok, HTTP: &authz.HTTPRequest{Method: method, URI: uri}, Source: authz.SourceForwardAuth})
		if err != nil {
			t.Fatalf("%s %s: %v", method, uri, err)
		}
		if len(res.Decisions) != 1 || len(res.Decisions[0].Reasons) == 0 {
			t.Fatalf("%s %s: decisions %+v, want one with reasons", method, uri, res.Decisions)
		}
		return res
	}
	tests := []struct {
		note, token, method, uri, code string
		event                          string // target of the denial recorded, "" for none
	}{
		{"allowed", token, "POST", "/agents/a1/run", authz.CodeAllowed, ""},
		{"denied by the scope", token, "GET", "/agents/a2", authz.CodeDenied, "agent a2"},
		{"mapped to nothing", token, "DELETE", "/agents/a1?secret=s3cret", authz.CodeDenied, "http_request DELETE /agents/a1"},
		{"refused before the policy sees it", token, "GET", "/agents/a1/%2e%2e/a2", authz.CodeDenied, "http_request GET /agents/a1/%2e%2e/a2"},
		{"an id the checks refuse", token, "GET", "/agents/" + strings.Repeat("x", authz.MaxResourceIDLen+1), authz.CodeDenied, "http_request"},
		{"unknown key", mustToken(t), "GET", "/agents/a1", authz.KeyInvalid, ""},
	}
	for _, tc := range tests {
		before := len(events.all())
		res := decide(tc.token, tc.method, tc.uri)
		if res.Code != tc.code {
			t.Errorf("%s: code %s (%v), want %s", tc.note, res.Code, res.Decisions[0].Reasons, tc.code)
		}
		after := events.all()[before:]
		if tc.event == "" {
			if tc.code != authz.KeyInvalid && len(after) != 0 {
				t.Errorf("%s: recorded %+v", tc.note, after)
			}
			continue
		}
		if len(after) != 1 || after[0].Action != authz.AuditAuthzDenied || after[0].TenantID != "t1" ||
			!strings.HasPrefix(after[0].TargetType+" "+after[0].TargetID, tc.event) || after[0].Details["source"] != authz.SourceForwardAuth {
			t.Errorf("%s: recorded %+v, want one denial of %s", tc.note, after, tc.event)
		}
		for _, ev := range after {
			if strings.Contains(ev.TargetID+ev.Reason, "s3cret") {
				t.Errorf("%s: the query reached the audit trail: %+v", tc.note, ev)
			}
		}
	}
	metrics.mu.Lock()
	seen := metrics.seen
	metrics.mu.Unlock()
	if len(seen) != len(tests) {
		t.Fatalf("%d decisions counted, want %d", len(seen), len(tests))
	}
	for i, tc := range tests {
		if seen[i].source != authz.SourceForwardAuth || seen[i].code != tc.code || seen[i].elapsed <= 0 {
			t.Errorf("%s: counted %+v", tc.note, seen[i])
		}
	}
	if _, err := svc.Decide(ctx, authz.DecisionRequest{Token: token, Source: authz.SourceGRPC, HTTP: &authz.HTTPRequest{Method: "GET", URI: "/agents/a1"},
		Checks: []authz.Check{{Resource: authz.Resource{Type: authz.ResourceAgent, ID: "a1"}, Action: "read"}}}); authz.ErrorCode(err) != authz.EINVALID {
		t.Fatalf("checks beside a forwarded request: %v, want EINVALID", err)
	}
	if last := metrics.seen[len(metrics.seen)-1]; last.code != authz.EINVALID || last.source != authz.SourceGRPC {
		t.Fatalf("a failed Decide counted as %+v, want its error code", last)
	}
}

// TestMapHTTPCache: with the decision cache on, a request mapped before is
// answered from memory while the mapping depends on the request alone; a
// new policy load, a long path or a mapping that reads the clock is
// evaluated each time.
func TestMapHTTPCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	obs := &recordingObserver{}
	e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{Observer: obs, DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	mapped := func(method, uri string) authz.HTTPMapping {
		t.Helper()
		m, err := e.MapHTTP(ctx, authz.HTTPRequest{Method: method, URI: uri})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	queries := func() []string {
		var q []string
		for _, o := range obs.seen() {
			q = append(q, o.Query)
		}
		obs.mu.Lock()
		obs.obs = nil
		obs.mu.Unlock()
		return q
	}
	const eval, cached = authz.QueryHTTPDecision, "cached " + authz.QueryHTTPDecision
	first, again := mapped("POST", "/agents/a1/run?x=1"), mapped("POST", "/agents/a1/run?x=2")
	mapped("DELETE", "/agents/a1")
	mapped("DELETE", "/agents/a1")
	long := "/agents/a1/" + strings.Repeat("x", 300)
	mapped("GET", long)
	mapped("GET", long)
	if got := strings.Join(queries(), ","); got != strings.Join([]string{eval, cached, eval, cached, eval, eval}, ",") ||
		first.Check == nil || *first.Check != *again.Check {
		t.Fatalf("evaluations %s; mappings %+v %+v", got, first, again)
	}
	if st := e.DecisionCacheStats(); st.Hits != 2 || st.Entries != 2 {
		t.Fatalf("cache stats %+v, want the 2 mappings hit once each", st)
	}

	modules := embeddedModules(t)
	modules["http.rego"] = strings.Replace(modules["http.rego"], `"POST": "execute"},`, `"POST": "read"},`, 1)
	if err := e.Load(ctx, modules); err != nil {
		t.Fatal(err)
	}
	if m := mapped("POST", "/agents/a1/run"); m.Check == nil || m.Check.Action != "read" {
		t.Fatalf("after a reload: %+v, want the new policy's read", m)
	}
	modules["http.rego"] = strings.Replace(modules["http.rego"], `method := object.get(input, "method", "")`,
		`method := object.get(input, "method", "") if time.now_ns() > 0`, 1)
	if err := e.Load(ctx, modules); err != nil {
		t.Fatal(err)
	}
	queries()
	mapped("POST", "/agents/a1/run")
	mapped("POST", "/agents/a1/run")
	if got := queries(); len(got) != 2 || got[1] != eval {
		t.Fatalf("a mapping reading the clock: %v, want two evaluations", got)
	}
	if on, why := e.DecisionCaching(); !on {
		t.Fatalf("the clock in http.rego turned the decision cache off: %s", why)
	}
}
