package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/internal/spool"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func rec(i int) []byte { return fmt.Appendf(nil, "record %04d %s", i, strings.Repeat("x", i%50)) }

func open(t *testing.T, dir string, opts spool.Options) *spool.Spool {
	t.Helper()
	s, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendN(t *testing.T, s *spool.Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(rec(i)); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// readAll peeks and advances batch by batch until the spool is empty.
func readAll(t *testing.T, s *spool.Spool, batch int) [][]byte {
	t.Helper()
	var out [][]byte
	for range 100000 {
		got, err := s.Peek(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		if err := s.Advance(len(got)); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("the spool never ran dry")
	return nil
}

func wantRecords(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("%d records, want %d", len(got), to-from)
	}
	for i, r := range got {
		if !bytes.Equal(r, rec(from+i)) {
			t.Fatalf("record %d is %q, want %q", i, r, rec(from+i))
		}
	}
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func TestSpoolKeepsOrderAcrossSegmentsAndRestarts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	opts := spool.Options{MaxBytes: 1 << 20, SegmentBytes: 2048}
	s := open(t, dir, opts)
	appendN(t, s, 0, 300)
	if n := len(segments(t, dir)); n < 5 {
		t.Fatalf("%d segments, want several of 2 KiB", n)
	}
	if s.Len() != 300 || s.Size() <= 0 {
		t.Fatalf("len %d size %d", s.Len(), s.Size())
	}
	for _, p := range append(segments(t, dir), dir) {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Fatalf("%s has mode %v: the spool is for keygate's user alone", p, perm)
		}
	}
	if _, err := spool.Open(dir, opts); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second process on one spool must be refused: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, opts)
	if s.Len() != 300 {
		t.Fatalf("after a restart: %d records, want 300", s.Len())
	}
	appendN(t, s, 300, 310) // behind what the earlier run left
	wantRecords(t, readAll(t, s, 7), 0, 310)
	if s.Len() != 0 || s.Size() != 0 || len(segments(t, dir)) != 0 {
		t.Fatalf("read dry: len %d, size %d, %d segment files left", s.Len(), s.Size(), len(segments(t, dir)))
	}
	appendN(t, s, 0, 3) // an emptied spool starts a new tail
	wantRecords(t, readAll(t, s, 10), 0, 3)
}

// TestSpoolSurvivesAKill: what Append returned for is in the file at once,
// so a process killed before any sync or Close loses none of it. The kill
// is modelled by copying the folder while the spool is open.
func TestSpoolSurvivesAKill(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s := open(t, dir, spool.Options{MaxBytes: 1 << 20, SegmentBytes: 4096, SyncEvery: time.Hour})
	appendN(t, s, 0, 100)
	copied := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(copied, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range segments(t, dir) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copied, filepath.Base(f)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wantRecords(t, readAll(t, open(t, copied, spool.Options{MaxBytes: 1 << 20}), 16), 0, 100)
}

func TestSpoolReportsCorruptTails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note  string
		spoil func(data []byte) []byte
		kept  int
	}{
		{"a torn last record", func(d []byte) []byte { return d[:len(d)-3] }, 9},
		{"a flipped byte in the fifth record's payload", func(d []byte) []byte {
			// magic, then four records of rec(0..3), then the fifth's header
			off := 8
			for i := range 4 {
				off += 8 + len(rec(i))
			}
			d[off+8+2] ^= 0xff
			return d
		}, 4},
		{"garbage instead of a segment", func(d []byte) []byte { return []byte("not a spool") }, 0},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "spool")
			s := open(t, dir, spool.Options{MaxBytes: 1 << 20})
			appendN(t, s, 0, 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := segments(t, dir)
			data, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(files[0], tc.spoil(data), 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &authztest.SyncBuffer{}
			s = open(t, dir, spool.Options{MaxBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if s.Corrupt() != 1 || !strings.Contains(logs.String(), "corrupt data skipped") {
				t.Fatalf("corrupt parts %d, logs %q: want the corrupt tail reported", s.Corrupt(), logs)
			}
			wantRecords(t, readAll(t, s, 3), 0, tc.kept)
			if len(segments(t, dir)) != 0 {
				t.Fatal("a corrupt segment read to its valid end must go")
			}
		})
	}
}

func TestSpoolLimitAndPrepend(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "spool")
	s := open(t, dir, spool.Options{MaxBytes: 4096, SegmentBytes: 1024})
	var n int
	for ; ; n++ {
		err := s.Append(rec(100 + n))
		if errors.Is(err, spool.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if s.Size() > 4096 || n < 20 {
		t.Fatalf("%d records in %d bytes: the limit is 4096 bytes", n, s.Size())
	}
	if err := s.Prepend([][]byte{rec(98), rec(99)}); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("prepending past the limit: %v, want ErrFull", err)
	}
	got, err := s.Peek(1000) // the first segment
	if err != nil || len(got) == 0 {
		t.Fatal(err)
	}
	if err := s.Advance(len(got)); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepend([][]byte{rec(98), rec(99)}); err != nil {
		t.Fatalf("room was made: %v", err)
	}
	all := readAll(t, s, 5)
	wantRecords(t, all[:2], 98, 100)
	wantRecords(t, all[2:], 100+len(got), 100+n)
}

// TestAuditSpoolBehindAWriter: a writer whose store is down spills to the
// spool on disk; after a restart on the same folder, every event reaches
// the store once, in order.
func TestAuditSpoolBehindAWriter(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "audit-spool")
	as, err := spool.OpenAudit(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	store := &auditStore{down: true}
	w := authz.NewAuditWriter(store, authz.AuditWriterOptions{Buffer: 8, Batch: 4, Interval: time.Millisecond, Spool: as})
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i := range 50 {
		w.Record(authz.AuditEvent{OccurredAt: at, Action: authz.AuditAuthzDenied, Reason: fmt.Sprint(i),
			Details: map[string]any{"n": i, "source": "authorize"}})
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := as.Close(); err != nil {
		t.Fatal(err)
	}

	as, err = spool.OpenAudit(dir, spool.Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	if as.Len() != 50 {
		t.Fatalf("%d events spooled after the restart, want 50", as.Len())
	}
	store.setDown(false)
	w = authz.NewAuditWriter(store, authz.AuditWriterOptions{Batch: 4, Interval: time.Hour, Spool: as})
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := store.all()
	if len(got) != 50 || as.Len() != 0 {
		t.Fatalf("%d written, %d left: want all 50 written", len(got), as.Len())
	}
	for i, ev := range got {
		if ev.Reason != fmt.Sprint(i) || ev.Details["n"] != float64(i) || !ev.OccurredAt.Equal(at) || ev.ID == "" {
			t.Fatalf("event %d came back as %+v", i, ev)
		}
	}
}

type auditStore struct {
	mu     sync.Mutex
	down   bool
	events []authz.AuditEvent
}

func (s *auditStore) setDown(v bool) {
	s.mu.Lock()
	s.down = v
	s.mu.Unlock()
}

func (s *auditStore) all() []authz.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *auditStore) InsertAuditEvents(_ context.Context, events []authz.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("connection refused")
	}
	s.events = append(s.events, events...)
	return nil
}

func (s *auditStore) FindAuditEvents(context.Context, authz.AuditFilter) (*authz.AuditPage, error) {
	return nil, errors.New("not used")
}

// A denial's audit event as the decision path writes it, about 450 bytes
// of JSON.
func benchEvent() authz.AuditEvent {
	return authz.AuditEvent{ID: "0193a4b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", OccurredAt: time.Now(), TenantID: "tenant-1",
		ActorType: authz.ActorTypeAPIKey, ActorID: "0193a4b2-7c3d-7e4f-8a5b-6c7d8e9f0a1c", Action: authz.AuditAuthzDenied,
		TargetType: "flow", TargetID: "billing-export", Outcome: authz.OutcomeDenied, Reason: "flow billing-export is not in the key's flow_ids",
		IP: "203.0.113.7", UserAgent: "curl/8.5.0", RequestID: "5f0c1e2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f",
		Details: map[string]any{"action": "execute", "decision_id": "0193a4b2-7c3d-7e4f-8a5b-6c7d8e9f0a1d", "source": "authorize"}}
}

// BenchmarkAuditSpoolAppend is what spilling costs per event: encode and
// write, fsynced every 100ms by the spool's own loop.
func BenchmarkAuditSpoolAppend(b *testing.B) {
	as, err := spool.OpenAudit(b.TempDir(), spool.Options{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer as.Close()
	ev := benchEvent()
	for b.Loop() {
		if err := as.Append(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditSpoolAppendFsync is what spooling before every answer
// would cost if the answer waited for the disk: one fsync per event.
func BenchmarkAuditSpoolAppendFsync(b *testing.B) {
	dir := b.TempDir()
	s, err := spool.Open(dir, spool.Options{MaxBytes: 1 << 40, SyncEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := []byte(strings.Repeat("x", 450))
	for b.Loop() {
		if err := s.Append(payload); err != nil {
			b.Fatal(err)
		}
		if err := s.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditSpoolReplay is how fast a backlog left in the spool (by
// an outage or a stop during one) reaches Postgres: the writer reads it
// back in batches of 500 and inserts them. ns/op is per event.
func BenchmarkAuditSpoolReplay(b *testing.B) {
	db := storagetest.MustOpenPostgres(b)
	as, err := spool.OpenAudit(b.TempDir(), spool.Options{MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer as.Close()
	for range b.N {
		ev := benchEvent()
		if ev.ID, err = authz.NewID(ev.OccurredAt, nil); err != nil { // each its own row
			b.Fatal(err)
		}
		if err := as.Append(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	w := authz.NewAuditWriter(storage.NewAuditStore(db), authz.AuditWriterOptions{Interval: time.Hour, Spool: as})
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if w.Written() != int64(b.N) {
		b.Fatalf("%d written of %d", w.Written(), b.N)
	}
}
