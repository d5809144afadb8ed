package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
)

// all returns the events recorded so far.
func (l *eventLog) all() []authz.AuditEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]authz.AuditEvent(nil), l.events...)
}

func refusal(at time.Time, ip, reason string) authz.AuditEvent {
	return authz.AuditEvent{OccurredAt: at, ActorType: authz.ActorTypeAnonymous, Action: authz.AuditAuthFailed,
		TargetType: authz.TargetAPIKey, Outcome: authz.OutcomeFailure, Reason: reason, IP: ip,
		RequestID: "req-" + at.Format("150405.000"), Details: map[string]any{"code": authz.KeyInvalid}}
}

func TestRefusalAggregator(t *testing.T) {
	t.Parallel()
	clk := authztest.NewClock(fixedTime)
	next := &eventLog{}
	agg := authz.NewRefusalAggregator(next, authz.RefusalAggregatorOptions{Interval: time.Minute, Now: clk.Now})
	defer func() { _ = agg.Close(context.Background()) }()

	for i := range 1000 {
		agg.Record(refusal(clk.Now(), "192.0.2.1", "unknown key"))
		if i%100 == 0 {
			agg.Record(refusal(clk.Now(), "192.0.2.1", "malformed token"))
			agg.Record(refusal(clk.Now(), "192.0.2.2", "unknown key"))
		}
		clk.Advance(10 * time.Millisecond)
	}
	agg.Record(authz.AuditEvent{OccurredAt: clk.Now(), Action: authz.AuditKeyCreated, TenantID: "t1"})
	if got := next.all(); len(got) != 1 || got[0].Action != authz.AuditKeyCreated {
		t.Fatalf("before the interval ends only other events pass: %+v", got)
	}
	agg.Flush() // 10s in: nothing has ended
	if len(next.all()) != 1 || agg.Pending() != 3 {
		t.Fatalf("flushed early: %d events, %d pending", len(next.all()), agg.Pending())
	}
	clk.Advance(time.Minute)
	agg.Flush()
	counts := map[string]float64{}
	for _, ev := range next.all()[1:] {
		if ev.Action != authz.AuditAuthFailed || ev.Details["first_at"] == nil || ev.Details["last_at"] == nil || ev.RequestID == "" {
			t.Fatalf("aggregated event %+v lacks its facts", ev)
		}
		if !ev.OccurredAt.Equal(fixedTime) {
			t.Fatalf("aggregated event at %s, want the first refusal's time %s", ev.OccurredAt, fixedTime)
		}
		counts[ev.IP+" "+ev.Reason] = float64(ev.Details["count"].(int))
	}
	want := map[string]float64{"192.0.2.1 unknown key": 1000, "192.0.2.1 malformed token": 10, "192.0.2.2 unknown key": 10}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}

	// Close records what is pending, ended or not; later refusals pass.
	agg.Record(refusal(clk.Now(), "192.0.2.3", "unknown key"))
	if err := agg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	agg.Record(refusal(clk.Now(), "192.0.2.4", "unknown key"))
	if got := next.all(); len(got) != 6 || got[4].IP != "192.0.2.3" || got[5].IP != "192.0.2.4" {
		t.Fatalf("after Close: %d events", len(got))
	}
}

func TestRefusalAggregatorIsBounded(t *testing.T) {
	t.Parallel()
	clk := authztest.NewClock(fixedTime)
	next := &eventLog{}
	agg := authz.NewRefusalAggregator(next, authz.RefusalAggregatorOptions{MaxEntries: 100, Now: clk.Now})
	for i := range 10_000 {
		agg.Record(refusal(clk.Now(), fmt.Sprintf("10.0.%d.%d", i/256, i%256), "unknown key"))
	}
	if n := agg.Pending(); n != 101 {
		t.Fatalf("%d kinds pending after 10000 addresses, want 100 and one for the rest", n)
	}
	if err := agg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, ev := range next.all() {
		total += ev.Details["count"].(int)
		if ev.IP == "" && ev.Details["addresses"] == nil {
			t.Fatalf("the overflow event does not say it folds many addresses: %+v", ev)
		}
	}
	if total != 10_000 || len(next.all()) != 101 {
		t.Fatalf("%d events counting %d refusals, want 101 counting 10000", len(next.all()), total)
	}
}

func TestCapAuditEvent(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("tool_%04d", i)
	}
	ev := authz.CapAuditEvent(authz.AuditEvent{
		TenantID: long, ActorID: long, TargetID: long, Reason: long, UserAgent: long, IP: long,
		Details: map[string]any{"note": long, "removed": names, "n": 3,
			"nested": map[string]any{"reasons": []string{long}}},
	})
	for field, v := range map[string]string{"tenant": ev.TenantID, "actor": ev.ActorID, "target": ev.TargetID} {
		if len(v) != authz.MaxAuditIDLen || !strings.HasSuffix(v, authz.TruncatedMarker) {
			t.Fatalf("%s id of %d bytes, want %d ending with the marker", field, len(v), authz.MaxAuditIDLen)
		}
	}
	if len(ev.Reason) != authz.MaxAuditReasonLen || len(ev.UserAgent) != authz.MaxAuditUserAgentLen || len(ev.IP) > 64 {
		t.Fatalf("reason %d, user agent %d, ip %d bytes", len(ev.Reason), len(ev.UserAgent), len(ev.IP))
	}
	d := ev.Details
	removed := d["removed"].([]any)
	if len(removed) != authz.MaxAuditDetailItems+1 || removed[authz.MaxAuditDetailItems] != "…[980 more]" {
		t.Fatalf("removed: %d items ending %v", len(removed), removed[len(removed)-1])
	}
	if s := d["note"].(string); len(s) != authz.MaxAuditDetailString || d["n"] != 3 {
		t.Fatalf("details %v", d)
	}
	b, _ := json.Marshal(d)
	if len(b) > authz.MaxAuditDetailsBytes {
		t.Fatalf("details of %d bytes", len(b))
	}

	// Details that stay too large after that are replaced by their keys.
	wide := map[string]any{}
	for i := range 100 {
		wide[fmt.Sprintf("k%03d", i)] = long
	}
	capped := authz.CapAuditEvent(authz.AuditEvent{Details: wide}).Details
	if capped["truncated"] == nil || len(capped["keys"].([]string)) != authz.MaxAuditDetailItems+1 {
		t.Fatalf("oversized details: %v", capped)
	}

	// An event within the bounds is unchanged.
	small := authz.AuditEvent{Reason: "fine", Details: map[string]any{"changed": []string{"name"}}}
	if got := authz.CapAuditEvent(small); got.Reason != "fine" || fmt.Sprint(got.Details) != "map[changed:[name]]" {
		t.Fatalf("small event changed: %+v", got)
	}
}

// fakePruner deletes from a count of old events.
type fakePruner struct {
	mu      sync.Mutex
	old     int
	batches []int
	fail    bool
}

func (p *fakePruner) DeleteAuditEventsBefore(_ context.Context, _ time.Time, limit int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return 0, errors.New("database gone")
	}
	n := min(limit, p.old)
	p.old -= n
	p.batches = append(p.batches, n)
	return n, nil
}

func TestAuditRetentionDeletesInBatches(t *testing.T) {
	t.Parallel()
	store := &fakePruner{old: 2500}
	deleted := 0
	r := authz.NewAuditRetention(store, authz.AuditRetentionOptions{
		MaxAge: 90 * 24 * time.Hour, Batch: 1000, Pause: time.Nanosecond,
		OnDeleted: func(_ context.Context, n int) { deleted += n },
	})
	n, err := r.Prune(context.Background())
	if err != nil || n != 2500 || deleted != 2500 || fmt.Sprint(store.batches) != "[1000 1000 500]" {
		t.Fatalf("pruned %d (%v), counted %d, batches %v; want 2500 in batches of 1000", n, err, deleted, store.batches)
	}
	store.fail = true
	if _, err := r.Prune(context.Background()); err == nil {
		t.Fatal("a failing store must be reported")
	}
}
