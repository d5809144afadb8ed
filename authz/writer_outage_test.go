package authz_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
)

// outageStore is an AuditStore that is down while down is set and, like
// the real stores, skips an id it already holds. lostAnswers makes that
// many inserts commit and then fail, as when the answer is lost on the way.
type outageStore struct {
	mu          sync.Mutex
	down        atomic.Bool
	lostAnswers int
	ids         map[string]bool
	events      []authz.AuditEvent
	attempts    int
}

func newOutageStore() *outageStore { return &outageStore{ids: map[string]bool{}} }

func (s *outageStore) InsertAuditEvents(_ context.Context, events []authz.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.down.Load() {
		return errors.New("connection refused")
	}
	for _, ev := range events {
		if !s.ids[ev.ID] {
			s.ids[ev.ID] = true
			s.events = append(s.events, ev)
		}
	}
	if s.lostAnswers > 0 {
		s.lostAnswers--
		return errors.New("connection reset after commit")
	}
	return nil
}

func (s *outageStore) FindAuditEvents(context.Context, authz.AuditFilter) (*authz.AuditPage, error) {
	return nil, errors.New("not used")
}

func (s *outageStore) reasons() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.events))
	for i, ev := range s.events {
		out[i] = ev.Reason
	}
	return out
}

// memSpool is an AuditSpool in memory holding at most max events.
type memSpool struct {
	mu     sync.Mutex
	max    int
	events []authz.AuditEvent
	peeked int
}

func (s *memSpool) Append(ev authz.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) >= s.max {
		return errors.New("full")
	}
	s.events = append(s.events, ev)
	return nil
}

func (s *memSpool) Prepend(events []authz.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events)+len(events) > s.max {
		return errors.New("full")
	}
	s.events = append(slices.Clone(events), s.events...)
	s.peeked = 0
	return nil
}

func (s *memSpool) Peek(n int) ([]authz.AuditEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peeked = min(n, len(s.events))
	return slices.Clone(s.events[:s.peeked]), nil
}

func (s *memSpool) Advance(n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > s.peeked {
		return errors.New("advance past the peek")
	}
	s.events, s.peeked = s.events[n:], 0
	return nil
}

func (s *memSpool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	authztest.Eventually(t, what, 10*time.Second, cond)
}

func wantReasons(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("e%03d", i)
	}
	return out
}

func recordN(w *authz.AuditWriter, from, to int) {
	for i := from; i < to; i++ {
		w.Record(authz.AuditEvent{OccurredAt: fixedTime, Action: authz.AuditAuthzDenied, Reason: fmt.Sprintf("e%03d", i)})
	}
}

// TestAuditWriterWaitsOutAnOutage: while the store is down, events spill
// from the queue to the spool and nothing is dropped or blocks; when it is
// back, every event is written once, in the order recorded.
func TestAuditWriterWaitsOutAnOutage(t *testing.T) {
	t.Parallel()
	store, spool := newOutageStore(), &memSpool{max: 1000}
	store.down.Store(true)
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Buffer: 10, Batch: 4, Interval: 5 * time.Millisecond,
		RetryMax: 20 * time.Millisecond, MaxWait: time.Hour, Spool: spool})
	start := time.Now()
	recordN(w, 0, 60)
	eventually(t, "a write to fail", func() bool { return w.Stats().Failing })
	recordN(w, 60, 120)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("recording during an outage took %s: Record must not wait on the store", took)
	}
	if st := w.Stats(); st.Dropped != 0 || st.Queued+st.Spooled < 110 {
		t.Fatalf("during the outage: %+v; want nothing dropped and the events queued or spooled", st)
	}
	store.down.Store(false)
	eventually(t, "every event written", func() bool { return w.Written() == 120 })
	recordN(w, 120, 130) // after the spool is read back, the queue serves again
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.reasons(); !slices.Equal(got, wantReasons(130)) {
		t.Fatalf("written %v\nwant every event once, in order", got)
	}
	if st := w.Stats(); st.Dropped != 0 || st.Spooled != 0 || st.Queued != 0 || st.Failing {
		t.Fatalf("after: %+v", st)
	}
}

// TestAuditWriterRetriesWithoutDuplicates: a batch whose insert committed
// but whose answer was lost is sent again with the same ids, and the store
// keeps one of each.
func TestAuditWriterRetriesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	store := newOutageStore()
	store.lostAnswers = 3
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Batch: 5, Interval: time.Hour, RetryMax: 10 * time.Millisecond})
	recordN(w, 0, 12)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.reasons(); !slices.Equal(got, wantReasons(12)) || store.attempts < 6 {
		t.Fatalf("written %v in %d attempts; want each once, after retries", got, store.attempts)
	}
}

// TestAuditWriterDropsPastTheSpool: only past the queue and the spool are
// events dropped, and every drop is counted and logged once a minute.
func TestAuditWriterDropsPastTheSpool(t *testing.T) {
	t.Parallel()
	store, spool := newOutageStore(), &memSpool{max: 20}
	store.down.Store(true)
	logs := &authztest.SyncBuffer{}
	clk := authztest.NewClock(fixedTime)
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Buffer: 5, Batch: 5, Interval: time.Hour, MaxWait: time.Millisecond,
		Spool: spool, Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: clk.Now})
	recordN(w, 0, 100)
	// While events are spooled, new ones go behind them, never to the
	// queue; the queue's share depends on when the first write failed.
	st := w.Stats()
	kept := st.Queued + st.Spooled
	if kept < 20 || kept > 25 || int(st.Dropped) != 100-kept {
		t.Fatalf("%+v: want the spool full, the rest dropped and counted", st)
	}
	if n := strings.Count(logs.String(), "audit events dropped"); n != 1 {
		t.Fatalf("%d drop log lines within a minute, want 1:\n%s", n, logs)
	}
	clk.Advance(time.Minute)
	recordN(w, 100, 101)
	if n := strings.Count(logs.String(), "audit events dropped"); n != 2 || !strings.Contains(logs.String(), fmt.Sprintf("dropped_total=%d", st.Dropped+1)) {
		t.Fatalf("a minute later a drop is logged again with the total:\n%s", logs)
	}
	store.down.Store(false)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(store.reasons()); got != kept {
		t.Fatalf("%d written, want the %d kept", got, kept)
	}
}

// TestAuditWriterCloseDuringAnOutageSpools: a graceful stop while the store
// is down leaves every event in the spool, in order, and the next writer
// on that spool writes them first.
func TestAuditWriterCloseDuringAnOutageSpools(t *testing.T) {
	t.Parallel()
	store, spool := newOutageStore(), &memSpool{max: 1000}
	store.down.Store(true)
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Batch: 4, Interval: time.Hour, Spool: spool})
	recordN(w, 0, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if spool.Len() != 30 || w.Dropped() != 0 {
		t.Fatalf("spooled %d, dropped %d: want all 30 spooled", spool.Len(), w.Dropped())
	}

	store.down.Store(false)
	next := authz.NewAuditWriter(store, authz.AuditWriterOptions{Batch: 4, Interval: time.Hour, Spool: spool})
	eventually(t, "the spool written at start", func() bool { return next.Written() == 30 })
	recordN(next, 30, 35)
	if err := next.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.reasons(); !slices.Equal(got, wantReasons(35)) {
		t.Fatalf("written %v; want the spooled events first, in order", got)
	}
}

// TestUsageWriterLogsAnOutageOnce: while the store is down the last-used
// times stay pending and the failure is logged once, however many flushes
// fail; the recovery is logged too, and the times are written.
func TestUsageWriterLogsAnOutageOnce(t *testing.T) {
	t.Parallel()
	store := &touchStore{fail: true}
	logs := &authztest.SyncBuffer{}
	u := authz.NewUsageWriter(store, time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	u.Touch("k1", fixedTime)
	eventually(t, "the failure logged", func() bool { return strings.Contains(logs.String(), "last_used_at not written") })
	eventually(t, "more flushes to fail", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.failed >= 5
	})
	store.mu.Lock()
	store.fail = false
	store.mu.Unlock()
	eventually(t, "the recovery logged", func() bool { return strings.Contains(logs.String(), "last_used_at is written again") })
	if err := u.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "last_used_at not written"); n != 1 {
		t.Fatalf("the outage was logged %d times, want once:\n%s", n, logs)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.calls) == 0 || !store.calls[0]["k1"].Equal(fixedTime) {
		t.Fatalf("calls %v: the pending time must be written once the store is back", store.calls)
	}
}
