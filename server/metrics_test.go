package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/storage/storagetest"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// scrapeMetrics reads GET /metrics: the names of every sample (histograms
// as name_bucket, name_sum, name_count), the families by type, and the
// text.
func scrapeMetrics(t *testing.T, h *harness) (samples map[string]bool, families map[string]string, text string) {
	t.Helper()
	res := h.do("GET", "/metrics", "", nil)
	wantStatus(t, "GET /metrics", res, http.StatusOK)
	samples, families = map[string]bool{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(res.body)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(f, " "); ok {
				families[name] = typ
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		samples[line[:strings.IndexAny(line, "{ ")]] = true
	}
	return samples, families, string(res.body)
}

// metricsTraffic serves keygate on loopback (HTTP and ext_authz over
// gRPC) and makes it record every kind of metric: decisions of each
// outcome through /v1/authorize, forward auth and ext_authz, a key over
// its rate limit (counted on the instance alone, Redis being unreachable)
// and one out of credits, refused keys until the address is
// over its budget, an MCP session with an allowed and a denied call and one
// refused for the session bound, a scheduled sync, the usage history
// written, a policy reload, and every decision in the decision log.
func metricsTraffic(t *testing.T) *mcpHarness {
	t.Helper()
	db := storagetest.MustOpenSQLite(t)
	policyDir := t.TempDir() // served from a folder, so that it reloads
	if err := os.CopyFS(policyDir, policies.FS()); err != nil {
		t.Fatal(err)
	}
	base := newHarness(t, db, func(c *app.Config) {
		c.PolicyDir = policyDir
		c.AuthFailureBurst, c.DecisionCacheSize = 3, 100
		c.MCPMaxSessionsPerKey, c.MCPMaxSessions = 1, 1
		c.Addr, c.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
		c.DecisionLog = "file:" + filepath.Join(t.TempDir(), "decisions.log")
		c.RedisURL = "redis://127.0.0.1:1" // nothing listens: rate limits fall back to this instance
	})
	h := &mcpHarness{harness: base, mcp: base.app.MCP, gw: base.app.Gateway}
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := h.app.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.app.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	url := "http://" + ln.Addr().String()

	admin := h.jwt("t1", "root", "admin")
	up := newTestUpstream(t, "search", "delete_repo")
	h.createServer(admin, map[string]any{"name": "github", "url": up.URL})
	_, token := h.createKey(admin, "bot", map[string]any{"mcp_tool_ids": []string{"github__search"}, "agent_ids": []string{"a1"}})

	for range 2 {
		h.authorize(token, "agent", "a1", "execute") // the second from the decision cache
	}
	h.authorize(token, "agent", "a2", "execute")
	wantStatus(t, "forward auth", h.forward("GET", "/agents/a1", "X-API-Key", token), http.StatusOK)
	wantStatus(t, "forward auth, denied", h.forward("GET", "/flows/f1", "X-API-Key", token), http.StatusForbidden)
	conn, err := grpc.NewClient(h.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if _, err := authv3.NewAuthorizationClient(conn).Check(cctx, checkRequest("GET", "/agents/a1", map[string]string{"x-api-key": token})); err != nil {
		t.Fatal(err)
	}

	cs := mcpConnect(t, url, token)
	if _, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "github__search", Arguments: map[string]any{"text": "hi"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(cctx, &sdk.CallToolParams{Name: "github__delete_repo"}); err == nil {
		t.Fatal("a denied call went through")
	}
	second := sdk.NewClient(&sdk.Implementation{Name: "second", Version: "1"}, nil)
	if s, err := second.Connect(cctx, &sdk.StreamableClientTransport{Endpoint: url + "/mcp",
		HTTPClient: &http.Client{Transport: bearerTransport{token, openapitest.NewTransport(t, nil)}}, MaxRetries: -1}, nil); err == nil {
		_ = s.Close()
		t.Fatal("a second session opened past the bound of one")
	}
	if err := h.gw.SyncAll(cctx); err != nil {
		t.Fatal(err)
	}
	h.gw.WaitIdle()

	// Per-key limits: each key's second request is refused, one over its
	// rate limit, the other out of credits.
	_, limited := h.createKey(admin, "limited", map[string]any{"flow_ids": []string{"f1"}},
		"rate_limit", map[string]any{"limit": 1, "window_ms": 60000})
	_, paid := h.createKey(admin, "paid", map[string]any{"flow_ids": []string{"f1", "f2"}},
		"credits", map[string]any{"remaining": 1})
	for _, q := range []struct{ token, id, code string }{
		{limited, "f1", authz.CodeAllowed}, {limited, "f1", authz.CodeRateLimited},
		{paid, "f1", authz.CodeAllowed}, {paid, "f2", authz.CodeUsageExceeded},
	} {
		if got := h.authorize(q.token, "flow", q.id, "read")["code"]; got != q.code {
			t.Fatalf("a limited key: %v, want %s", got, q.code)
		}
	}
	if err := h.app.Rollups.Flush(cctx); err != nil {
		t.Fatal(err)
	}
	if err := h.app.ReloadPolicies(cctx); err != nil {
		t.Fatal(err)
	}

	for range 4 {
		bad, _ := authz.NewToken(nil)
		h.do("POST", "/v1/authorize", "", authorizeBody(bad))
	}
	return h
}

// TestMetrics: /metrics serves keygate's instruments and the runtime's in
// Prometheus form, with decisions by source and code.
func TestMetrics(t *testing.T) {
	t.Parallel()
	h := metricsTraffic(t)
	samples, families, text := scrapeMetrics(t, h.harness)
	for _, want := range []string{
		`keygate_decision_requests_total{code="ALLOWED",source="authorize"} 4`,
		`keygate_decision_requests_total{code="RATE_LIMITED",source="authorize"} 1`,
		`keygate_decision_requests_total{code="USAGE_EXCEEDED",source="authorize"} 1`,
		`keygate_key_limits_refused_total{code="RATE_LIMITED"} 1`,
		`keygate_key_limits_refused_total{code="USAGE_EXCEEDED"} 1`,
		`keygate_policy_reloads_total{outcome="unchanged"} 1`,
		`keygate_decision_requests_total{code="DENIED",source="authorize"} 1`,
		`keygate_decision_requests_total{code="KEY_INVALID",source="authorize"} 3`,
		`keygate_decision_requests_total{code="rate_limited",source="authorize"} 1`,
		`keygate_decision_requests_total{code="ALLOWED",source="forward_auth"} 1`,
		`keygate_decision_requests_total{code="DENIED",source="forward_auth"} 1`,
		`keygate_decision_requests_total{code="ALLOWED",source="grpc"} 1`,
		`keygate_decision_requests_total{code="ALLOWED",source="mcp"}`,
		`keygate_decision_request_duration_seconds_count{source="authorize"} 11`,
		`keygate_decisions_total{cached="true",outcome="allowed",query="data.keygate.authz.decision"} 2`,
		`keygate_decision_cache_hits_total 3`, // and ext_authz's mapping of GET /agents/a1
		`keygate_auth_rate_limited_total{credential="api_key"} 1`,
		`keygate_mcp_tool_calls_total{outcome="ok",tenant_id="t1",upstream="github"} 1`,
		`keygate_mcp_tool_calls_total{outcome="denied",tenant_id="t1",upstream="github"} 1`,
		`keygate_mcp_upstreams{state="available"} 1`,
		`keygate_mcp_syncs_total{outcome="ok"} 1`,
	} {
		if !strings.Contains(text, "\n"+want) {
			t.Errorf("the scrape lacks %s", want)
		}
	}
	for name, typ := range map[string]string{
		"keygate_decision_request_duration_seconds": "histogram", "keygate_key_cache_hits_total": "counter",
		"keygate_audit_queued": "gauge", "go_goroutine_count": "gauge", "process_unix_file_descriptor_count": "gauge",
		"keygate_runtime_gc_pause_duration_seconds": "histogram",
	} {
		if families[name] != typ && families[strings.TrimSuffix(name, "_total")] != typ {
			t.Errorf("family %s: %q, want a %s", name, families[name], typ)
		}
	}
	if !samples["keygate_decision_duration_seconds_bucket"] || !samples["target_info"] {
		t.Errorf("the scrape lacks policy latency buckets or target_info")
	}
	for _, name := range []string{"keygate_credits_spend_batch_bucket", "keygate_rate_limit_redis_fallbacks_total", "keygate_credits_reserved", "keygate_usage_rollups_written_total",
		"keygate_decision_log_queued", "keygate_decision_log_written_total", "keygate_decision_log_dropped_total", "keygate_decision_log_failed_total"} {
		if !samples[name] {
			t.Errorf("the scrape lacks %s", name)
		}
	}
	if strings.Contains(text, "pk_") {
		t.Error("a token reached the metrics")
	}
}

// TestMetricsAreDocumented: every keygate metric a scrape shows has its row
// in docs/operations.md.
func TestMetricsAreDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, families, _ := scrapeMetrics(t, metricsTraffic(t).harness)
	for name := range families {
		if strings.HasPrefix(name, "keygate_") && !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/operations.md does not name %s", name)
		}
	}
}

// grafanaDashboard is what the test reads of docs/grafana-dashboard.json.
type grafanaDashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var promIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)

// promQLWords are the words of the dashboard's queries that are not
// metric names: functions, keywords, label names and values.
var promQLWords = map[string]bool{
	"sum": true, "rate": true, "increase": true, "by": true, "histogram_quantile": true, "le": true, "max": true,
	"min": true, "avg": true, "without": true, "on": true, "or": true, "and": true, "clamp_min": true, "topk": true,
	"time": true, "deriv": true, "count": true, "irate": true, "delta": true,
}

// TestGrafanaDashboard: the dashboard in docs/ is valid JSON whose panels
// query only metrics a scrape of keygate shows.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q (%s) with %d panels", d.Title, d.UID, len(d.Panels))
	}
	samples, _, _ := scrapeMetrics(t, metricsTraffic(t).harness)
	var queried []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, target := range p.Targets {
			// Drop label matchers, durations and strings: what remains are
			// functions, keywords and metric names.
			expr := regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\bby\s*\([^)]*\)|\bwithout\s*\([^)]*\)`).ReplaceAllString(target.Expr, " ")
			for _, w := range promIdent.FindAllString(expr, -1) {
				if !promQLWords[w] {
					queried = append(queried, w)
					if !samples[w] {
						t.Errorf("panel %q queries %s, which a scrape does not show", p.Title, w)
					}
				}
			}
		}
	}
	slices.Sort(queried)
	if len(slices.Compact(queried)) < 15 {
		t.Errorf("the dashboard queries %d metrics: %v", len(queried), queried)
	}
}
