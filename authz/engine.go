package authz

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// The queries the engine prepares. Observers see these as the query name.
const (
	QueryDecision           = "data.keygate.authz.decision"
	QueryDecisions          = "data.keygate.authz.decisions"
	QueryManagementDecision = "data.keygate.management.decision"
)

// ReasonNoDecision is the reason of the deny given when a policy leaves its
// decision undefined.
const ReasonNoDecision = "the policy produced no decision"

// Engine evaluates keygate's Rego policies. Each Load compiles the modules
// and prepares three queries once (data.keygate.authz.decision,
// data.keygate.authz.decisions, data.keygate.management.decision); requests
// only Eval, and a reload swaps the prepared set atomically (atomic.Pointer),
// so in-flight evaluations finish on the set they started with.
type Engine struct {
	observer  Observer
	terms     *inputTerms
	policy    atomic.Pointer[preparedPolicy]
	loads     atomic.Uint64
	decisions *decisionCache // nil: no decision cache
	inputs    principalTerms

	// mappings caches forward auth's HTTP mappings; nil with no decision
	// cache.
	mappings *shardedCache[httpKey, HTTPMapping]

	nativeScopeMatch bool // see scope_match.go
}

// EngineOptions configures an Engine. A nil Observer observes nothing;
// DecisionCacheSize bounds the answers remembered for a pure policy (0: none).
type EngineOptions struct {
	Observer          Observer
	DecisionCacheSize int
	// RegoScopeMatch evaluates the policy's scope_match in Rego, as OPA
	// does, rather than natively (see nativeScopeMatch); for tests that
	// compare the two.
	RegoScopeMatch bool
}

// preparedPolicy is one compiled policy load; it is never changed after
// Load publishes it.
type preparedPolicy struct {
	decision   rego.PreparedEvalQuery
	decisions  rego.PreparedEvalQuery
	management rego.PreparedEvalQuery
	gen        uint64 // tells this load's cached answers from older ones'
	pure       bool   // answers depend on principal, resource and action only
	impurity   string // why not, when not

	// http maps forwarded requests, when the policy defines it (mapsHTTP);
	// its mappings are cached while they depend on the request alone.
	http     rego.PreparedEvalQuery
	mapsHTTP bool
	httpPure bool
}

// NewEngine returns an engine serving modules (file name → Rego source).
func NewEngine(ctx context.Context, modules map[string]string, opts EngineOptions) (*Engine, error) {
	e := &Engine{observer: opts.Observer, terms: newInputTerms(), decisions: newDecisionCache(opts.DecisionCacheSize)}
	if e.decisions != nil {
		e.mappings = newShardedCache[httpKey, HTTPMapping](maxHTTPMappings)
	}
	e.inputs.m = newChurnMap[any, *ast.Term](maxPrincipalTerms)
	if e.observer == nil {
		e.observer = NopObserver{}
	}
	e.nativeScopeMatch = !opts.RegoScopeMatch
	if err := e.Load(ctx, modules); err != nil {
		return nil, err
	}
	return e, nil
}

// Load compiles modules and, only when they compile and define every query
// the engine needs, replaces the policy being served. On error the previous
// policy keeps serving.
func (e *Engine) Load(ctx context.Context, modules map[string]string) error {
	if len(modules) == 0 {
		return Errorf(EINVALID, "policy does not compile: no policy modules")
	}
	parsed := make(map[string]*ast.Module, len(modules))
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		m, err := ast.ParseModuleWithOpts(name, modules[name], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return Errorf(EINVALID, "policy does not compile: %s", err)
		}
		parsed[name] = m
	}
	compiler := ast.NewCompiler().WithCapabilities(capabilities())
	compiler.Compile(parsed)
	if compiler.Failed() {
		return Errorf(EINVALID, "policy does not compile: %s", compiler.Errors)
	}
	for _, q := range []string{QueryDecision, QueryDecisions, QueryManagementDecision} {
		if len(compiler.GetRulesExact(ast.MustParseRef(q))) == 0 {
			return Errorf(EINVALID, "policy does not define %s", q)
		}
	}

	// The policies read no data; one empty store serves all three queries.
	store := inmem.New()
	p := &preparedPolicy{gen: e.loads.Add(1)}
	p.pure, p.impurity = policyPurity(parsed)
	native := e.nativeScopeMatch && definesScopeMatch(compiler)
	for _, pq := range []struct {
		query  string
		dst    *rego.PreparedEvalQuery
		native bool
	}{
		{QueryDecision, &p.decision, native},
		{QueryDecisions, &p.decisions, native},
		{QueryManagementDecision, &p.management, false},
	} {
		query, opts := pq.query, []func(*rego.Rego){rego.Compiler(compiler), rego.Store(store), rego.GenerateJSON(keepTerm)}
		if pq.native {
			query += " with " + scopeMatchRef.String() + " as " + scopeMatchDecl.Name
			opts = append(opts, scopeMatchBuiltin)
		}
		prepared, err := rego.New(append(opts, rego.Query(query))...).PrepareForEval(ctx)
		if err != nil {
			return Errorf(EINVALID, "policy does not compile: %s", err)
		}
		*pq.dst = prepared
	}
	if err := prepareHTTP(ctx, compiler, store, parsed, p); err != nil {
		return err
	}
	e.policy.Store(p)
	return nil
}

// DecisionCaching reports whether answers of the loaded policy are cached,
// and when they are not although a cache is configured, why (the policy
// reads the request's time, say).
func (e *Engine) DecisionCaching() (bool, string) {
	p := e.policy.Load()
	switch {
	case e.decisions == nil:
		return false, "the decision cache is off"
	case !p.pure:
		return false, "the policy is not a function of principal, resource and action: " + p.impurity
	}
	return true, ""
}

// DecisionCacheStats reports the counters and size of the decision cache
// and of forward auth's mappings with it; zero when the cache is off.
func (e *Engine) DecisionCacheStats() DecisionCacheStats {
	if e.decisions == nil {
		return DecisionCacheStats{}
	}
	st, m := e.decisions.stats(), e.mappings.stats()
	st.Entries += m.Entries
	st.Hits += m.Hits
	st.Misses += m.Misses
	st.Evictions += m.Evictions
	return st
}

// keepTerm hands results back as AST terms, skipping OPA's conversion to
// JSON-like Go values; toDecision reads them directly.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// Decide evaluates data.keygate.authz.decision for one check. A nil
// principal is passed as absent, which the policy denies.
func (e *Engine) Decide(ctx context.Context, p *Principal, r Resource, action string, dc DecisionContext) (Decision, error) {
	pol := e.policy.Load()
	cache := e.cacheFor(pol, p)
	var key decisionKey
	if cache != nil {
		key = decisionKey{principal: p.identity(), gen: pol.gen, rtype: r.Type, id: r.ID, tenant: r.TenantID, action: action}
		if d, ok := cache.get(key); ok {
			e.observer.CachedDecisions(ctx, QueryDecision, 1, boolCount(d.Allow))
			return d, nil
		}
	}
	ctx, done := e.observer.StartEvaluation(ctx, QueryDecision, 1)
	t := e.terms
	input := ast.NewObject(
		[2]*ast.Term{t.principal, e.principalTerm(p)},
		[2]*ast.Term{t.resource, t.resourceTerm(r)},
		[2]*ast.Term{t.action, ast.StringTerm(action)},
		[2]*ast.Term{t.context, t.contextTerm(dc)},
	)
	d, err := e.decide(ctx, pol.decision, input)
	done(boolCount(d.Allow), err)
	if err == nil && cache != nil {
		cache.put(key, d)
	}
	return d, err
}

// cacheFor returns the decision cache when answers for p under pol may be
// cached: a pure policy and a principal that names its key.
func (e *Engine) cacheFor(pol *preparedPolicy, p *Principal) *decisionCache {
	if e.decisions == nil || !pol.pure || p == nil || p.KeyID == "" {
		return nil
	}
	return e.decisions
}

func (e *Engine) decide(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (Decision, error) {
	v, err := eval(ctx, pq, input)
	if err != nil {
		return denied(), err
	}
	if v == nil {
		return Decision{Allow: false, Reasons: []string{ReasonNoDecision}}, nil
	}
	return e.terms.toDecision(v)
}

// DecideBatch answers every check in order: cached answers from the cache,
// the rest in one evaluation of data.keygate.authz.decisions.
func (e *Engine) DecideBatch(ctx context.Context, p *Principal, checks []Check, dc DecisionContext) ([]Decision, error) {
	pol := e.policy.Load()
	cache := e.cacheFor(pol, p)
	out := make([]Decision, len(checks))
	missing := make([]int, 0, len(checks))
	var keys []decisionKey
	if cache != nil {
		keys = make([]decisionKey, len(checks))
		hits, allowed := 0, 0
		for i, c := range checks {
			keys[i] = decisionKey{principal: p.identity(), gen: pol.gen, rtype: c.Resource.Type, id: c.Resource.ID, tenant: c.Resource.TenantID, action: c.Action}
			if d, ok := cache.get(keys[i]); ok {
				out[i] = d
				hits++
				allowed += boolCount(d.Allow)
				continue
			}
			missing = append(missing, i)
		}
		if hits > 0 {
			e.observer.CachedDecisions(ctx, QueryDecisions, hits, allowed)
		}
		if len(missing) == 0 {
			return out, nil
		}
	} else {
		for i := range checks {
			missing = append(missing, i)
		}
	}

	ctx, done := e.observer.StartEvaluation(ctx, QueryDecisions, len(missing))
	t := e.terms
	items := make([]*ast.Term, len(missing))
	for j, i := range missing {
		c := checks[i]
		items[j] = ast.NewTerm(ast.NewObject(
			[2]*ast.Term{t.resource, t.resourceTerm(c.Resource)},
			[2]*ast.Term{t.action, ast.StringTerm(c.Action)},
		))
	}
	input := ast.NewObject(
		[2]*ast.Term{t.principal, e.principalTerm(p)},
		[2]*ast.Term{t.checks, ast.ArrayTerm(items...)},
		[2]*ast.Term{t.context, t.contextTerm(dc)},
	)
	answers, allowed, err := e.decideBatch(ctx, pol, input, len(missing))
	done(allowed, err)
	if err != nil {
		return nil, err
	}
	for j, i := range missing {
		out[i] = answers[j]
		if cache != nil {
			cache.put(keys[i], answers[j])
		}
	}
	return out, nil
}

func (e *Engine) decideBatch(ctx context.Context, pol *preparedPolicy, input ast.Value, n int) ([]Decision, int, error) {
	v, err := eval(ctx, pol.decisions, input)
	if err != nil {
		return nil, 0, err
	}
	if v == nil {
		// Undefined is a deny for every check, as for a single decision.
		out := make([]Decision, n)
		for i := range out {
			out[i] = Decision{Allow: false, Reasons: []string{ReasonNoDecision}}
		}
		return out, 0, nil
	}
	arr, ok := v.(*ast.Array)
	if !ok || arr.Len() != n {
		return nil, 0, Errorf(EINTERNAL, "%s must be an array of %d decisions", QueryDecisions, n)
	}
	out := make([]Decision, n)
	allowed := 0
	for i := range n {
		d, err := e.terms.toDecision(arr.Elem(i).Value)
		if err != nil {
			return nil, 0, err
		}
		out[i] = d
		allowed += boolCount(d.Allow)
	}
	return out, allowed, nil
}

// DecideManagement evaluates data.keygate.management.decision; a refusal
// may name invalid fields (see Decision.Fields).
func (e *Engine) DecideManagement(ctx context.Context, in ManagementInput) (Decision, error) {
	ctx, done := e.observer.StartEvaluation(ctx, QueryManagementDecision, 1)
	v, err := eval(ctx, e.policy.Load().management, e.terms.managementInput(in))
	var d Decision
	switch {
	case err != nil:
		d = denied()
	case v == nil:
		d = Decision{Allow: false, Reasons: []string{ReasonNoDecision}}
	default:
		d, err = e.terms.toManagementDecision(v)
	}
	done(boolCount(d.Allow), err)
	return d, err
}

// eval runs one prepared query and returns its value, nil when undefined.
// Cancellation follows ctx through context.AfterFunc rather than the
// goroutine OPA would start for every evaluation.
func eval(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value) (ast.Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, evalError(err)
	}
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := pq.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalVirtualCache(newRuleCache()),
	)
	if err != nil {
		return nil, evalError(err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, Errorf(EINTERNAL, "policy result is a %T, not an AST term", rs[0].Expressions[0].Value)
	}
	return t.Value, nil
}

// evalError keeps OPA's error for logs while callers see EINTERNAL and a
// message that reveals nothing of the policy.
func evalError(err error) error {
	return fmt.Errorf("%w: %w", Errorf(EINTERNAL, "policy evaluation failed"), err)
}

func denied() Decision { return Decision{Allow: false} }

func boolCount(b bool) int {
	if b {
		return 1
	}
	return 0
}

// toDecision reads {"allow": bool, "reasons": [string]} (other fields are
// ignored, so a policy may carry more); anything else is a deny and an
// EINTERNAL error, so a broken policy never allows.
func (t *inputTerms) toDecision(v ast.Value) (Decision, error) {
	bad := func() (Decision, error) {
		return denied(), Errorf(EINTERNAL, `policy decision must be {"allow": boolean, "reasons": [string]}`)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return bad()
	}
	allowTerm, reasonsTerm := obj.Get(t.allow), obj.Get(t.reasons)
	if allowTerm == nil || reasonsTerm == nil {
		return bad()
	}
	allow, ok := allowTerm.Value.(ast.Boolean)
	if !ok {
		return bad()
	}
	arr, ok := reasonsTerm.Value.(*ast.Array)
	if !ok {
		return bad()
	}
	reasons := make([]string, arr.Len())
	for i := range reasons {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return bad()
		}
		reasons[i] = string(s)
	}
	return Decision{Allow: bool(allow), Reasons: reasons}, nil
}

// inputTerms holds the constant terms of the input documents, built once so
// a request only allocates what varies. Terms are never modified after
// construction, so evaluations share them.
type inputTerms struct {
	principal, resource, action, context, checks   *ast.Term
	typ, id, keyID, tenantID, userID, scope        *ast.Term
	time, ip, actor, roles, target, allow, reasons *ast.Term
	apiKey                                         *ast.Term
	scopeKeys                                      [4]*ast.Term
}

func newInputTerms() *inputTerms {
	s := ast.StringTerm
	t := &inputTerms{
		principal: s("principal"), resource: s("resource"), action: s("action"),
		context: s("context"), checks: s("checks"),
		typ: s("type"), id: s("id"), keyID: s("key_id"), tenantID: s("tenant_id"),
		userID: s("user_id"), scope: s("scope"), time: s("time"), ip: s("ip"),
		actor: s("actor"), roles: s("roles"), target: s("target"),
		allow: s("allow"), reasons: s("reasons"), apiKey: s(PrincipalTypeAPIKey),
	}
	for i, rt := range ResourceTypes() {
		t.scopeKeys[i] = s(rt.ScopeField())
	}
	return t
}

// principalTerm returns the principal as an input term, reusing the term of
// a recently seen principal: a key's scope is most of the input, and the
// keys in use now are few. Principals are snapshots, so a term never goes
// stale.
func (e *Engine) principalTerm(p *Principal) *ast.Term {
	if p == nil {
		return ast.InternedNullTerm
	}
	if t := e.inputs.get(p); t != nil {
		return t
	}
	t := e.terms.principalTerm(p)
	if p.KeyID != "" {
		e.inputs.put(p, t)
	}
	return t
}

// principalTerms keeps the input terms of the principals seen last,
// maxPrincipalTerms at most: a term of a large scope costs kilobytes, so keeping one
// for every cached key would cost more than building the rare ones again.
// Eviction is random, which keeps the busy keys with high probability.
type principalTerms struct {
	mu sync.RWMutex
	m  churnMap[any, *ast.Term] // by Principal.identity
}

const maxPrincipalTerms = 1024

func (c *principalTerms) get(p *Principal) *ast.Term {
	c.mu.RLock()
	t, _ := c.m.get(p.identity())
	c.mu.RUnlock()
	return t
}

func (c *principalTerms) put(p *Principal, t *ast.Term) {
	id := p.identity()
	c.mu.Lock()
	if _, ok := c.m.get(id); !ok && c.m.len() >= maxPrincipalTerms {
		c.m.evictOne()
	}
	c.m.put(id, t)
	c.mu.Unlock()
}

func (t *inputTerms) principalTerm(p *Principal) *ast.Term {
	var scope [4][2]*ast.Term
	for i, rt := range ResourceTypes() {
		scope[i] = [2]*ast.Term{t.scopeKeys[i], stringsTerm(p.Scope.IDs(rt))}
	}
	return ast.ObjectTerm(
		[2]*ast.Term{t.typ, t.apiKey},
		[2]*ast.Term{t.keyID, ast.StringTerm(p.KeyID)},
		[2]*ast.Term{t.tenantID, ast.StringTerm(p.TenantID)},
		[2]*ast.Term{t.userID, ast.StringTerm(p.UserID)},
		[2]*ast.Term{t.scope, ast.ObjectTerm(scope[:]...)},
	)
}

func (t *inputTerms) resourceTerm(r Resource) *ast.Term {
	if r.TenantID == "" {
		return ast.ObjectTerm(
			[2]*ast.Term{t.typ, ast.StringTerm(string(r.Type))},
			[2]*ast.Term{t.id, ast.StringTerm(r.ID)},
		)
	}
	return ast.ObjectTerm(
		[2]*ast.Term{t.typ, ast.StringTerm(string(r.Type))},
		[2]*ast.Term{t.id, ast.StringTerm(r.ID)},
		[2]*ast.Term{t.tenantID, ast.StringTerm(r.TenantID)},
	)
}

// contextTerm carries the time (RFC 3339, UTC) and client IP, each only
// when known.
func (t *inputTerms) contextTerm(dc DecisionContext) *ast.Term {
	var kv [2][2]*ast.Term
	n := 0
	if !dc.Time.IsZero() {
		kv[n] = [2]*ast.Term{t.time, ast.StringTerm(dc.Time.UTC().Format(time.RFC3339Nano))}
		n++
	}
	if dc.IP != "" {
		kv[n] = [2]*ast.Term{t.ip, ast.StringTerm(dc.IP)}
		n++
	}
	return ast.ObjectTerm(kv[:n]...)
}

// stringsTerm allocates the terms of ss in one block.
func stringsTerm(ss []string) *ast.Term {
	block := make([]ast.Term, len(ss))
	items := make([]*ast.Term, len(ss))
	for i, s := range ss {
		block[i].Value = ast.String(s)
		items[i] = &block[i]
	}
	return ast.ArrayTerm(items...)
}

// ReadPolicies returns every *.rego file at the root of fsys except tests
// (*_test.rego), keyed by file name, ready for NewEngine or Load.
func ReadPolicies(fsys fs.FS) (map[string]string, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	modules := map[string]string{}
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || path.Ext(name) != ".rego" || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read policy %s: %w", name, err)
		}
		modules[name] = string(src)
	}
	if len(modules) == 0 {
		return nil, Errorf(EINVALID, "no policy files (*.rego, not *_test.rego) found")
	}
	return modules, nil
}
