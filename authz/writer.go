package authz

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// AuditWriterOptions tunes an AuditWriter; zero values take the defaults.
type AuditWriterOptions struct {
	Buffer   int           // events held before new ones are dropped; 10000
	Batch    int           // events per insert; 500
	Interval time.Duration // longest an event waits; 1s
	// MaxWait is how long Record waits for room when the queue is full
	// before it drops the event: a burst beyond what the database takes
	// slows requests down rather than losing their record; a database that
	// is gone cannot stall them for longer. Default 100ms.
	MaxWait time.Duration
	Logger  *slog.Logger
}

// AuditWriter records audit events off the request path: Record queues an
// event, and a single goroutine inserts them in batches. The queue is
// bounded so a slow database cannot exhaust memory; when it is full, Record
// waits up to MaxWait for room, and only then drops the event, counting and
// logging the loss.
type AuditWriter struct {
	store   AuditStore
	opts    AuditWriterOptions
	mu      sync.RWMutex // guards closed against a send on a closed channel
	closed  bool
	queue   chan AuditEvent
	done    chan struct{}
	dropped atomic.Int64
	written atomic.Int64
}

// NewAuditWriter starts a writer; Close must be called to flush it.
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &AuditWriter{store: store, opts: opts, queue: make(chan AuditEvent, opts.Buffer), done: make(chan struct{})}
	go w.run()
	return w
}

var _ AuditRecorder = (*AuditWriter)(nil)

// Record queues ev. It gives the event an id when it has none.
func (w *AuditWriter) Record(ev AuditEvent) {
	if ev.ID == "" {
		id, err := NewID(ev.OccurredAt, nil)
		if err != nil {
			w.dropped.Add(1)
			return
		}
		ev.ID = id
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- ev:
		return
	default:
	}
	wait := time.NewTimer(w.opts.MaxWait)
	defer wait.Stop()
	select {
	case w.queue <- ev:
	case <-wait.C:
		if w.dropped.Add(1)%1000 == 1 {
			w.opts.Logger.Warn("audit queue full; dropping events", "dropped_total", w.dropped.Load())
		}
	}
}

// Dropped returns how many events could not be queued or written.
func (w *AuditWriter) Dropped() int64 { return w.dropped.Load() }

// Written returns how many events reached the store.
func (w *AuditWriter) Written() int64 { return w.written.Load() }

// Close stops taking events and writes everything queued, waiting at most
// until ctx ends.
func (w *AuditWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
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
	batch := make([]AuditEvent, 0, w.opts.Batch)
	for {
		select {
		case ev, ok := <-w.queue:
			if !ok {
				w.flush(batch)
				return
			}
			batch = append(batch, ev)
			if len(batch) >= w.opts.Batch {
				batch = w.flush(batch)
			}
		case <-ticker.C:
			batch = w.flush(batch)
		}
	}
}

// flush inserts a batch, trying a few times so a brief database hiccup
// loses nothing; it returns the emptied batch for reuse.
func (w *AuditWriter) flush(batch []AuditEvent) []AuditEvent {
	if len(batch) == 0 {
		return batch
	}
	var err error
	for attempt := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = w.store.InsertAuditEvents(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(int64(len(batch)))
			return batch[:0]
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	w.dropped.Add(int64(len(batch)))
	w.opts.Logger.Error("audit events lost after retries", "events", len(batch), "err", err)
	return batch[:0]
}

// UsageWriter coalesces last-used times: Touch keeps the newest time per key
// in memory and a goroutine writes them all in one statement per interval,
// so authentication never writes to the database.
type UsageWriter struct {
	store    KeyStore
	interval time.Duration
	logger   *slog.Logger
	mu       sync.Mutex
	pending  map[string]time.Time
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
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
	u := &UsageWriter{store: store, interval: interval, logger: logger,
		pending: make(map[string]time.Time), stop: make(chan struct{}), done: make(chan struct{})}
	go u.run()
	return u
}

var _ UsageRecorder = (*UsageWriter)(nil)

// Touch notes that keyID was used at at.
func (u *UsageWriter) Touch(keyID string, at time.Time) {
	u.mu.Lock()
	if prev, ok := u.pending[keyID]; !ok || at.After(prev) {
		u.pending[keyID] = at
	}
	u.mu.Unlock()
}

// Flush writes what is pending now. On failure the times go back to the
// pending set (unless newer ones arrived) for the next attempt.
func (u *UsageWriter) Flush(ctx context.Context) error {
	u.mu.Lock()
	batch := u.pending
	u.pending = make(map[string]time.Time, len(batch))
	u.mu.Unlock()
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
	ticker := time.NewTicker(u.interval)
	defer ticker.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := u.Flush(ctx); err != nil {
				u.logger.Warn("last_used_at not written; will retry", "err", err)
			}
			cancel()
		}
	}
}
