package authz

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

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
	d, err := e.decide(ctx, pol.decision, e.singleInput(p, r, action, dc))
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
	asked := checks
	if len(missing) < len(checks) {
		asked = make([]Check, len(missing))
		for j, i := range missing {
			asked[j] = checks[i]
		}
	}
	answers, allowed, err := e.decideBatch(ctx, pol, e.batchInput(p, asked, dc), len(missing))
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
