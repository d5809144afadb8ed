package authz

import (
	"context"
	"time"
)

// Audit actions. Management actions are written with the change they record;
// authentication and decision events go through an AuditRecorder.
const (
	AuditKeyCreated    = "api_key.created"
	AuditKeyUpdated    = "api_key.updated"
	AuditKeyDeleted    = "api_key.deleted"
	AuditUserDeleted   = "user.deleted"
	AuditTenantDeleted = "tenant.deleted"
	AuditAuthFailed    = "authentication.failed"
	AuditAuthzDenied   = "authorization.denied"
)

// TargetChecks is the target type of a denial event for a batch of
// checks; its details list every denied check.
const TargetChecks = "checks"

// TargetPlatformAuditEvents is the management target of the audit events
// of no tenant (refused credentials that matched no key).
const TargetPlatformAuditEvents = "platform_audit_events"

// Audit actor types.
const (
	ActorTypeUser      = "user"
	ActorTypeAPIKey    = "api_key"
	ActorTypeAnonymous = "anonymous"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// AuditEvent is one line of the audit trail. It never holds a token or a
// token hash; Details carries small, non-secret facts (fields changed,
// resource, counts).
type AuditEvent struct {
	ID         string         `json:"id"`
	OccurredAt time.Time      `json:"occurred_at"`
	TenantID   string         `json:"tenant_id"`
	ActorType  string         `json:"actor_type"`
	ActorID    string         `json:"actor_id"`
	Action     string         `json:"action"`
	TargetType string         `json:"target_type"`
	TargetID   string         `json:"target_id"`
	Outcome    string         `json:"outcome"`
	Reason     string         `json:"reason"`
	IP         string         `json:"ip"`
	UserAgent  string         `json:"user_agent"`
	RequestID  string         `json:"request_id"`
	TraceID    string         `json:"trace_id"`
	Details    map[string]any `json:"details"`
}

// AuditFilter selects a page of one tenant's audit events. KeyID matches
// events whose actor or target is that key. Tenantless asks for the
// events of no tenant instead (refused credentials that matched no key),
// which KeyService.AuditEvents shows only a platform_admin.
type AuditFilter struct {
	TenantID   string
	Tenantless bool
	Action     string
	KeyID      string
	Since      *time.Time // inclusive
	Until      *time.Time // exclusive
	Cursor     string
	Limit      int
}

// AuditPage is one page of events, newest first, and the next cursor.
type AuditPage struct {
	Events     []*AuditEvent
	NextCursor string
}

// AuditStore persists the audit trail.
type AuditStore interface {
	// InsertAuditEvents writes events in one batch.
	InsertAuditEvents(ctx context.Context, events []AuditEvent) error

	// FindAuditEvents returns a page of a tenant's events, newest first.
	// Returns EINVALID for a cursor it did not issue.
	FindAuditEvents(ctx context.Context, filter AuditFilter) (*AuditPage, error)
}

// AuditRecorder takes events off the request path. Record never blocks on
// the database.
type AuditRecorder interface {
	Record(ev AuditEvent)
}
