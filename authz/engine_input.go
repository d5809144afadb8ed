package authz

import (
	"bytes"
	"encoding/json"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

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

// singleInput is the input of data.keygate.authz.decision.
func (e *Engine) singleInput(p *Principal, r Resource, action string, dc DecisionContext) ast.Value {
	t := e.terms
	return ast.NewObject(
		[2]*ast.Term{t.principal, e.principalTerm(p)},
		[2]*ast.Term{t.resource, t.resourceTerm(r)},
		[2]*ast.Term{t.action, ast.StringTerm(action)},
		[2]*ast.Term{t.context, t.contextTerm(dc)},
	)
}

// batchInput is the input of data.keygate.authz.decisions.
func (e *Engine) batchInput(p *Principal, checks []Check, dc DecisionContext) ast.Value {
	t := e.terms
	items := make([]*ast.Term, len(checks))
	for i, c := range checks {
		items[i] = ast.NewTerm(ast.NewObject(
			[2]*ast.Term{t.resource, t.resourceTerm(c.Resource)},
			[2]*ast.Term{t.action, ast.StringTerm(c.Action)},
		))
	}
	return ast.NewObject(
		[2]*ast.Term{t.principal, e.principalTerm(p)},
		[2]*ast.Term{t.checks, ast.ArrayTerm(items...)},
		[2]*ast.Term{t.context, t.contextTerm(dc)},
	)
}

// inputTerms holds the constant terms of the input documents, built once so
// a request only allocates what varies. Terms are never modified after
// construction, so evaluations share them.
type inputTerms struct {
	principal, resource, action, context, checks   *ast.Term
	typ, id, keyID, tenantID, userID, scope        *ast.Term
	time, ip, actor, roles, target, allow, reasons *ast.Term
	apiKey, meta, externalID                       *ast.Term
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
		meta: s("meta"), externalID: s("external_id"),
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
	items := make([][2]*ast.Term, 0, 7)
	items = append(items,
		[2]*ast.Term{t.typ, t.apiKey},
		[2]*ast.Term{t.keyID, ast.StringTerm(p.KeyID)},
		[2]*ast.Term{t.tenantID, ast.StringTerm(p.TenantID)},
		[2]*ast.Term{t.userID, ast.StringTerm(p.UserID)},
		[2]*ast.Term{t.scope, ast.ObjectTerm(scope[:]...)},
		[2]*ast.Term{t.meta, metaTerm(p.Meta)},
	)
	if p.ExternalID != "" {
		items = append(items, [2]*ast.Term{t.externalID, ast.StringTerm(p.ExternalID)})
	}
	return ast.ObjectTerm(items...)
}

// metaTerm is a key's meta as a term: an empty object when it has none.
// Meta was checked to be a JSON object when it was stored; should it not
// read as one, the policy sees an empty object rather than a failure.
func metaTerm(meta json.RawMessage) *ast.Term {
	if len(meta) == 0 {
		return ast.ObjectTerm()
	}
	v, err := ast.ValueFromReader(bytes.NewReader(meta))
	if _, ok := v.(ast.Object); err != nil || !ok {
		return ast.ObjectTerm()
	}
	return ast.NewTerm(v)
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
