package server_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/storage/storagetest"
)

// benchScope is a realistic key: 20 entries per list, the last 3 globs.
func benchScope() map[string]any {
	lists := map[string]any{}
	for _, l := range []string{"agent", "flow", "mcp_tool", "vector_store"} {
		var ids []string
		for i := range 17 {
			ids = append(ids, fmt.Sprintf("%s-%02d", l, i))
		}
		ids = append(ids, l+"-a*", l+"-b*", "github__*")
		lists[l+"_ids"] = ids
	}
	return lists
}

// BenchmarkAuthorizeHandler measures POST /v1/authorize through the real
// router, key cache and audit writer, without the network: the share of a
// request keygate itself spends.
func BenchmarkAuthorizeHandler(b *testing.B) {
	b.Run("decision-cache", func(b *testing.B) { benchmarkAuthorizeHandler(b, 10_000) })
	b.Run("no-decision-cache", func(b *testing.B) { benchmarkAuthorizeHandler(b, 0) })
}

// benchHarness is a harness on the real clock with a key of benchScope.
func benchHarness(b *testing.B, decisionCache int) (*harness, string) {
	h := newHarness(b, storagetest.MustOpenSQLite(b), func(c *app.Config) {
		c.DecisionCacheSize = decisionCache
		c.Now = time.Now
	})
	_, token := h.createKey(h.jwt("t1", "alice"), "bench", benchScope())
	return h, token
}

func benchmarkAuthorizeHandler(b *testing.B, decisionCache int) {
	h, token := benchHarness(b, decisionCache)
	bodies := []string{
		`{"api_key":"` + token + `","resource":{"type":"agent","id":"agent-05"},"action":"execute"}`,
		`{"api_key":"` + token + `","resource":{"type":"mcp_tool","id":"github__create_issue"},"action":"call"}`,
		`{"api_key":"` + token + `","resource":{"type":"flow","id":"billing-export"},"action":"execute"}`,
		`{"api_key":"` + token + `","resource":{"type":"vector_store","id":"vector_store-03"},"action":"delete"}`,
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/authorize", strings.NewReader(bodies[i%len(bodies)]))
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
			_, _ = io.Copy(io.Discard, rec.Body)
			i++
		}
	})
}

// BenchmarkForwardAuthHandler measures /v1/forward-auth as nginx asks it,
// through the real router: the http policy's mapping, then the decision
// (from the decision cache when on), the same four-request mix.
func BenchmarkForwardAuthHandler(b *testing.B) {
	b.Run("decision-cache", func(b *testing.B) { benchmarkForwardAuthHandler(b, 10_000) })
	b.Run("no-decision-cache", func(b *testing.B) { benchmarkForwardAuthHandler(b, 0) })
}

func benchmarkForwardAuthHandler(b *testing.B, decisionCache int) {
	h, token := benchHarness(b, decisionCache)
	requests := [][2]string{
		{"POST", "/agents/agent-05/run"},
		{"POST", "/mcp-tools/github__create_issue/call"},
		{"POST", "/flows/billing-export/run"},
		{"DELETE", "/agents/agent-03"},
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r := requests[i%len(requests)]
			req := httptest.NewRequest("GET", "/v1/forward-auth", nil)
			req.Header.Set("X-API-Key", token)
			req.Header.Set("X-Original-Method", r[0])
			req.Header.Set("X-Original-URI", r[1])
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			if rec.Code != 200 && rec.Code != 403 {
				b.Fatalf("status %d", rec.Code)
			}
			i++
		}
	})
}
