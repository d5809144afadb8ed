package storage_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestScopeCeilings(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks, as := storage.NewKeyStore(db), storage.NewAuditStore(db)
		if _, err := ks.FindScopeCeiling(ctx, "acme", "bob"); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("no ceiling yet: %v", err)
		}
		ev := authz.AuditEvent{OccurredAt: at(0), TenantID: "acme", ActorType: authz.ActorTypeUser, ActorID: "root",
			Action: authz.AuditCeilingSet, TargetType: authz.TargetCeiling, TargetID: "bob", Outcome: authz.OutcomeSuccess}
		// The user need not exist yet: an admin may bound a user before their first key.
		c := &authz.ScopeCeiling{TenantID: "acme", UserID: "bob", Scope: authz.Scope{MCPToolIDs: []string{"github__*"}},
			UpdatedBy: "root", CreatedAt: at(0), UpdatedAt: at(0)}
		if err := ks.SetScopeCeiling(ctx, c, ev); err != nil {
			t.Fatal(err)
		}
		got, err := ks.FindScopeCeiling(ctx, "acme", "bob")
		if err != nil {
			t.Fatal(err)
		}
		want := authz.Scope{AgentIDs: []string{}, FlowIDs: []string{}, MCPToolIDs: []string{"github__*"}, VectorStoreIDs: []string{}}
		if !reflect.DeepEqual(got.Scope, want) || got.UpdatedBy != "root" || !got.CreatedAt.Equal(at(0)) {
			t.Fatalf("ceiling %+v", got)
		}
		if _, err := ks.FindScopeCeiling(ctx, "globex", "bob"); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("another tenant's user of the same id: %v", err)
		}

		// Replacing keeps created_at.
		c2 := &authz.ScopeCeiling{TenantID: "acme", UserID: "bob", Scope: authz.Scope{AgentIDs: []string{"a"}},
			UpdatedBy: "root2", CreatedAt: at(time.Hour), UpdatedAt: at(time.Hour)}
		if err := ks.SetScopeCeiling(ctx, c2); err != nil {
			t.Fatal(err)
		}
		if !c2.CreatedAt.Equal(at(0)) {
			t.Fatalf("replaced ceiling created_at %v, want %v", c2.CreatedAt, at(0))
		}
		got, _ = ks.FindScopeCeiling(ctx, "acme", "bob")
		if got.UpdatedBy != "root2" || len(got.Scope.MCPToolIDs) != 0 || got.Scope.AgentIDs[0] != "a" || !got.UpdatedAt.Equal(at(time.Hour)) {
			t.Fatalf("replaced ceiling %+v", got)
		}
		if events := allEvents(t, as, "acme"); len(events) != 1 || events[0].Action != authz.AuditCeilingSet {
			t.Fatalf("events %v", actions(events))
		}

		if err := ks.DeleteScopeCeiling(ctx, "acme", "bob"); err != nil {
			t.Fatal(err)
		}
		if err := ks.DeleteScopeCeiling(ctx, "acme", "bob"); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("delete twice: %v", err)
		}

		// A ceiling goes with its user.
		if err := ks.SetScopeCeiling(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.DeleteUser(ctx, "acme", "bob"); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.FindScopeCeiling(ctx, "acme", "bob"); authz.ErrorCode(err) != authz.ENOTFOUND {
			t.Fatalf("ceiling after the user was deleted: %v", err)
		}
	})
}

func TestKeySetters_RoundTrip(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		ks := storage.NewKeyStore(db)
		k := newKey(t, "acme", "bob", "ci", at(0))
		k.ExpiresAt = ptr(at(48 * time.Hour))
		k.ExpiresAtSetBy = &authz.Setter{UserID: "bob"}
		mustCreate(t, ks, k)
		got, err := ks.FindKeyByID(ctx, "acme", k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.DisabledBy != nil || !reflect.DeepEqual(got.ExpiresAtSetBy, &authz.Setter{UserID: "bob"}) {
			t.Fatalf("setters %+v %+v", got.DisabledBy, got.ExpiresAtSetBy)
		}
		upd, err := ks.UpdateKey(ctx, "acme", k.ID, func(k *authz.APIKey) ([]string, []authz.AuditEvent, error) {
			k.Enabled = false
			k.DisabledBy = &authz.Setter{UserID: "root", Admin: true}
			k.ExpiresAtSetBy = &authz.Setter{UserID: "root", Admin: true}
			return []string{"enabled"}, nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = ks.FindKeyByID(ctx, "acme", k.ID)
		if !reflect.DeepEqual(got.DisabledBy, upd.DisabledBy) || !got.DisabledBy.Admin || !got.ExpiresAtSetBy.Admin {
			t.Fatalf("setters after update %+v %+v", got.DisabledBy, got.ExpiresAtSetBy)
		}
	})
}
