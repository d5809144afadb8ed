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
// the loaded policy live; both are part of the cache key.
type decisionCache = shardedCache[decisionKey, Decision]

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

func newDecisionCache(size int) *decisionCache { return newShardedCache[decisionKey, Decision](size) }

// shardedCache is a bounded cache of policy answers, in shards that each
// hold an equal share of its size. Eviction is random within a shard:
// cheap, and close to LRU for a hot set.
type shardedCache[K comparable, V any] struct {
	seed   maphash.Seed
	shards [cacheShardCount]cacheShardOf[K, V]
	per    int // entries per shard
}

const cacheShardCount = 16

type cacheShardOf[K comparable, V any] struct {
	mu sync.RWMutex
	m  churnMap[K, V]

	hits, misses, evictions atomic.Int64
}

// newShardedCache holds about size entries; nil when size is not positive.
func newShardedCache[K comparable, V any](size int) *shardedCache[K, V] {
	if size <= 0 {
		return nil
	}
	c := &shardedCache[K, V]{seed: maphash.MakeSeed(), per: size/cacheShardCount + 1}
	for i := range c.shards {
		c.shards[i].m = newChurnMap[K, V](c.per)
	}
	return c
}

func (c *shardedCache[K, V]) shard(k K) *cacheShardOf[K, V] {
	return &c.shards[maphash.Comparable(c.seed, k)%cacheShardCount]
}

func (c *shardedCache[K, V]) get(k K) (V, bool) {
	s := c.shard(k)
	s.mu.RLock()
	v, ok := s.m.get(k)
	s.mu.RUnlock()
	if ok {
		s.hits.Add(1)
	} else {
		s.misses.Add(1)
	}
	return v, ok
}

func (c *shardedCache[K, V]) put(k K, v V) {
	s := c.shard(k)
	s.mu.Lock()
	if _, ok := s.m.get(k); !ok && s.m.len() >= c.per && s.m.evictOne() {
		s.evictions.Add(1)
	}
	s.m.put(k, v)
	s.mu.Unlock()
}

// DecisionCacheStats are the decision cache's counters since the engine
// was made, and its size.
type DecisionCacheStats struct {
	Entries                 int
	Hits, Misses, Evictions int64
}

func (c *shardedCache[K, V]) stats() DecisionCacheStats {
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

// purityRule says what a cacheable policy may read: the input members
// fields, in the modules inputIn selects; and no nondeterministic builtin,
// in the modules builtinsIn selects.
type purityRule struct {
	fields              map[string]bool
	fieldList           string
	inputIn, builtinsIn func(pkg ast.Ref) bool
}

var (
	managementPackage = ast.MustParseRef("data.keygate.management")
	httpPackage       = ast.MustParseRef("data.keygate.http")
	systemPackage     = ast.MustParseRef("data.system") // masks decision logs, decides nothing
)

// resourcePurity is the rule of the resource policy's answers: a function
// of principal, resource and action alone. The management policy is never
// cached, the http policy has an input of its own, and data.system masks
// decision logs, deciding nothing.
var resourcePurity = purityRule{
	fields:    map[string]bool{"principal": true, "resource": true, "action": true, "checks": true},
	fieldList: "principal, resource, action and checks",
	inputIn: func(pkg ast.Ref) bool {
		return !pkg.HasPrefix(managementPackage) && !pkg.HasPrefix(httpPackage) && !pkg.HasPrefix(systemPackage)
	},
}

// httpPurity is the rule of the http policy's mappings: a function of the
// forwarded request alone; a nondeterministic builtin anywhere but the
// management policy may be what it calls.
var httpPurity = purityRule{
	fields:     map[string]bool{"method": true, "path": true, "segments": true},
	fieldList:  "method, path and segments",
	inputIn:    func(pkg ast.Ref) bool { return pkg.HasPrefix(httpPackage) },
	builtinsIn: func(pkg ast.Ref) bool { return !pkg.HasPrefix(managementPackage) && !pkg.HasPrefix(systemPackage) },
}

// policyPurity reports whether the resource policy's decision is
// a function of principal, resource and action alone, and if not, why.
func policyPurity(modules map[string]*ast.Module) (bool, string) {
	return resourcePurity.check(modules)
}

// check reports whether the policy's answers are a function of the input
// fields the rule allows, and if not, why. It looks at every module it
// selects: a read of another input member, of the whole input (but
// object.get(input, "<allowed field>", …)), of an input field chosen at
// run time, or a call of a nondeterministic builtin makes answers
// uncacheable.
//
// It reads the modules as parsed: compiling rewrites object.get(input, …)
// into a copy of the whole input.
func (r purityRule) check(modules map[string]*ast.Module) (bool, string) {
	reason := ""
	checkInput, checkBuiltins := true, true
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
				if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic && checkBuiltins {
					reason = fmt.Sprintf("it calls the nondeterministic builtin %s", name)
					return true
				}
				if name == "object.get" && len(call) > 2 && call[1].Value.Compare(ast.InputRootRef) == 0 && checkInput {
					if !r.pureGetPath(call[2].Value) {
						reason = "it reads input through object.get with a path outside " + r.fieldList
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
			if v.HasPrefix(ast.InputRootRef) && checkInput {
				if len(v) < 2 {
					reason = "it reads the whole input"
					return true
				}
				s, ok := v[1].Value.(ast.String)
				if !ok || !r.fields[string(s)] {
					reason = fmt.Sprintf("it reads %v", v[:2])
					return true
				}
			}
		}
		return false
	}
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		m := modules[name]
		checkInput = r.inputIn(m.Package.Path)
		checkBuiltins = checkInput || r.builtinsIn != nil && r.builtinsIn(m.Package.Path)
		if !checkInput && !checkBuiltins {
			continue
		}
		ast.NewGenericVisitor(visit).Walk(m)
		if reason != "" {
			return false, fmt.Sprintf("%s (%s)", reason, name)
		}
	}
	return true, ""
}

func (r purityRule) pureGetPath(v ast.Value) bool {
	switch p := v.(type) {
	case ast.String:
		return r.fields[string(p)]
	case *ast.Array:
		if p.Len() == 0 {
			return false
		}
		s, ok := p.Elem(0).Value.(ast.String)
		return ok && r.fields[string(s)]
	}
	return false
}
