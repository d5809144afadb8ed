package authz

import (
	"context"
	"time"
)

// TargetPolicy is the management target of GET /api/v1/policy: which
// policy the instance serves.
const TargetPolicy = "policy"

// PolicyStatus says which policy an instance serves and how its last
// reload went. Every instance loads its policy on its own, so two
// instances may differ for as long as one is behind.
type PolicyStatus struct {
	// Revision is the live policy's content hash (PolicySet.Revision).
	Revision string
	// Source is where it came from: "embedded", "folder:PATH" or
	// "bundle:URL" (without credentials or query).
	Source string
	// BundleRevision is the revision the live bundle's manifest names, ""
	// when none.
	BundleRevision string
	// LoadedAt is when the live policy went live.
	LoadedAt time.Time
	// LastError says why the latest reload was refused, "" when it
	// succeeded (or the source is back to the live policy); the live
	// policy kept serving.
	LastError   string
	LastErrorAt time.Time
}

// PolicyStatusService answers who may read which policy is served.
type PolicyStatusService struct {
	Policy Policy
	Status func() PolicyStatus
}

// Get returns the policy status to an admin of the actor's tenant or a
// platform_admin, as the management policy decides (target "policy").
// Returns EUNAUTHORIZED without an actor and EFORBIDDEN when the policy
// refuses.
func (s *PolicyStatusService) Get(ctx context.Context) (PolicyStatus, error) {
	actor, err := requireActor(ctx)
	if err != nil {
		return PolicyStatus{}, err
	}
	if err := allowManagement(ctx, s.Policy, actor, ActionRead, ManagementTarget{Type: TargetPolicy, TenantID: actor.TenantID}); err != nil {
		return PolicyStatus{}, err
	}
	return s.Status(), nil
}
