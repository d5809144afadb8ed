package main

import (
	"fmt"
	"math/rand/v2"
	"path"
	"slices"

	"github.com/keygate/keygate/authz"
)

// The realistic workload: many keys, each with a scope of its own, and a
// table of distinct questions about them, half of them denied, cycled so
// that a decision cache smaller than the table answers few of them.

// Shape of a realistic key's scope: scopeEntries per list, the last
// scopeGlobs of them globs, drawn from catalogIDs exact ids and
// globFamilies glob prefixes per resource type.
const (
	scopeEntries = 20
	scopeGlobs   = 3
	catalogIDs   = 1000
	globFamilies = 40
)

// resourceWords name the ids of each resource type: exact ids are
// "<word>-0412", globs "<word>-team07-*" and the ids they match
// "<word>-team07-3fa2", so an exact id never matches a glob by accident.
var resourceWords = []struct {
	rtype authz.ResourceType
	word  string
}{
	{authz.ResourceAgent, "agent"},
	{authz.ResourceFlow, "flow"},
	{authz.ResourceMCPTool, "github__tool"},
	{authz.ResourceVectorStore, "kb"},
}

// supportedActions mirrors the policy's actions per type (policies/authz.rego);
// verify catches any drift, as keygate and OPA then disagree with the
// expected answers.
var supportedActions = map[authz.ResourceType][]string{
	authz.ResourceAgent:       {"execute", "read"},
	authz.ResourceFlow:        {"execute", "read"},
	authz.ResourceMCPTool:     {"call", "read"},
	authz.ResourceVectorStore: {"query", "read", "write"},
}

// allActions are every action any type supports, plus one none does.
var allActions = []string{"call", "delete", "execute", "query", "read", "write"}

// realisticScopes returns n scopes, each its own: per list, scopeEntries-
// scopeGlobs exact ids from the catalogue, then scopeGlobs globs, the globs
// last as people append wildcards after naming ids.
func realisticScopes(n int, seed uint64) []authz.Scope {
	rng := rand.New(rand.NewPCG(seed, 0x5c09e5))
	scopes := make([]authz.Scope, n)
	for k := range scopes {
		var lists [4][]string
		for t, rw := range resourceWords {
			ids := make([]string, 0, scopeEntries)
			for _, i := range pickDistinct(rng, catalogIDs, scopeEntries-scopeGlobs) {
				ids = append(ids, fmt.Sprintf("%s-%04d", rw.word, i))
			}
			for _, f := range pickDistinct(rng, globFamilies, scopeGlobs) {
				ids = append(ids, fmt.Sprintf("%s-team%02d-*", rw.word, f))
			}
			lists[t] = ids
		}
		scopes[k] = authz.Scope{AgentIDs: lists[0], FlowIDs: lists[1], MCPToolIDs: lists[2], VectorStoreIDs: lists[3]}
	}
	return scopes
}

// pickDistinct returns k distinct numbers below n, in random order.
func pickDistinct(rng *rand.Rand, n, k int) []int {
	seen := make(map[int]bool, k)
	out := make([]int, 0, k)
	for len(out) < k {
		if i := rng.IntN(n); !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// Kinds of question. Half are allows, half denials; a block of eight
// questions of one key holds two of each allow, two not-in-scope denials and
// one each of the last two kinds.
const (
	kindExact       = "exact-id allow"
	kindGlob        = "glob allow"
	kindNotInScope  = "deny: not in scope"
	kindBadAction   = "deny: unsupported action"
	kindOtherTenant = "deny: another tenant's resource"
)

var kindCycle = [8]string{kindExact, kindExact, kindGlob, kindGlob, kindNotInScope, kindNotInScope, kindBadAction, kindOtherTenant}

// question is one request of the realistic table: a check made with key
// number key, and the answer the policy must give.
type question struct {
	key   int
	kind  string
	check check
	allow bool
}

// questionTable returns n distinct questions about keys (the scopes of
// realisticScopes), made in tenant: eight per key in turn, the keys in
// turn, then shuffled so that consecutive requests are about different
// keys. The same scopes and seed give the same table.
func questionTable(scopes []authz.Scope, tenant string, n int, seed uint64) ([]question, error) {
	if len(scopes) == 0 {
		return nil, fmt.Errorf("no keys to ask about")
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b9))
	seen := make(map[[2]any]bool, n)
	table := make([]question, 0, n)
	for i := range n {
		kind := kindCycle[i%len(kindCycle)]
		k := (i / len(kindCycle)) % len(scopes)
		var q question
		for attempt := 0; ; attempt++ {
			if attempt == 1000 {
				return nil, fmt.Errorf("cannot find %d distinct questions about %d keys: ask fewer or add keys", n, len(scopes))
			}
			q = newQuestion(rng, k, scopes[k], tenant, kind)
			if id := [2]any{k, q.check}; !seen[id] {
				seen[id] = true
				break
			}
		}
		if got := expectedAllow(scopes[k], tenant, q.check); got != q.allow {
			return nil, fmt.Errorf("question %d (%s, %+v): the scope gives allow=%v", i, kind, q.check, got)
		}
		table = append(table, q)
	}
	rng.Shuffle(len(table), func(i, j int) { table[i], table[j] = table[j], table[i] })
	return table, nil
}

// newQuestion draws one question of a kind about key k.
func newQuestion(rng *rand.Rand, k int, scope authz.Scope, tenant, kind string) question {
	t := rng.IntN(len(resourceWords))
	rw := resourceWords[t]
	ids := scope.IDs(rw.rtype)
	exact, globs := ids[:len(ids)-scopeGlobs], ids[len(ids)-scopeGlobs:]
	supported := supportedActions[rw.rtype]
	q := question{key: k, kind: kind, allow: kind == kindExact || kind == kindGlob}
	q.check.Resource.Type = string(rw.rtype)
	q.check.Action = supported[rng.IntN(len(supported))]
	// A caller names its own tenant now and then; the policy takes an
	// absent tenant for the key's own.
	if rng.IntN(4) == 0 {
		q.check.Resource.TenantID = tenant
	}
	inScope := func() string {
		if rng.IntN(2) == 0 {
			return exact[rng.IntN(len(exact))]
		}
		return globID(rng, globs[rng.IntN(len(globs))])
	}
	switch kind {
	case kindExact:
		q.check.Resource.ID = exact[rng.IntN(len(exact))]
	case kindGlob:
		q.check.Resource.ID = globID(rng, globs[rng.IntN(len(globs))])
	case kindNotInScope:
		// Either an id of the catalogue the key does not list, or one of a
		// glob family it does not hold: the whole list and every glob are
		// tried before the answer.
		for {
			var id string
			if rng.IntN(2) == 0 {
				id = fmt.Sprintf("%s-%04d", rw.word, rng.IntN(catalogIDs))
			} else {
				id = fmt.Sprintf("%s-team%02d-%04x", rw.word, rng.IntN(globFamilies), rng.IntN(1<<16))
			}
			if !scopeMatches(ids, id) {
				q.check.Resource.ID = id
				break
			}
		}
	case kindBadAction:
		q.check.Resource.ID = inScope()
		for slices.Contains(supported, q.check.Action) {
			q.check.Action = allActions[rng.IntN(len(allActions))]
		}
	case kindOtherTenant:
		q.check.Resource.ID = inScope()
		q.check.Resource.TenantID = fmt.Sprintf("other-tenant-%02d", rng.IntN(100))
	}
	return q
}

// globID is an id a "<prefix>*" glob matches.
func globID(rng *rand.Rand, glob string) string {
	return fmt.Sprintf("%s%04x", glob[:len(glob)-1], rng.IntN(1<<16))
}

// expectedAllow is what the policy answers, as far as these questions
// exercise it: a supported action, the key's own tenant, and an id the
// scope lists or one of its globs matches. verify checks it against keygate
// and OPA, so a drift shows before anything is measured.
func expectedAllow(scope authz.Scope, tenant string, c check) bool {
	rtype := authz.ResourceType(c.Resource.Type)
	if !slices.Contains(supportedActions[rtype], c.Action) {
		return false
	}
	if c.Resource.TenantID != "" && c.Resource.TenantID != tenant {
		return false
	}
	return scopeMatches(scope.IDs(rtype), c.Resource.ID)
}

// scopeMatches reports whether an entry of a scope list names id exactly or
// as a glob. The ids here hold no '/', so path.Match's '*' spans all of an
// id, as the policy's glob.match without delimiters does.
func scopeMatches(entries []string, id string) bool {
	for _, e := range entries {
		if ok, _ := path.Match(e, id); ok {
			return true
		}
	}
	return false
}

// kindCount is how many questions of a table are of one kind.
type kindCount struct {
	kind  string
	n     int
	allow bool
}

// kindCounts counts the questions of each kind, allows first, for the
// report.
func kindCounts(table []question) []kindCount {
	out := []kindCount{{kindExact, 0, true}, {kindGlob, 0, true}, {kindNotInScope, 0, false}, {kindBadAction, 0, false}, {kindOtherTenant, 0, false}}
	for _, q := range table {
		for i := range out {
			if out[i].kind == q.kind {
				out[i].n++
			}
		}
	}
	return out
}

// decisionShards is the number of shards of keygate's decision cache
// (authz/decision_cache.go), each evicting at random when full.
const decisionShards = 16

// modelHitRate replays a workload cycling through n distinct questions, in
// the same order each time, against a model of keygate's decision cache of
// size answers: decisionShards shards of size/decisionShards+1 entries, a
// question's shard fixed by its hash, a random entry of the shard evicted
// to make room. It returns the share of requests answered from the cache
// once it is warm (the last two of five rounds). An LRU cache would answer
// none when n exceeds size; random eviction keeps some questions through a
// whole round.
func modelHitRate(n, size int, seed uint64) float64 {
	if n <= 0 || size <= 0 {
		return 0
	}
	rng := rand.New(rand.NewPCG(seed, 0xcac4e))
	shardOf := make([]int, n)
	for i := range shardOf {
		shardOf[i] = rng.IntN(decisionShards)
	}
	per := size/decisionShards + 1
	type shard struct {
		slots []int       // questions held
		at    map[int]int // question → its slot
	}
	shards := make([]shard, decisionShards)
	for i := range shards {
		shards[i].at = map[int]int{}
	}
	const rounds, measured = 5, 2
	hits := 0
	for round := range rounds {
		for q := range n {
			s := &shards[shardOf[q]]
			if _, ok := s.at[q]; ok {
				if round >= rounds-measured {
					hits++
				}
				continue
			}
			if len(s.slots) < per {
				s.at[q] = len(s.slots)
				s.slots = append(s.slots, q)
				continue
			}
			slot := rng.IntN(per)
			delete(s.at, s.slots[slot])
			s.slots[slot] = q
			s.at[q] = slot
		}
	}
	return float64(hits) / float64(measured*n)
}
