package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// TestDeleteAuditEventsBefore is part of the conformance suite: the oldest
// events go first, at most limit at a time, and nothing at or after the
// cut-off, in every tenant and in none.
func TestDeleteAuditEventsBefore(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		as := storage.NewAuditStore(db)
		var events []authz.AuditEvent
		for i := range 30 {
			tenant := []string{"acme", "other", ""}[i%3]
			events = append(events, authz.AuditEvent{OccurredAt: at(time.Duration(i) * time.Hour), TenantID: tenant,
				ActorType: authz.ActorTypeAnonymous, Action: authz.AuditAuthFailed, Outcome: authz.OutcomeFailure})
		}
		if err := as.InsertAuditEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
		cut := at(20 * time.Hour) // events 0..19 are older
		n, err := as.DeleteAuditEventsBefore(ctx, cut, 7)
		if err != nil || n != 7 {
			t.Fatalf("first batch: %d deleted (%v), want 7", n, err)
		}
		total := 7
		for n == 7 {
			if n, err = as.DeleteAuditEventsBefore(ctx, cut, 7); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total != 20 {
			t.Fatalf("%d deleted in all, want the 20 older than the cut-off", total)
		}
		left := 0
		for _, tenant := range []string{"acme", "other", ""} {
			for _, ev := range allEvents(t, as, tenant) {
				left++
				if ev.OccurredAt.Before(cut) {
					t.Fatalf("event at %s outlived the cut-off %s", ev.OccurredAt, cut)
				}
			}
		}
		if left != 10 {
			t.Fatalf("%d events left, want 10", left)
		}
		if n, err := as.DeleteAuditEventsBefore(ctx, cut, 7); err != nil || n != 0 {
			t.Fatalf("nothing left to delete: %d (%v)", n, err)
		}
	})
}

// TestInsertAuditEventsCapsRows: whatever an event carries, its row is
// bounded.
func TestInsertAuditEventsCapsRows(t *testing.T) {
	t.Parallel()
	storagetest.ForEachDB(t, func(t *testing.T, db *storage.DB) {
		ctx := context.Background()
		as := storage.NewAuditStore(db)
		long := strings.Repeat("z", 100_000)
		list := make([]string, 5000)
		for i := range list {
			list[i] = long[:100]
		}
		err := as.InsertAuditEvents(ctx, []authz.AuditEvent{{OccurredAt: at(0), TenantID: "acme", Action: authz.AuditAuthzDenied,
			TargetID: long, Reason: long, UserAgent: long, Details: map[string]any{"ids": list, "note": long}}})
		if err != nil {
			t.Fatal(err)
		}
		var size int
		if err := db.Bun().NewRaw("SELECT LENGTH(target_id) + LENGTH(reason) + LENGTH(user_agent) + LENGTH(CAST(details AS TEXT)) FROM audit_events").Scan(ctx, &size); err != nil {
			t.Fatal(err)
		}
		if size > authz.MaxAuditIDLen+authz.MaxAuditReasonLen+authz.MaxAuditUserAgentLen+authz.MaxAuditDetailsBytes {
			t.Fatalf("a row of %d bytes", size)
		}
		ev := allEvents(t, as, "acme")[0]
		if !strings.HasSuffix(ev.Reason, authz.TruncatedMarker) || len(ev.Details["ids"].([]any)) != authz.MaxAuditDetailItems+1 {
			t.Fatalf("the row does not say it was cut: reason …%q, %d ids", ev.Reason[len(ev.Reason)-20:], len(ev.Details["ids"].([]any)))
		}
	})
}
