package authz_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/keygate/keygate/authz"
)

// genStore makes a fresh key for any hash, as a database scan would.
type genStore struct{}

func (genStore) KeyByHash(_ context.Context, hash string) (*authz.APIKey, error) {
	i, _ := strconv.Atoi(hash)
	id, _ := authz.NewID(fixedTime, nil)
	mk := func(p string) []string {
		out := make([]string, 5)
		for j := range out {
			out[j] = fmt.Sprintf("%s-%d", p, j)
		}
		return out
	}
	k := &authz.APIKey{ID: id, Name: fmt.Sprintf("seed-%d", i), Start: "pk_abcde", TenantID: fmt.Sprintf("tenant-%d", i%100), UserID: fmt.Sprintf("user-%d", i%1000), Hash: fmt.Sprintf("%064d", i), Enabled: true,
		CreatedAt: fixedTime, UpdatedAt: fixedTime,
		Scope: authz.Scope{AgentIDs: mk("agent"), FlowIDs: mk("flow"), MCPToolIDs: mk("tool"), VectorStoreIDs: mk("vs")}}
	k.Scope.FlowIDs[0] = fmt.Sprintf("flow-of-key-%d", i) // no two keys share a scope
	return k, nil
}

// BenchmarkKeyCacheMemory reports the live heap each cached key costs, as a
// database would return keys (fresh strings for every one, scopes of 20
// entries, one of them the key's own), each used once for a decision: the
// compact entries, and the last 10,000 principals and decisions.
func BenchmarkKeyCacheMemory(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	e, err := authz.NewEngine(ctx, embeddedModules(b), authz.EngineOptions{DecisionCacheSize: 10000})
	if err != nil {
		b.Fatal(err)
	}
	c := authz.NewKeyCache(genStore{}, authz.KeyCacheOptions{MaxEntries: 2 * n})
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	for i := range n {
		k, _ := c.KeyByHash(ctx, fmt.Sprintf("%064d", i))
		_, _ = e.Decide(ctx, k.Principal(), authz.Resource{Type: "agent", ID: "agent-1"}, "read", testContext)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc-before)/n, "bytes/key")
	runtime.KeepAlive(c)
}
