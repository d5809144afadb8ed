package authz_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// memAuditStore records batches; fail makes the next n inserts fail.
type memAuditStore struct {
	mu      sync.Mutex
	batches [][]authz.AuditEvent
	fail    int
	block   chan struct{}
}

func (s *memAuditStore) InsertAuditEvents(_ context.Context, events []authz.AuditEvent) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("database down")
	}
	s.batches = append(s.batches, append([]authz.AuditEvent(nil), events...))
	return nil
}

func (s *memAuditStore) FindAuditEvents(context.Context, authz.AuditFilter) (*authz.AuditPage, error) {
	return nil, errors.New("not used")
}

func (s *memAuditStore) events() []authz.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []authz.AuditEvent
	for _, b := range s.batches {
		all = append(all, b...)
	}
	return all
}

func TestAuditWriterBatchesAndFlushesOnClose(t *testing.T) {
	t.Parallel()
	store := &memAuditStore{}
	// A long interval: only the batch size and Close cause writes.
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Batch: 10, Interval: time.Hour})
	for i := range 25 {
		w.Record(authz.AuditEvent{OccurredAt: fixedTime, Action: authz.AuditAuthFailed, Reason: string(rune('a' + i))})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := store.events()
	if len(got) != 25 || w.Written() != 25 || w.Dropped() != 0 {
		t.Fatalf("wrote %d (counter %d, dropped %d), want 25", len(got), w.Written(), w.Dropped())
	}
	for i, ev := range got {
		if ev.ID == "" || ev.Reason != string(rune('a'+i)) {
			t.Fatalf("event %d: id %q reason %q: order or id lost", i, ev.ID, ev.Reason)
		}
	}
	if len(store.batches) < 3 || len(store.batches[0]) != 10 {
		t.Fatalf("batches of sizes %d…: want batches of 10", len(store.batches[0]))
	}
	w.Record(authz.AuditEvent{})
	if w.Dropped() != 1 {
		t.Fatalf("an event recorded after Close must be counted as dropped")
	}
}

func TestAuditWriterDropsWhenFullWithoutStalling(t *testing.T) {
	t.Parallel()
	store := &memAuditStore{block: make(chan struct{})}
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Buffer: 5, Batch: 1, Interval: time.Hour, MaxWait: time.Millisecond})
	done := make(chan struct{})
	go func() {
		for range 100 {
			w.Record(authz.AuditEvent{OccurredAt: fixedTime})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked on a stuck store")
	}
	close(store.block)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	written, dropped := w.Written(), w.Dropped()
	if written+dropped != 100 || dropped < 90 {
		t.Fatalf("written %d + dropped %d: want 100 in all and most dropped", written, dropped)
	}
}

// TestAuditWriterWaitsForRoom: a burst larger than the queue slows the
// recorders down while the store keeps up, and loses nothing.
func TestAuditWriterWaitsForRoom(t *testing.T) {
	t.Parallel()
	store := &memAuditStore{}
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Buffer: 4, Batch: 2, Interval: time.Hour, MaxWait: 10 * time.Second})
	for range 1000 {
		w.Record(authz.AuditEvent{OccurredAt: fixedTime})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(store.events()); got != 1000 || w.Dropped() != 0 {
		t.Fatalf("wrote %d, dropped %d: want all 1000 written", got, w.Dropped())
	}
}

func TestAuditWriterRetriesAFailedBatch(t *testing.T) {
	t.Parallel()
	store := &memAuditStore{fail: 2}
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Interval: time.Hour})
	w.Record(authz.AuditEvent{OccurredAt: fixedTime})
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(store.events()) != 1 || w.Dropped() != 0 {
		t.Fatalf("events %d dropped %d: a batch failing twice must be retried", len(store.events()), w.Dropped())
	}
}

// touchStore records TouchKeys calls; every other KeyStore method is unused.
type touchStore struct {
	authz.KeyStore
	mu     sync.Mutex
	calls  []map[string]time.Time
	fail   bool
	failed int
}

func (s *touchStore) TouchKeys(_ context.Context, m map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		s.failed++
		return errors.New("database down")
	}
	s.calls = append(s.calls, m)
	return nil
}

func TestUsageWriterCoalesces(t *testing.T) {
	t.Parallel()
	store := &touchStore{}
	u := authz.NewUsageWriter(store, time.Hour, nil)
	for i := range 1000 {
		u.Touch("k1", fixedTime.Add(time.Duration(i%7)*time.Second))
		u.Touch("k2", fixedTime)
	}
	ctx := context.Background()
	if err := u.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(store.calls) != 1 {
		t.Fatalf("%d TouchKeys calls, want 1 for the whole interval", len(store.calls))
	}
	got := store.calls[0]
	if len(got) != 2 || !got["k1"].Equal(fixedTime.Add(6*time.Second)) || !got["k2"].Equal(fixedTime) {
		t.Fatalf("flushed %v: want the newest time per key", got)
	}
	if err := u.Flush(ctx); err != nil || len(store.calls) != 1 {
		t.Fatalf("an empty flush must not write (calls %d, err %v)", len(store.calls), err)
	}

	// Many keys, whatever shard each is kept in, are one statement.
	for i := range 100 {
		u.Touch(fmt.Sprintf("many-%d", i), fixedTime.Add(time.Duration(i)*time.Second))
	}
	if err := u.Flush(ctx); err != nil || len(store.calls) != 2 || len(store.calls[1]) != 100 {
		t.Fatalf("100 keys: %d calls, err %v; want one more call with every key", len(store.calls), err)
	}
	if !store.calls[1]["many-42"].Equal(fixedTime.Add(42 * time.Second)) {
		t.Fatalf("many-42 flushed at %v", store.calls[1]["many-42"])
	}

	store.fail = true
	u.Touch("k3", fixedTime)
	if err := u.Flush(ctx); err == nil {
		t.Fatal("want the store's error")
	}
	store.fail = false
	u.Touch("k3", fixedTime.Add(-time.Hour)) // older: must not replace the pending time
	if err := u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	last := store.calls[len(store.calls)-1]
	if !last["k3"].Equal(fixedTime) {
		t.Fatalf("after a failed flush the time must be kept for the next one; got %v", last)
	}
}

// TestUsageWriterTouchWhileFlushing: decisions touch keys while the
// writer flushes; no time is lost, and each key ends at its newest.
func TestUsageWriterTouchWhileFlushing(t *testing.T) {
	t.Parallel()
	store := &touchStore{}
	u := authz.NewUsageWriter(store, time.Hour, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				u.Touch(fmt.Sprintf("k%d", i%50), fixedTime.Add(time.Duration(g*500+i)*time.Millisecond))
			}
		})
	}
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				if err := u.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-flushed
	if err := u.Close(ctx); err != nil {
		t.Fatal(err)
	}
	newest := map[string]time.Time{}
	for _, m := range store.calls {
		for id, at := range m {
			if at.After(newest[id]) {
				newest[id] = at
			}
		}
	}
	for i := range 50 {
		// Goroutine 3 touches k<i> last at 1500+450+i ms.
		want := fixedTime.Add(time.Duration(1500+450+i) * time.Millisecond)
		if id := fmt.Sprintf("k%d", i); !newest[id].Equal(want) {
			t.Fatalf("%s written at %v at the newest, want %v", id, newest[id], want)
		}
	}
}
