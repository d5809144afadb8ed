package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// BenchmarkInsertAuditEvents writes batches of 1,000 denial events, as the
// audit writer does under load; ns/op is per batch.
func BenchmarkInsertAuditEvents(b *testing.B) {
	for _, open := range []struct {
		name string
		open func(testing.TB) *storage.DB
	}{{storage.DialectSQLite, storagetest.MustOpenSQLite}, {storage.DialectPostgres, storagetest.MustOpenPostgres}} {
		b.Run(open.name, func(b *testing.B) {
			as := storage.NewAuditStore(open.open(b))
			ctx := context.Background()
			keyID, _ := authz.NewID(time.Now(), nil)
			batch := make([]authz.AuditEvent, 1000)
			for b.Loop() {
				now := time.Now()
				for i := range batch {
					batch[i] = authz.AuditEvent{OccurredAt: now, TenantID: "acme", ActorType: authz.ActorTypeAPIKey, ActorID: keyID,
						Action: authz.AuditAuthzDenied, Outcome: authz.OutcomeDenied, Reason: "not in the key's scope",
						IP: "10.0.0.1", UserAgent: "bench/1", RequestID: fmt.Sprintf("req-%d", i),
						Details: map[string]any{"resource": map[string]any{"type": "flow", "id": "billing-export"}, "action": "execute"}}
				}
				if err := as.InsertAuditEvents(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
