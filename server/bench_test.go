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

func benchmarkAuthorizeHandler(b *testing.B, decisionCache int) {
	db := storagetest.MustOpenSQLite(b)
	h := newHarness(b, db, func(c *app.Config) {
		c.DecisionCacheSize = decisionCache
		c.Now = time.Now
	})
	_, token := h.createKey(h.jwt("t1", "alice"), "bench", benchScope())
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
