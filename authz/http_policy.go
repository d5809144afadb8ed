package authz

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// QueryHTTPDecision maps a forwarded HTTP request to the check it means.
const QueryHTTPDecision = "data.keygate.http.decision"

// ReasonNoHTTPMapping denies every forwarded request when the loaded
// policy has no HTTP mapping.
const ReasonNoHTTPMapping = "the policy does not map HTTP requests (data.keygate.http.decision is not defined)"

var httpDecisionRef = ast.MustParseRef(QueryHTTPDecision)

// Bounds of the cache of mappings: entries, and the longest path cached
// (a longer one is mapped each time).
const (
	maxHTTPMappings      = 4096
	maxCachedHTTPPathLen = 256
)

// httpKey names one forwarded request under one policy load.
type httpKey struct {
	gen          uint64
	method, path string
}

// prepareHTTP prepares data.keygate.http.decision when the policy defines
// it. It is optional, so a policy folder written before forward auth still
// loads; forward auth then denies every request, saying why.
func prepareHTTP(ctx context.Context, c *compiledPolicy, p *preparedPolicy) error {
	if len(c.compiler.GetRulesExact(httpDecisionRef)) == 0 {
		return nil
	}
	prepared, err := c.prepare(ctx, QueryHTTPDecision, rego.GenerateJSON(keepTerm))
	if err != nil {
		return err
	}
	p.http, p.mapsHTTP = prepared, true
	p.httpPure, _ = httpPurity.check(c.modules)
	return nil
}

// MapsHTTP reports whether the loaded policy maps forwarded HTTP requests
// (defines data.keygate.http.decision).
func (e *Engine) MapsHTTP() bool { return e.policy.Load().mapsHTTP }

// MapHTTP evaluates data.keygate.http.decision for a request a gateway
// forwards: the check it means, or the reasons it means none. A request
// keygate cannot read safely (see parseHTTPRequest) is refused before the
// policy sees it. Errors are EINTERNAL (a broken policy); callers deny.
// The mapping may come from a cache: callers never change it.
func (e *Engine) MapHTTP(ctx context.Context, r HTTPRequest) (HTTPMapping, error) {
	in, reason := parseHTTPRequest(r)
	if reason != "" {
		return HTTPMapping{Reasons: []string{reason}}, nil
	}
	pol := e.policy.Load()
	if !pol.mapsHTTP {
		return HTTPMapping{Reasons: []string{ReasonNoHTTPMapping}}, nil
	}
	// A mapping of a pure policy depends on the request alone: the cache
	// answers a path seen before, as the decision cache answers a check.
	cache := e.mappings
	if !pol.httpPure || len(in.path) > maxCachedHTTPPathLen {
		cache = nil
	}
	key := httpKey{gen: pol.gen, method: in.method, path: in.path}
	if cache != nil {
		if m, ok := cache.get(key); ok {
			e.observer.CachedDecisions(ctx, QueryHTTPDecision, 1, boolCount(m.Check != nil))
			return m, nil
		}
	}
	ctx, done := e.observer.StartEvaluation(ctx, QueryHTTPDecision, 1)
	v, err := eval(ctx, pol.http, e.terms.httpInputTerm(in))
	var m HTTPMapping
	switch {
	case err != nil:
	case v == nil:
		m = HTTPMapping{Reasons: []string{ReasonNoDecision}}
	default:
		m, err = e.terms.toHTTPMapping(v)
	}
	done(boolCount(m.Check != nil), err)
	if err == nil && cache != nil {
		cache.put(key, m)
	}
	return m, err
}

func (t *inputTerms) httpInputTerm(in httpInput) ast.Value {
	s := ast.StringTerm
	return ast.NewObject(
		[2]*ast.Term{s("method"), s(in.method)},
		[2]*ast.Term{s("path"), s(in.path)},
		[2]*ast.Term{s("segments"), stringsTerm(in.segments)},
	)
}

// toHTTPMapping reads {"resource": {"type", "id", "tenant_id"?}, "action"}
// or {"allow": false, "reasons": [string, …]}; anything else is EINTERNAL,
// so a broken mapping never lets a request through.
func (t *inputTerms) toHTTPMapping(v ast.Value) (HTTPMapping, error) {
	bad := func() (HTTPMapping, error) {
		return HTTPMapping{}, Errorf(EINTERNAL,
			`%s must be {"resource": {"type": string, "id": string}, "action": string} or {"allow": false, "reasons": [string]}`, QueryHTTPDecision)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return bad()
	}
	if res := obj.Get(t.resource); res != nil {
		r, ok := res.Value.(ast.Object)
		action, okAction := valueString(obj.Get(t.action))
		if !ok || !okAction {
			return bad()
		}
		typ, ok1 := valueString(r.Get(t.typ))
		id, ok2 := valueString(r.Get(t.id))
		if !ok1 || !ok2 {
			return bad()
		}
		c := &Check{Resource: Resource{Type: ResourceType(typ), ID: id}, Action: action}
		if tt := r.Get(t.tenantID); tt != nil {
			if c.Resource.TenantID, ok = valueString(tt); !ok {
				return bad()
			}
		}
		return HTTPMapping{Check: c}, nil
	}
	d, err := t.toDecision(v)
	if err != nil || d.Allow || len(d.Reasons) == 0 {
		return bad()
	}
	return HTTPMapping{Reasons: d.Reasons}, nil
}
