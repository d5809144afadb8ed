package authz

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// ruleCache is the evaluation's virtual cache. It memoizes the values of
// rules, as OPA's does, but not function calls: OPA's cache builds a hash
// map per argument of every call, most of the allocations of a decision,
// and keygate's policies call each function once per check.
type ruleCache struct {
	frames [][]ruleCacheEntry
}

type ruleCacheEntry struct {
	ref   ast.Ref
	value *ast.Term // nil: the rule is undefined
}

func newRuleCache() *ruleCache {
	return &ruleCache{frames: make([][]ruleCacheEntry, 1, 2)}
}

// Push implements topdown.VirtualCache.
func (c *ruleCache) Push() { c.frames = append(c.frames, nil) }

// Pop implements topdown.VirtualCache.
func (c *ruleCache) Pop() {
	if n := len(c.frames); n > 0 {
		c.frames = c.frames[:n-1]
	}
}

// Get implements topdown.VirtualCache.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if len(c.frames) == 0 {
		return nil, false
	}
	for _, e := range c.frames[len(c.frames)-1] {
		if e.ref.Equal(ref) {
			return e.value, e.value == nil
		}
	}
	return nil, false
}

// Put implements topdown.VirtualCache; function calls, whose key starts
// with the function's ref rather than the var data, are not kept.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	if len(ref) == 0 || len(c.frames) == 0 {
		return
	}
	if _, ok := ref[0].Value.(ast.Var); !ok {
		return
	}
	top := len(c.frames) - 1
	c.frames[top] = append(c.frames[top], ruleCacheEntry{ref: slices.Clone(ref), value: value})
}

// Keys implements topdown.VirtualCache.
func (c *ruleCache) Keys() []ast.Ref {
	if len(c.frames) == 0 {
		return nil
	}
	var keys []ast.Ref
	for _, e := range c.frames[len(c.frames)-1] {
		if e.value != nil {
			keys = append(keys, e.ref)
		}
	}
	return keys
}
