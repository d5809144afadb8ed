package authz

import (
	"context"
	"hash/maphash"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// AuditWriterOptions tunes an AuditWriter; zero values take the defaults.
type AuditWriterOptions struct {
	Buffer   int           // events held in memory; 10000
	Batch    int           // events per insert; 500
	Interval time.Duration // longest an event waits; 1s
	// MaxWait is how long Record waits for room when the queue is full and
	// the spool cannot take the event (there is none, or it is full) before
	// it drops the event: a burst beyond what the database takes slows
	// requests down rather than losing their record; a database that is
	// gone cannot stall them for longer. Default 100ms.
	MaxWait time.Duration
	// RetryMax caps the wait between attempts to write to a store that
	// fails; each wait is jittered. Default 2s.
	RetryMax time.Duration
	// Spool takes events the queue has no room for, and everything queued
	// once the store fails, until the store answers again; nil keeps
	// events in memory only.
	Spool  AuditSpool
	Logger *slog.Logger
	Now    func() time.Time // paces the drop log; nil: time.Now
}

// AuditSpool keeps audit events on disk, in order, for as long as the
// store cannot take them. An AuditWriter appends to its tail, reads it
// back from its head and puts the events it held in memory before
// everything spooled when the store fails.
type AuditSpool interface {
	// Append adds ev at the tail; an error (full, or a failing disk) means
	// it was not kept.
	Append(ev AuditEvent) error
	// Prepend puts events, older than every spooled one, at the head; all
	// or nothing.
	Prepend(events []AuditEvent) error
	// Peek returns up to n events from the head, leaving them there.
	Peek(n int) ([]AuditEvent, error)
	// Advance removes the first n events the last Peek returned.
	Advance(n int) error
	// Len returns how many events are spooled.
	Len() int
}

// AuditWriter records audit events off the request path: Record queues an
// event, and a single goroutine inserts them in batches, in order. When the
// store fails, nothing is dropped: the batch is retried with backoff and
// jitter until the store answers, and meanwhile what is queued moves to the
// spool, where every new event goes too until the spool is read back. Only
// when both the queue and the spool are full does Record wait, up to
// MaxWait, and then drop the event, counting it and logging at most once a
// minute. Events carry their id from Record on, and the store skips ids it
// already holds, so a batch retried after an unclear failure (the commit
// happened, its answer was lost) is not written twice.
type AuditWriter struct {
	store AuditStore
	spool AuditSpool
	opts  AuditWriterOptions

	mu       sync.Mutex
	queue    eventRing
	spilling bool // events are spooled: new ones go there too, after them
	closed   bool
	room     chan struct{} // closed, and replaced, whenever room is made

	wake     chan struct{} // a batch is ready
	closing  chan context.Context
	done     chan struct{}
	held     atomic.Int64 // events the writer holds, taken from the queue
	dropped  atomic.Int64
	written  atomic.Int64
	failing  atomic.Bool
	dropLog  atomic.Int64 // when the last drop was logged, Unix nanoseconds
	dropSeen atomic.Int64 // dropped as of that log line
}

// NewAuditWriter starts a writer; Close must be called to flush it. Events
// left in the spool by an earlier run are written first.
func NewAuditWriter(store AuditStore, opts AuditWriterOptions) *AuditWriter {
	if opts.Buffer <= 0 {
		opts.Buffer = 10000
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 100 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &AuditWriter{store: store, spool: opts.Spool, opts: opts, queue: newEventRing(opts.Buffer),
		room: make(chan struct{}), wake: make(chan struct{}, 1), closing: make(chan context.Context, 1), done: make(chan struct{})}
	if w.spool != nil && w.spool.Len() > 0 {
		w.spilling = true
		w.signal()
	}
	go w.run()
	return w
}

var _ AuditRecorder = (*AuditWriter)(nil)

// Record queues ev, or spools it; it never waits on the store. It gives the
// event an id when it has none.
func (w *AuditWriter) Record(ev AuditEvent) {
	if ev.ID == "" {
		id, err := NewID(ev.OccurredAt, nil)
		if err != nil {
			w.drop(1, "no id could be drawn")
			return
		}
		ev.ID = id
	}
	var deadline *time.Timer
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			w.drop(1, "the writer is closed")
			return
		}
		if !w.spilling && w.queue.len() < w.queue.cap() {
			w.queue.push(ev)
			ready := w.queue.len() >= w.opts.Batch
			w.mu.Unlock()
			if ready {
				w.signal()
			}
			return
		}
		if w.spool != nil && w.spool.Append(ev) == nil {
			w.spilling = true
			w.mu.Unlock()
			return
		}
		room := w.room
		w.mu.Unlock()
		if deadline == nil {
			deadline = time.NewTimer(w.opts.MaxWait)
			defer deadline.Stop()
		}
		select {
		case <-room:
		case <-deadline.C:
			w.drop(1, "the queue and the spool are full")
			return
		}
	}
}

// drop counts lost events and says so at most once a minute.
func (w *AuditWriter) drop(n int64, why string) {
	total := w.dropped.Add(n)
	now := w.opts.Now().UnixNano()
	last := w.dropLog.Load()
	if last != 0 && now-last < int64(time.Minute) || !w.dropLog.CompareAndSwap(last, now) {
		return
	}
	w.opts.Logger.Error("audit events dropped", "why", why, "dropped", total-w.dropSeen.Swap(total), "dropped_total", total)
}

func (w *AuditWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// madeRoom wakes every Record waiting for room; the caller holds mu.
func (w *AuditWriter) madeRoom() {
	close(w.room)
	w.room = make(chan struct{})
}

// AuditWriterStats describe a writer now.
type AuditWriterStats struct {
	Queued  int   // events in memory, queued or being written
	Spooled int   // events in the spool
	Written int64 // events the store took
	Dropped int64 // events lost: past the queue and the spool, or after Close
	Failing bool  // the last write failed; the writer is retrying
}

// Stats returns the writer's counters and sizes.
func (w *AuditWriter) Stats() AuditWriterStats {
	w.mu.Lock()
	st := AuditWriterStats{Queued: w.queue.len() + int(w.held.Load())}
	if w.spool != nil {
		st.Spooled = w.spool.Len()
	}
	w.mu.Unlock()
	st.Written, st.Dropped, st.Failing = w.written.Load(), w.dropped.Load(), w.failing.Load()
	return st
}

// Dropped returns how many events could not be queued or written.
func (w *AuditWriter) Dropped() int64 { return w.dropped.Load() }

// Written returns how many events reached the store.
func (w *AuditWriter) Written() int64 { return w.written.Load() }

// Close stops taking events and writes everything queued and spooled,
// waiting at most until ctx ends. When the store fails meanwhile, what is
// left goes to the spool, for the next start; without a spool the writer
// retries until ctx ends and then counts what is left as dropped.
func (w *AuditWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	first := !w.closed
	w.closed = true
	w.mu.Unlock()
	if first {
		w.closing <- ctx
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *AuditWriter) run() {
	defer close(w.done)
	ticker := time.NewTicker(w.opts.Interval)
	defer ticker.Stop()
	var (
		held    []AuditEvent // taken from the queue, not yet written: the oldest events
		backoff time.Duration
		retry   <-chan time.Time
	)
	for {
		select {
		case ctx := <-w.closing:
			w.finish(ctx, held)
			return
		case <-retry:
			retry = nil
		case <-w.wake:
		case <-ticker.C:
		}
		if retry != nil { // waiting out a failure
			continue
		}
		var more bool
		var err error
		held, more, err = w.drain(context.Background(), held)
		w.held.Store(int64(len(held)))
		if err == nil {
			if backoff > 0 {
				w.failing.Store(false)
				w.opts.Logger.Info("audit events are written again")
			}
			backoff = 0
			if more {
				w.signal()
			}
			continue
		}
		if backoff == 0 {
			w.failing.Store(true)
			w.opts.Logger.Warn("audit events cannot be written; keeping them until the database answers",
				"spool", w.spool != nil, "err", err)
		}
		held = w.spillHeld(held)
		w.held.Store(int64(len(held)))
		backoff = min(max(2*backoff, 100*time.Millisecond), w.opts.RetryMax)
		retry = time.After(jitter(backoff))
	}
}

// jitter spreads retries over [d/2, d).
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// drainBatches bounds one drain, so a writer kept busy still hears Close.
const drainBatches = 64

// drain writes the oldest events first: those held, the queue, then the
// spool. It reports whether events remain and the store's error, if any.
func (w *AuditWriter) drain(ctx context.Context, held []AuditEvent) ([]AuditEvent, bool, error) {
	for range drainBatches {
		if len(held) == 0 {
			held = w.take(held)
		}
		if len(held) > 0 {
			if err := w.insert(ctx, held); err != nil {
				return held, true, err
			}
			w.written.Add(int64(len(held)))
			held = held[:0]
			continue
		}
		if w.spool == nil || w.stopSpilling() {
			return held, false, nil
		}
		events, err := w.spool.Peek(w.opts.Batch)
		if err != nil {
			return held, true, err
		}
		if len(events) == 0 {
			return held, false, nil
		}
		if err := w.insert(ctx, events); err != nil {
			return held, true, err
		}
		if err := w.spool.Advance(len(events)); err != nil {
			return held, true, err
		}
		w.written.Add(int64(len(events)))
		w.mu.Lock()
		w.madeRoom()
		w.mu.Unlock()
	}
	return held, true, nil
}

// take moves up to a batch from the queue into dst.
func (w *AuditWriter) take(dst []AuditEvent) []AuditEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	dst = w.queue.pop(dst[:0], w.opts.Batch)
	if len(dst) > 0 {
		w.madeRoom()
	}
	return dst
}

// stopSpilling reports whether the spool is empty, and if so sends new
// events to the queue again. Appends happen under mu: none can slip in.
func (w *AuditWriter) stopSpilling() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spool.Len() > 0 {
		return false
	}
	w.spilling = false
	return true
}

func (w *AuditWriter) insert(ctx context.Context, events []AuditEvent) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return w.store.InsertAuditEvents(ctx, events)
}

// spillHeld moves what is held and queued to the head of the spool, older
// than anything spooled, so that a restart does not lose it; from then on
// new events are spooled behind it. Without a spool, or when it cannot
// take them, they stay in memory.
func (w *AuditWriter) spillHeld(held []AuditEvent) []AuditEvent {
	if w.spool == nil {
		return held
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	events := w.queue.pop(held, w.queue.len())
	if len(events) == 0 {
		return held
	}
	if err := w.spool.Prepend(events); err != nil {
		// Back where they were: the oldest held, the rest queued.
		held, rest := events[:len(held)], events[len(held):]
		for _, ev := range rest {
			w.queue.push(ev)
		}
		w.opts.Logger.Warn("audit events kept in memory: the spool cannot take them", "events", len(events), "err", err)
		return held
	}
	w.spilling = true
	w.madeRoom()
	return events[:0]
}

// finish is the last drain, on Close.
func (w *AuditWriter) finish(ctx context.Context, held []AuditEvent) {
	backoff := 100 * time.Millisecond
	for {
		var more bool
		var err error
		held, more, err = w.drain(ctx, held)
		if err == nil && !more {
			return
		}
		if err == nil {
			continue
		}
		if w.spool != nil {
			if held = w.spillHeld(held); len(held) == 0 {
				return // the rest is spooled, for the next start
			}
		}
		select {
		case <-ctx.Done():
			w.mu.Lock()
			n := len(held) + w.queue.len()
			w.mu.Unlock()
			w.drop(int64(n), "the database did not answer before shutdown")
			return
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, w.opts.RetryMax)
	}
}

// eventRing is the writer's queue: a fixed ring, oldest first.
type eventRing struct {
	buf     []AuditEvent
	head, n int
}

func newEventRing(size int) eventRing { return eventRing{buf: make([]AuditEvent, size)} }

func (r *eventRing) len() int { return r.n }
func (r *eventRing) cap() int { return len(r.buf) }

func (r *eventRing) push(ev AuditEvent) {
	r.buf[(r.head+r.n)%len(r.buf)] = ev
	r.n++
}

// pop appends up to max of the oldest events to dst and removes them.
func (r *eventRing) pop(dst []AuditEvent, max int) []AuditEvent {
	for ; max > 0 && r.n > 0; max-- {
		dst = append(dst, r.buf[r.head])
		r.buf[r.head] = AuditEvent{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
	}
	return dst
}

// UsageWriter coalesces last-used times: Touch keeps the newest time per key
// in memory and a goroutine writes them all in one statement per interval,
// so authentication never writes to the database. While the database is
// down the times stay pending (one per key) and are written when it
// answers again; the failure is logged once, and so is the recovery.
//
// Every decision touches its key, so the pending times are split in
// shards by key: with one lock, requests on the two cores queued behind
// each other there (93% of the mutex contention the realistic benchmark
// recorded).
type UsageWriter struct {
	store    KeyStore
	interval time.Duration
	logger   *slog.Logger
	seed     maphash.Seed
	shards   [usageShardCount]usageShard
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

const usageShardCount = 16

type usageShard struct {
	mu      sync.Mutex
	pending map[string]time.Time
	_       [48]byte // 64 bytes each: shards do not share a cache line
}

// NewUsageWriter starts a writer flushing every interval (default 1s);
// Close must be called to write the last times.
func NewUsageWriter(store KeyStore, interval time.Duration, logger *slog.Logger) *UsageWriter {
	if interval <= 0 {
		interval = time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u := &UsageWriter{store: store, interval: interval, logger: logger, seed: maphash.MakeSeed(),
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range u.shards {
		u.shards[i].pending = make(map[string]time.Time)
	}
	go u.run()
	return u
}

var _ UsageRecorder = (*UsageWriter)(nil)

// Touch notes that keyID was used at at.
func (u *UsageWriter) Touch(keyID string, at time.Time) {
	sh := &u.shards[maphash.String(u.seed, keyID)%usageShardCount]
	sh.mu.Lock()
	if prev, ok := sh.pending[keyID]; !ok || at.After(prev) {
		sh.pending[keyID] = at
	}
	sh.mu.Unlock()
}

// Flush writes what is pending now. On failure the times go back to the
// pending set (unless newer ones arrived) for the next attempt.
func (u *UsageWriter) Flush(ctx context.Context) error {
	var batch map[string]time.Time
	for i := range u.shards {
		sh := &u.shards[i]
		var taken map[string]time.Time // the shard's no more, once taken
		sh.mu.Lock()
		if n := len(sh.pending); n > 0 {
			taken, sh.pending = sh.pending, make(map[string]time.Time, n)
		}
		sh.mu.Unlock()
		switch {
		case taken == nil:
		case batch == nil:
			batch = taken
		default:
			maps.Copy(batch, taken)
		}
	}
	if len(batch) == 0 {
		return nil
	}
	err := u.store.TouchKeys(ctx, batch)
	if err != nil {
		for id, at := range batch {
			u.Touch(id, at)
		}
	}
	return err
}

// Close stops the timer and writes the last pending times.
func (u *UsageWriter) Close(ctx context.Context) error {
	u.once.Do(func() { close(u.stop) })
	select {
	case <-u.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return u.Flush(ctx)
}

func (u *UsageWriter) run() {
	defer close(u.done)
	flushEvery(u.stop, u.interval, u.Flush, u.logger, "last_used_at")
}

// flushEvery calls flush every interval until stop closes, each call
// bounded to 10s. A failure is logged once, and so is the recovery, what
// naming what is written.
func flushEvery(stop <-chan struct{}, interval time.Duration, flush func(context.Context) error, logger *slog.Logger, what string) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	failing := false
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := flush(ctx)
			cancel()
			switch {
			case err != nil && !failing:
				logger.Warn(what+" not written; keeping it until the database answers", "err", err)
			case err == nil && failing:
				logger.Info(what + " is written again")
			}
			failing = err != nil
		}
	}
}
