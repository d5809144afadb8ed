package authz

import (
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/types"
)

// The policy's scope_match function, done natively. authz.rego defines
//
//	scope_match(ids, id) := id if { id in ids }
//	else := m[0] if { m := [e | some e in ids; contains(e, "*"); glob.match(e, null, id)] }
//
// in Rego, which any OPA runs and tests. Once a policy is compiled, the
// engine has every call of that function call nativeScopeMatch instead
// (useNativeScopeMatch), which gives the same answers for every entry
// validation accepts, and stops at the first match: one pass comparing
// strings, one over the globs, no compiled patterns. OPA's glob.match keeps its compiled patterns in a
// cache of 100 for the whole process, so a key with more globs than that
// recompiled them on every check, and one tenant's keys evicted another's;
// here a check costs at most one comparison per entry and one match per
// glob, whichever keys run beside it.
var (
	scopeMatchRef       = ast.MustParseRef("data.keygate.authz.scope_match")
	nativeScopeMatchRef = ast.MustParseRef("keygate.scope_match")

	scopeMatchDecl = &rego.Function{
		Name: "keygate.scope_match",
		Decl: types.NewFunction(types.Args(types.A, types.A), types.A),
	}
	scopeMatchBuiltin = rego.Function2(scopeMatchDecl, nativeScopeMatch)
)

// nativeScopeMatch returns the entry of ids that lets id in: id itself when
// listed, else the first entry with a `*` that matches it as a glob;
// undefined when none does, or when ids is not an array of strings or id
// not a string (the policy then denies).
//
// A batch asks about one list for every check: from the second check of
// an evaluation on, a list of more than a few entries is indexed (its
// entries in a set, its globs apart), in the evaluation's own cache, which
// ends with it. A check then costs one lookup and one match per glob.
func nativeScopeMatch(bctx rego.BuiltinContext, ids, id *ast.Term) (*ast.Term, error) {
	arr, ok := ids.Value.(*ast.Array)
	if !ok {
		return nil, nil
	}
	s, ok := id.Value.(ast.String)
	if !ok {
		return nil, nil
	}
	if arr.Len() >= scopeIndexMin && bctx.Cache != nil {
		key := scopeIndexKey{arr}
		cached, _ := bctx.Cache.Get(key)
		switch v := cached.(type) {
		case *scopeIndex:
			return v.match(string(s)), nil
		case nil:
			bctx.Cache.Put(key, scopeIndexPending{})
		default:
			idx := newScopeIndex(arr)
			bctx.Cache.Put(key, idx)
			return idx.match(string(s)), nil
		}
	}
	n := arr.Len()
	for i := range n {
		if e, ok := arr.Elem(i).Value.(ast.String); ok && e == s {
			return arr.Elem(i), nil
		}
	}
	for i := range n {
		if e, ok := arr.Elem(i).Value.(ast.String); ok && strings.IndexByte(string(e), '*') >= 0 && GlobMatch(string(e), string(s)) {
			return arr.Elem(i), nil
		}
	}
	return nil, nil
}

// scopeIndexMin is the least entries a list needs to be indexed: below,
// comparing every entry costs less than building the set.
const scopeIndexMin = 16

type scopeIndexKey struct{ arr *ast.Array }

// scopeIndexPending marks a list seen once in an evaluation.
type scopeIndexPending struct{}

// scopeIndex is one scope list ready for many checks.
type scopeIndex struct {
	exact map[string]*ast.Term
	globs []*ast.Term
}

func newScopeIndex(arr *ast.Array) *scopeIndex {
	idx := &scopeIndex{exact: make(map[string]*ast.Term, arr.Len())}
	for i := range arr.Len() {
		t := arr.Elem(i)
		e, ok := t.Value.(ast.String)
		if !ok {
			continue
		}
		if _, dup := idx.exact[string(e)]; !dup {
			idx.exact[string(e)] = t
		}
		if strings.IndexByte(string(e), '*') >= 0 {
			idx.globs = append(idx.globs, t)
		}
	}
	return idx
}

func (idx *scopeIndex) match(s string) *ast.Term {
	if t, ok := idx.exact[s]; ok {
		return t
	}
	for _, t := range idx.globs {
		if GlobMatch(string(t.Value.(ast.String)), s) {
			return t
		}
	}
	return nil
}

// GlobMatch reports whether s matches pattern, where `*` matches any run of
// characters (none included) and every other character only itself: OPA's
// glob.match(pattern, null, s) for patterns of the characters scope entries
// may hold. It matches greedily, leftmost first, which is exact for `*`
// alone, in time linear in len(s) for each `*`.
func GlobMatch(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	s, pattern = s[star:], pattern[star+1:]
	for {
		star = strings.IndexByte(pattern, '*')
		if star < 0 {
			return len(s) >= len(pattern) && s[len(s)-len(pattern):] == pattern
		}
		seg := pattern[:star]
		pattern = pattern[star+1:]
		i := strings.Index(s, seg)
		if i < 0 {
			return false
		}
		s = s[i+len(seg):]
	}
}

// useNativeScopeMatch has every call of the policy's scope_match, in every
// compiled rule, call keygate.scope_match, when the policy defines
// scope_match(ids, id). The calls are rewritten once per load rather than
// replaced with Rego's `with` in each query: a `with` is applied on every
// evaluation, and a mocked function costs a lookup, a push and a pop of
// the mocks at each call. Only the compiled copy changes; the policy's
// sources and its tests are untouched.
func (c *compiledPolicy) useNativeScopeMatch() {
	if c.native || !definesScopeMatch(c.compiler) {
		return
	}
	swap := func(call []*ast.Term) {
		if len(call) == 0 {
			return
		}
		if ref, ok := call[0].Value.(ast.Ref); ok && ref.Equal(scopeMatchRef) {
			call[0] = ast.NewTerm(nativeScopeMatchRef).SetLocation(call[0].Location)
		}
	}
	eachCall(c.compiler, swap)
	c.native = true
}

// eachCall calls fn with the terms of every call in the compiled modules:
// an expression's, or a call nested in a term; fn may replace terms.
func eachCall(c *ast.Compiler, fn func(call []*ast.Term)) {
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if terms, ok := x.Terms.([]*ast.Term); ok {
				fn(terms)
			}
		case ast.Call:
			fn(x)
		}
		return false
	})
	for _, m := range c.Modules {
		vis.Walk(m)
	}
}

// definesScopeMatch reports whether the compiled policy has the
// scope_match(ids, id) the engine evaluates natively; a policy without it
// (a replacement that matches scopes its own way) is evaluated as written.
func definesScopeMatch(c *ast.Compiler) bool {
	rules := c.GetRulesExact(scopeMatchRef)
	if len(rules) == 0 {
		return false
	}
	for _, r := range rules {
		if len(r.Head.Args) != 2 {
			return false
		}
	}
	return true
}

// capabilities are OPA's, and keygate.scope_match, which the queries name.
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = append(caps.Builtins, &ast.Builtin{Name: scopeMatchDecl.Name, Decl: scopeMatchDecl.Decl})
	return caps
}
