package authz_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

// Shape of the cache-cold workload, as the realistic workload of `make
// bench` (cmd/keygate-bench) has it: coldKeys keys, coldPerKey distinct
// questions each, half denied, asked in turn, so a question comes back
// after coldKeys*coldPerKey-1 others: twice what a decision cache of the
// shipped size (coldDecisionCache, app.Defaults) holds.
const (
	coldKeys          = 500
	coldPerKey        = 40
	coldDecisionCache = 10_000
)

// coldRequest is one request of the cache-cold workload.
type coldRequest struct {
	token  string
	checks []authz.Check
	allow  bool
}

// coldScope is key k's own scope: 20 entries per list, the last 3 globs.
func coldScope(k int) authz.Scope {
	list := func(word string) []string {
		ids := make([]string, 0, 20)
		for i := range 17 {
			ids = append(ids, fmt.Sprintf("%s-%03d-%02d", word, k, i))
		}
		for g := range 3 {
			ids = append(ids, fmt.Sprintf("%s-%03d-team%d-*", word, k, g))
		}
		return ids
	}
	return authz.Scope{AgentIDs: list("agent"), FlowIDs: list("flow"), MCPToolIDs: list("github__tool"), VectorStoreIDs: list("kb")}
}

// coldQuestion is question j of key k's coldPerKey, each distinct: in
// blocks of eight, two exact-id allows, two glob allows, two ids not in
// scope (the whole list and every glob tried), an unsupported action and
// another tenant's resource; the resource type turns with j.
func coldQuestion(token string, k, j int) coldRequest {
	types := []struct {
		rtype          authz.ResourceType
		word, ok, nope string
	}{
		{authz.ResourceAgent, "agent", "execute", "call"},
		{authz.ResourceFlow, "flow", "read", "delete"},
		{authz.ResourceMCPTool, "github__tool", "call", "execute"},
		{authz.ResourceVectorStore, "kb", "query", "delete"},
	}
	t := types[(j+j/8)%len(types)] // each kind meets every type over the blocks
	q := coldRequest{token: token}
	c := authz.Check{Resource: authz.Resource{Type: t.rtype}, Action: t.ok}
	switch j % 8 {
	case 0, 1:
		c.Resource.ID, q.allow = fmt.Sprintf("%s-%03d-%02d", t.word, k, j%17), true
	case 2, 3:
		c.Resource.ID, q.allow = fmt.Sprintf("%s-%03d-team%d-%04d", t.word, k, j%3, j), true
	case 4, 5:
		c.Resource.ID = fmt.Sprintf("%s-%03d-team9-%04d", t.word, k, j)
	case 6:
		c.Resource.ID, c.Action = fmt.Sprintf("%s-%03d-%02d", t.word, k, j%17), t.nope
	case 7:
		c.Resource.ID, c.Resource.TenantID = fmt.Sprintf("%s-%03d-%02d", t.word, k, j%17), "t2"
	}
	q.checks = []authz.Check{c}
	return q
}

// countingAuditStore counts the events written and keeps none.
type countingAuditStore struct{ written atomic.Int64 }

func (s *countingAuditStore) InsertAuditEvents(_ context.Context, events []authz.AuditEvent) error {
	s.written.Add(int64(len(events)))
	return nil
}

func (s *countingAuditStore) FindAuditEvents(context.Context, authz.AuditFilter) (*authz.AuditPage, error) {
	return nil, fmt.Errorf("not used")
}

// cacheCounter counts the checks answered from the decision cache.
type cacheCounter struct {
	authz.NopObserver
	cached atomic.Int64
}

func (c *cacheCounter) CachedDecisions(_ context.Context, _ string, checks, _ int) {
	c.cached.Add(int64(checks))
}

// BenchmarkDecideCold is POST /v1/authorize's decision path on traffic a
// decision cache does not absorb: KeyService.Decide with a token (format,
// SHA-256, the key cache), one check evaluated by an engine whose decision
// cache is the size keygate ships, last-used times noted and every denial
// queued for the audit writer. The requests rotate through 500 keys with
// scopes of their own (20 entries per list, 3 of them globs) and 20,000
// distinct questions, half denied, so the cache answers few of them (about
// a fifth: its random eviction keeps some through a round; %cached says how
// many). Its ns/op and allocs/op are those of a cache-cold decision; a
// change that slows one shows here. The audit writer runs as in keygate, on its own goroutine,
// so its work counts too.
func BenchmarkDecideCold(b *testing.B) {
	ctx := context.Background()
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	observer := &cacheCounter{}
	engine, err := authz.NewEngine(ctx, modules, authz.EngineOptions{DecisionCacheSize: coldDecisionCache, Observer: observer})
	if err != nil {
		b.Fatal(err)
	}
	store := &lookupStore{keys: map[string]authz.APIKey{}}
	questions := make([]coldRequest, 0, coldKeys*coldPerKey)
	tokens := make([]string, coldKeys)
	for k := range tokens {
		if tokens[k], err = authz.NewToken(nil); err != nil {
			b.Fatal(err)
		}
		store.put(authz.APIKey{ID: fmt.Sprintf("key-%03d", k), Hash: authz.HashToken(tokens[k]), TenantID: "t1", UserID: "u1",
			Enabled: true, Scope: coldScope(k)})
	}
	// Key after key: consecutive requests are about different keys.
	for j := range coldPerKey {
		for k, token := range tokens {
			questions = append(questions, coldQuestion(token, k, j))
		}
	}
	audit := &countingAuditStore{}
	events := authz.NewAuditWriter(audit, authz.AuditWriterOptions{})
	usage := authz.NewUsageWriter(&touchStore{}, time.Second, nil)
	svc := &authz.KeyService{Lookup: authz.NewKeyCache(store, authz.KeyCacheOptions{}), Policy: engine, Events: events, Usage: usage}
	var denied int64
	ask := func(q *coldRequest) {
		res, err := svc.Decide(ctx, authz.DecisionRequest{Token: q.token, Checks: q.checks, Source: authz.SourceAuthorize})
		if err != nil || res.Allowed() != q.allow {
			b.Fatalf("%+v: allowed=%v, want %v (%v)", q.checks[0], res != nil && res.Allowed(), q.allow, err)
		}
		if !q.allow {
			denied++
		}
	}
	// One round first, as a server that has been up a while: every key
	// cached, the decision cache full.
	for i := range questions {
		ask(&questions[i])
	}
	b.ReportAllocs()
	observer.cached.Store(0)
	i := 0
	for b.Loop() {
		ask(&questions[i])
		if i++; i == len(questions) {
			i = 0
		}
	}
	b.StopTimer()
	b.ReportMetric(100*float64(observer.cached.Load())/float64(b.N), "%cached")
	if err := events.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if err := usage.Close(ctx); err != nil {
		b.Fatal(err)
	}
	if got := audit.written.Load(); got != denied || events.Dropped() != 0 {
		b.Fatalf("%d denials, %d audit events written, %d dropped", denied, got, events.Dropped())
	}
}
