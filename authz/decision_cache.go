package authz

import (
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// decisionCache remembers the answers of a pure policy: one whose decision
// depends only on the principal, the resource and the action (not on the
// request's time or IP, and calling no nondeterministic builtin). A key's
// principal is a snapshot that never changes (a changed key is a new
// principal), so an answer stays right for as long as that principal and
// the loaded policy live; both are part of the cache key. Eviction is
// random within a shard: cheap, and close to LRU for a hot set.
type decisionCache struct {
	seed   maphash.Seed
	shards [decisionShards]decisionShard
	per    int // entries per shard
}

const decisionShards = 16

type decisionShard struct {
	mu sync.RWMutex
	m  churnMap[decisionKey, Decision]

	hits, misses, evictions atomic.Int64
}

// decisionKey names one question. The principal is named by its identity
// (a pointer, which the map keeps alive, so it cannot be reused while
// cached).
type decisionKey struct {
	principal any
	gen       uint64
	rtype     ResourceType
	id        string
	tenant    string
	action    string
}

func newDecisionCache(size int) *decisionCache {
	if size <= 0 {
		return nil
	}
	c := &decisionCache{seed: maphash.MakeSeed(), per: size/decisionShards + 1}
	for i := range c.shards {
		c.shards[i].m = newChurnMap[decisionKey, Decision](c.per)
	}
	return c
}

func (c *decisionCache) shard(k decisionKey) *decisionShard {
	return &c.shards[maphash.Comparable(c.seed, k)%decisionShards]
}

func (c *decisionCache) get(k decisionKey) (Decision, bool) {
	s := c.shard(k)
	s.mu.RLock()
	d, ok := s.m.get(k)
	s.mu.RUnlock()
	if ok {
		s.hits.Add(1)
	} else {
		s.misses.Add(1)
	}
	return d, ok
}

func (c *decisionCache) put(k decisionKey, d Decision) {
	s := c.shard(k)
	s.mu.Lock()
	if _, ok := s.m.get(k); !ok && s.m.len() >= c.per && s.m.evictOne() {
		s.evictions.Add(1)
	}
	s.m.put(k, d)
	s.mu.Unlock()
}

// DecisionCacheStats are the decision cache's counters since the engine
// was made, and its size.
type DecisionCacheStats struct {
	Entries                 int
	Hits, Misses, Evictions int64
}

func (c *decisionCache) stats() DecisionCacheStats {
	var st DecisionCacheStats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		st.Entries += s.m.len()
		s.mu.RUnlock()
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		st.Evictions += s.evictions.Load()
	}
	return st
}

// pureInputFields are the parts of the input a cacheable policy may read.
var pureInputFields = map[string]bool{"principal": true, "resource": true, "action": true, "checks": true}

// policyPurity reports whether the resource policy's decision is
// a function of principal, resource and action alone, and if not, why. It
// looks at every module: a read of input.context, of the whole input (but
// object.get(input, "<allowed field>", …)), of an input field chosen at run
// time, or a call of a nondeterministic builtin makes answers uncacheable.
//
// It reads the modules as parsed: compiling rewrites object.get(input, …)
// into a copy of the whole input.
func policyPurity(modules map[string]*ast.Module) (bool, string) {
	reason := ""
	var visit func(x any) bool
	visit = func(x any) bool {
		if reason != "" {
			return true
		}
		var call []*ast.Term // operator and arguments
		switch v := x.(type) {
		case ast.Call:
			call = v
		case *ast.Expr:
			if v.IsCall() {
				call = v.Terms.([]*ast.Term)
			}
		}
		if call != nil {
			if ref, ok := call[0].Value.(ast.Ref); ok {
				name := ref.String()
				if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic {
					reason = fmt.Sprintf("it calls the nondeterministic builtin %s", name)
					return true
				}
				if name == "object.get" && len(call) > 2 && call[1].Value.Compare(ast.InputRootRef) == 0 {
					if !pureGetPath(call[2].Value) {
						reason = "it reads input through object.get with a path outside " + pureFieldList()
						return true
					}
					for _, arg := range call[2:] {
						ast.NewGenericVisitor(visit).Walk(arg)
					}
					if e, ok := x.(*ast.Expr); ok {
						for _, w := range e.With {
							ast.NewGenericVisitor(visit).Walk(w)
						}
					}
					return true
				}
			}
		}
		switch v := x.(type) {
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				if len(v) < 2 {
					reason = "it reads the whole input"
					return true
				}
				s, ok := v[1].Value.(ast.String)
				if !ok || !pureInputFields[string(s)] {
					reason = fmt.Sprintf("it reads %v", v[:2])
					return true
				}
			}
		}
		return false
	}
	management, http := ast.MustParseRef("data.keygate.management"), ast.MustParseRef("data.keygate.http")
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		m := modules[name]
		if m.Package.Path.HasPrefix(management) || m.Package.Path.HasPrefix(http) {
			continue // policies of other inputs, whose answers are not cached
		}
		ast.NewGenericVisitor(visit).Walk(m)
		if reason != "" {
			return false, fmt.Sprintf("%s (%s)", reason, name)
		}
	}
	return true, ""
}

func pureGetPath(v ast.Value) bool {
	switch p := v.(type) {
	case ast.String:
		return pureInputFields[string(p)]
	case *ast.Array:
		if p.Len() == 0 {
			return false
		}
		s, ok := p.Elem(0).Value.(ast.String)
		return ok && pureInputFields[string(s)]
	}
	return false
}

func pureFieldList() string { return "principal, resource, action and checks" }
