package authz

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a decision request may carry.
const (
	MaxResourceIDLen = 200
	MaxActionLen     = 64
	MaxBatchChecks   = 100
)

// Resource is the object of a decision. TenantID is optional; when set and
// not the principal's tenant, the policy denies.
type Resource struct {
	Type     ResourceType `json:"type"`
	ID       string       `json:"id"`
	TenantID string       `json:"tenant_id,omitempty"`
}

// Check is one question of a batch: may the principal do Action on Resource?
type Check struct {
	Resource Resource `json:"resource"`
	Action   string   `json:"action"`
}

// Validate checks the resource and action; prefix names the fields in errors
// (for example "checks[3]").
func (c Check) Validate(prefix string) []FieldError {
	join := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	var fields []FieldError
	if !c.Resource.Type.Valid() {
		fields = append(fields, FieldError{Field: join("resource.type"), Message: "must be one of agent, flow, mcp_tool, vector_store"})
	}
	if msg := validPrintable(c.Resource.ID, MaxResourceIDLen); msg != "" {
		fields = append(fields, FieldError{Field: join("resource.id"), Message: msg})
	}
	if c.Resource.TenantID != "" {
		if msg := validPrintable(c.Resource.TenantID, MaxResourceIDLen); msg != "" {
			fields = append(fields, FieldError{Field: join("resource.tenant_id"), Message: msg})
		}
	}
	if msg := validAction(c.Action); msg != "" {
		fields = append(fields, FieldError{Field: join("action"), Message: msg})
	}
	return fields
}

// Decision is the policy's answer with reasons a person can act on.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons"`
	// Fields names the invalid parts of a refused management request, as
	// the management policy gives them (a scope entry outside the ceiling):
	// such a refusal is an EINVALID error naming them.
	Fields []FieldError `json:"fields,omitempty"`
}

// DecisionContext is what the policy may know about the moment of a request.
type DecisionContext struct {
	Time time.Time
	IP   string
}

// Management targets: what kind of thing a management action is about.
const (
	TargetAPIKey      = "api_key"
	TargetUser        = "user"
	TargetTenant      = "tenant"
	TargetAuditEvents = "audit_events"
	TargetMCPServer   = "mcp_server"
	TargetCeiling     = "scope_ceiling"
)

// Management actions.
const (
	ActionCreate = "create"
	ActionRead   = "read"
	ActionList   = "list"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// ManagementTarget is what a management action touches. UserID is the owner
// for keys, the user itself for users, and empty for "every user".
type ManagementTarget struct {
	Type     string `json:"type"`
	TenantID string `json:"tenant_id"`
	UserID   string `json:"user_id"`
}

// ManagementInput is the input of data.keygate.management.decision. A key's
// creation or update also carries the key as stored (nil on creation), the
// change asked for and the actor's scope ceiling (nil: none), so the policy
// can hold back what would undo an admin or exceed the ceiling.
type ManagementInput struct {
	Actor   Actor            `json:"actor"`
	Action  string           `json:"action"`
	Target  ManagementTarget `json:"target"`
	Key     *APIKey          `json:"key,omitempty"`
	Change  *APIKeyUpdate    `json:"change,omitempty"`
	Ceiling *Scope           `json:"ceiling,omitempty"`
}

// Observer watches policy evaluations so telemetry can live outside the
// domain. Start is called before an evaluation; the returned function after,
// with the outcome.
type Observer interface {
	StartEvaluation(ctx context.Context, query string, checks int) (context.Context, func(allowed int, err error))
	// CachedDecisions counts answers given from the decision cache, with
	// no evaluation.
	CachedDecisions(ctx context.Context, query string, checks, allowed int)
}

// NopObserver observes nothing.
type NopObserver struct{}

// StartEvaluation implements Observer.
func (NopObserver) StartEvaluation(ctx context.Context, _ string, _ int) (context.Context, func(int, error)) {
	return ctx, func(int, error) {}
}

// CachedDecisions implements Observer.
func (NopObserver) CachedDecisions(context.Context, string, int, int) {}

func validPrintable(s string, maxLen int) string {
	if s == "" || len(s) > maxLen {
		return fmt.Sprintf("must be 1 to %d bytes", maxLen)
	}
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexFunc(s, isControlOrBidi) >= 0 {
		return "must not contain control or bidirectional formatting characters"
	}
	return ""
}

// isControlOrBidi reports control characters and the invisible marks that
// reorder text (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C): an id
// holding one can read as another id.
func isControlOrBidi(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)
}

func validAction(a string) string {
	if a == "" || len(a) > MaxActionLen {
		return fmt.Sprintf("must be 1 to %d characters", MaxActionLen)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !isLowerAlnum(c) && c != '_' && c != '.' && c != ':' && c != '-' {
			return "may only contain a-z 0-9 _ . : -"
		}
	}
	return ""
}

func isLowerAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}
