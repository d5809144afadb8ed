package authz

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
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
	mask       *rego.PreparedEvalQuery // data.system.log.mask; nil when the policy has none
	gen        uint64                  // tells this load's cached answers from older ones'
	pure       bool                    // answers depend on principal, resource and action only
	impurity   string                  // why not, when not
	revision   string                  // PolicySet.Revision

	// http maps forwarded requests, when the policy defines it (mapsHTTP);
	// its mappings are cached while they depend on the request alone.
	http     rego.PreparedEvalQuery
	mapsHTTP bool
	httpPure bool
}

// NewEngine returns an engine serving modules (file name → Rego source).
func NewEngine(ctx context.Context, modules map[string]string, opts EngineOptions) (*Engine, error) {
	return NewEngineFromSet(ctx, PolicySet{Modules: modules}, opts)
}

// NewEngineFromSet returns an engine serving set, once it loads (see
// LoadSet).
func NewEngineFromSet(ctx context.Context, set PolicySet, opts EngineOptions) (*Engine, error) {
	e := &Engine{observer: opts.Observer, terms: newInputTerms(), decisions: newDecisionCache(opts.DecisionCacheSize)}
	if e.decisions != nil {
		e.mappings = newShardedCache[httpKey, HTTPMapping](maxHTTPMappings)
	}
	e.inputs.m = newChurnMap[any, *ast.Term](maxPrincipalTerms)
	if e.observer == nil {
		e.observer = NopObserver{}
	}
	e.nativeScopeMatch = !opts.RegoScopeMatch
	if err := e.LoadSet(ctx, set); err != nil {
		return nil, err
	}
	return e, nil
}

// Load serves modules, with no tests and no data (see LoadSet).
func (e *Engine) Load(ctx context.Context, modules map[string]string) error {
	return e.LoadSet(ctx, PolicySet{Modules: modules})
}

// LoadSet compiles set and, only when it compiles strictly (`opa check
// --strict`), defines every query the engine needs and passes its Rego
// tests, replaces the policy being served. On error the previous policy
// keeps serving. Returns EINVALID saying why the set was refused.
func (e *Engine) LoadSet(ctx context.Context, set PolicySet) error {
	c, err := compilePolicy(ctx, set, compileOptions{strict: true})
	if err != nil {
		return err
	}
	if err := c.checkRequired(); err != nil {
		return err
	}
	if len(set.Tests) > 0 {
		rep, err := RunPolicyTests(ctx, set, TestOptions{})
		if err != nil {
			return err
		}
		if !rep.OK() {
			return Errorf(EINVALID, "policy tests fail (%d of %d): %s", rep.Failed+rep.Errored, len(rep.Results), summarizeErrors(rep.Problems(), 5))
		}
	}

	p := &preparedPolicy{revision: set.Revision()}
	p.pure, p.impurity = policyPurity(c.modules)
	if e.nativeScopeMatch {
		c.useNativeScopeMatch()
	}
	type query struct {
		query string
		dst   *rego.PreparedEvalQuery
	}
	queries := []query{
		{QueryDecision, &p.decision},
		{QueryDecisions, &p.decisions},
		{QueryManagementDecision, &p.management},
	}
	if c.definesMask() {
		p.mask = &rego.PreparedEvalQuery{}
		queries = append(queries, query{QueryLogMask, p.mask})
	}
	for _, q := range queries {
		prepared, err := c.prepare(ctx, q.query, rego.GenerateJSON(keepTerm))
		if err != nil {
			return err
		}
		*q.dst = prepared
	}
	if err := prepareHTTP(ctx, c, p); err != nil {
		return err
	}
	p.gen = e.loads.Add(1)
	e.policy.Store(p)
	return nil
}

// prepare prepares query over the compiled policy and its data, with
// keygate.scope_match when the policy calls it (useNativeScopeMatch) or
// the query does (mocked).
func (c *compiledPolicy) prepare(ctx context.Context, query string, opts ...func(*rego.Rego)) (rego.PreparedEvalQuery, error) {
	body, err := parseQuery(query, c.mocked)
	if err != nil {
		return rego.PreparedEvalQuery{}, err
	}
	opts = append(opts, rego.Compiler(c.compiler), rego.Store(c.store), rego.ParsedQuery(body))
	if c.native || c.mocked {
		opts = append(opts, scopeMatchBuiltin)
	}
	prepared, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, Errorf(EINVALID, "policy does not compile: %s", err)
	}
	return prepared, nil
}

// Revision is the revision (PolicySet.Revision) of the policy being
// served.
func (e *Engine) Revision() string { return e.policy.Load().revision }

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
