package authz

import (
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// managementInput is the input document of a management decision: actor,
// action and target, and for a key's creation or update the key as stored,
// the change and the actor's scope ceiling.
func (t *inputTerms) managementInput(in ManagementInput) ast.Value {
	s := ast.StringTerm
	roles := make([]*ast.Term, len(in.Actor.Roles))
	for i, r := range in.Actor.Roles {
		roles[i] = s(r)
	}
	items := [][2]*ast.Term{
		{t.actor, ast.ObjectTerm(
			[2]*ast.Term{t.tenantID, s(in.Actor.TenantID)},
			[2]*ast.Term{t.userID, s(in.Actor.UserID)},
			[2]*ast.Term{t.roles, ast.ArrayTerm(roles...)},
		)},
		{t.action, s(in.Action)},
		{t.target, ast.ObjectTerm(
			[2]*ast.Term{t.typ, s(in.Target.Type)},
			[2]*ast.Term{t.tenantID, s(in.Target.TenantID)},
			[2]*ast.Term{t.userID, s(in.Target.UserID)},
		)},
	}
	if in.Change != nil {
		items = append(items,
			[2]*ast.Term{s("key"), keyStateTerm(in.Key)},
			[2]*ast.Term{s("change"), changeTerm(in.Change)},
			[2]*ast.Term{s("ceiling"), scopeTerm(in.Ceiling)},
		)
	}
	return ast.NewObject(items...)
}

// keyStateTerm is what the policy knows of a stored key; null for none.
func keyStateTerm(k *APIKey) *ast.Term {
	if k == nil {
		return ast.NullTerm()
	}
	s := ast.StringTerm
	return ast.ObjectTerm(
		[2]*ast.Term{s("enabled"), ast.BooleanTerm(k.Enabled)},
		[2]*ast.Term{s("expires_at"), timeTerm(k.ExpiresAt)},
		[2]*ast.Term{s("permission_scope"), scopeTerm(&k.Scope)},
		[2]*ast.Term{s("disabled_by"), setterTerm(k.DisabledBy)},
		[2]*ast.Term{s("expires_at_set_by"), setterTerm(k.ExpiresAtSetBy)},
		[2]*ast.Term{s("rate_limit"), rateLimitTerm(k.RateLimit)},
		[2]*ast.Term{s("rate_limit_set_by"), setterTerm(k.RateLimitSetBy)},
		[2]*ast.Term{s("credits"), creditsTerm(k.Credits)},
		[2]*ast.Term{s("credits_set_by"), setterTerm(k.CreditsSetBy)},
	)
}

// changeTerm holds only the fields the change sets; expires_at null clears.
func changeTerm(u *APIKeyUpdate) *ast.Term {
	s := ast.StringTerm
	var items [][2]*ast.Term
	if u.Name != nil {
		items = append(items, [2]*ast.Term{s("name"), s(*u.Name)})
	}
	if u.Enabled != nil {
		items = append(items, [2]*ast.Term{s("enabled"), ast.BooleanTerm(*u.Enabled)})
	}
	if u.SetExpiresAt {
		items = append(items, [2]*ast.Term{s("expires_at"), timeTerm(u.ExpiresAt)})
	}
	if u.Scope != nil {
		items = append(items, [2]*ast.Term{s("permission_scope"), scopeTerm(u.Scope)})
	}
	if u.SetExternalID {
		v := ast.NullTerm()
		if u.ExternalID != nil {
			v = s(*u.ExternalID)
		}
		items = append(items, [2]*ast.Term{s("external_id"), v})
	}
	if u.SetMeta {
		v := ast.NullTerm()
		if u.Meta != nil {
			v = metaTerm(u.Meta)
		}
		items = append(items, [2]*ast.Term{s("meta"), v})
	}
	if u.SetRateLimit {
		items = append(items, [2]*ast.Term{s("rate_limit"), rateLimitTerm(u.RateLimit)})
	}
	if u.SetCredits {
		items = append(items, [2]*ast.Term{s("credits"), creditsTerm(u.Credits)})
	}
	return ast.ObjectTerm(items...)
}

// rateLimitTerm is {"limit", "window_ms"}; null for none.
func rateLimitTerm(r *RateLimit) *ast.Term {
	if r == nil {
		return ast.NullTerm()
	}
	return ast.ObjectTerm(
		[2]*ast.Term{ast.StringTerm("limit"), ast.IntNumberTerm(int(r.Limit))},
		[2]*ast.Term{ast.StringTerm("window_ms"), ast.IntNumberTerm(int(r.WindowMS))},
	)
}

// creditsTerm is {"remaining", "refill": {"amount", "interval_ms"} or
// null}; null for none.
func creditsTerm(c *Credits) *ast.Term {
	if c == nil {
		return ast.NullTerm()
	}
	refill := ast.NullTerm()
	if r := c.Refill; r != nil {
		refill = ast.ObjectTerm(
			[2]*ast.Term{ast.StringTerm("amount"), ast.IntNumberTerm(int(r.Amount))},
			[2]*ast.Term{ast.StringTerm("interval_ms"), ast.IntNumberTerm(int(r.IntervalMS))},
		)
	}
	return ast.ObjectTerm(
		[2]*ast.Term{ast.StringTerm("remaining"), ast.IntNumberTerm(int(c.Remaining))},
		[2]*ast.Term{ast.StringTerm("refill"), refill},
	)
}

func scopeTerm(sc *Scope) *ast.Term {
	if sc == nil {
		return ast.NullTerm()
	}
	items := make([][2]*ast.Term, 0, 4)
	for _, rt := range ResourceTypes() {
		items = append(items, [2]*ast.Term{ast.StringTerm(rt.ScopeField()), stringsTerm(sc.IDs(rt))})
	}
	return ast.ObjectTerm(items...)
}

func setterTerm(by *Setter) *ast.Term {
	if by == nil {
		return ast.NullTerm()
	}
	return ast.ObjectTerm(
		[2]*ast.Term{ast.StringTerm("user_id"), ast.StringTerm(by.UserID)},
		[2]*ast.Term{ast.StringTerm("admin"), ast.BooleanTerm(by.Admin)},
	)
}

func timeTerm(at *time.Time) *ast.Term {
	if at == nil {
		return ast.NullTerm()
	}
	return ast.StringTerm(at.UTC().Format(time.RFC3339Nano))
}

// toManagementDecision reads a management decision: the shape of every
// decision, and optionally "fields", a list of {"field", "message"}.
func (t *inputTerms) toManagementDecision(v ast.Value) (Decision, error) {
	d, err := t.toDecision(v)
	if err != nil || d.Allow {
		return d, err
	}
	obj, _ := v.(ast.Object)
	ft := obj.Get(ast.StringTerm("fields"))
	if ft == nil {
		return d, nil
	}
	arr, ok := ft.Value.(*ast.Array)
	if !ok {
		return denied(), Errorf(EINTERNAL, `management decision fields must be [{"field": string, "message": string}]`)
	}
	for i := range arr.Len() {
		f, ok := arr.Elem(i).Value.(ast.Object)
		if !ok {
			return denied(), Errorf(EINTERNAL, `management decision fields must be [{"field": string, "message": string}]`)
		}
		name, ok1 := valueString(f.Get(ast.StringTerm("field")))
		msg, ok2 := valueString(f.Get(ast.StringTerm("message")))
		if !ok1 || !ok2 {
			return denied(), Errorf(EINTERNAL, `management decision fields must be [{"field": string, "message": string}]`)
		}
		d.Fields = append(d.Fields, FieldError{Field: name, Message: msg})
	}
	return d, nil
}

func valueString(t *ast.Term) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}
