package authz

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// UsageCounts counts a key's decision requests by how they were answered.
type UsageCounts struct {
	Allowed       int64 `json:"allowed"`
	Denied        int64 `json:"denied"`
	RateLimited   int64 `json:"rate_limited"`
	UsageExceeded int64 `json:"usage_exceeded"`
	Refused       int64 `json:"refused"`
}

func (c *UsageCounts) add(o UsageCounts) {
	c.Allowed += o.Allowed
	c.Denied += o.Denied
	c.RateLimited += o.RateLimited
	c.UsageExceeded += o.UsageExceeded
	c.Refused += o.Refused
}

// countOf is one request answered with code: ALLOWED, DENIED,
// RATE_LIMITED, USAGE_EXCEEDED, or a refusal of the key.
func countOf(code string) UsageCounts {
	switch code {
	case CodeAllowed:
		return UsageCounts{Allowed: 1}
	case CodeDenied:
		return UsageCounts{Denied: 1}
	case CodeRateLimited:
		return UsageCounts{RateLimited: 1}
	case CodeUsageExceeded:
		return UsageCounts{UsageExceeded: 1}
	}
	return UsageCounts{Refused: 1}
}

// UsageRollup is one key's counts over one hour.
type UsageRollup struct {
	KeyID    string
	TenantID string
	Hour     time.Time // the hour's start, UTC
	UsageCounts
}

// UsageRollupStore keeps keys' usage history as hourly rollups.
type UsageRollupStore interface {
	// AddUsage adds each rollup's counts to those stored for its key and
	// hour, creating them at first.
	AddUsage(ctx context.Context, rollups []UsageRollup) error
	// FindUsage returns the rollups of a key whose hour lies in [since,
	// until), oldest first.
	FindUsage(ctx context.Context, keyID string, since, until time.Time) ([]UsageRollup, error)
	// DeleteUsageBefore deletes at most limit rollups of hours before
	// before and returns how many it deleted.
	DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int, error)
}

// UsageCounter takes the outcome of every decision request of a key off
// the request path.
type UsageCounter interface {
	CountUsage(keyID, tenantID string, at time.Time, code string)
}

// UsageRollupWriterOptions tunes a UsageRollupWriter; zero values take the
// defaults.
type UsageRollupWriterOptions struct {
	Interval time.Duration // how often counts are written; 1s
	// MaxPending bounds the key-hours counted in memory between writes
	// (about 150 bytes each); a key-hour past it is dropped and counted in
	// Dropped. 100000.
	MaxPending int
	Batch      int // rollups per statement; 500
	Logger     *slog.Logger
	// OnWritten and OnDropped hear how many rollups each write took and
	// how many requests went uncounted (metrics).
	OnWritten func(ctx context.Context, n int)
	OnDropped func(ctx context.Context, n int64)
}

// UsageRollupWriter counts decisions per key and hour in memory and adds
// the counts to the store in batches off the request path, never a row per
// request: a busy key costs one upsert a second. While the store fails,
// counts stay pending (within MaxPending) and are added when it answers;
// the failure is logged once, and so is the recovery.
type UsageRollupWriter struct {
	store UsageRollupStore
	opts  UsageRollupWriterOptions

	mu      sync.Mutex
	pending map[rollupKey]*UsageCounts
	dropped atomic.Int64
	written atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type rollupKey struct {
	keyID, tenantID string
	hour            int64 // Unix seconds of the hour's start
}

// NewUsageRollupWriter starts a writer; Close must be called to write the
// last counts.
func NewUsageRollupWriter(store UsageRollupStore, opts UsageRollupWriterOptions) *UsageRollupWriter {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 100_000
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &UsageRollupWriter{store: store, opts: opts, pending: map[rollupKey]*UsageCounts{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

var _ UsageCounter = (*UsageRollupWriter)(nil)

// CountUsage counts one request of the key answered with code at at.
func (w *UsageRollupWriter) CountUsage(keyID, tenantID string, at time.Time, code string) {
	k := rollupKey{keyID: keyID, tenantID: tenantID, hour: at.Unix() - at.Unix()%3600}
	w.mu.Lock()
	w.addLocked(k, countOf(code), 1)
	w.mu.Unlock()
}

// addLocked adds c to k's counts; requests is how many requests c counts,
// for Dropped when k finds no room. The caller holds mu.
func (w *UsageRollupWriter) addLocked(k rollupKey, c UsageCounts, requests int64) {
	if cur := w.pending[k]; cur != nil {
		cur.add(c)
		return
	}
	if len(w.pending) >= w.opts.MaxPending {
		w.dropped.Add(requests)
		if w.opts.OnDropped != nil {
			w.opts.OnDropped(context.Background(), requests)
		}
		return
	}
	w.pending[k] = &c
}

// Dropped returns how many requests went uncounted.
func (w *UsageRollupWriter) Dropped() int64 { return w.dropped.Load() }

// Written returns how many rollups the store took.
func (w *UsageRollupWriter) Written() int64 { return w.written.Load() }

// Flush adds what is pending to the store. On failure the counts go back
// to pending, for the next attempt.
func (w *UsageRollupWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	batch := w.pending
	w.pending = make(map[rollupKey]*UsageCounts, len(batch))
	w.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	rows := make([]UsageRollup, 0, len(batch))
	for k, c := range batch {
		rows = append(rows, UsageRollup{KeyID: k.keyID, TenantID: k.tenantID, Hour: time.Unix(k.hour, 0).UTC(), UsageCounts: *c})
	}
	for start := 0; start < len(rows); start += w.opts.Batch {
		chunk := rows[start:min(start+w.opts.Batch, len(rows))]
		if err := w.store.AddUsage(ctx, chunk); err != nil {
			w.putBack(rows[start:])
			return err
		}
		w.written.Add(int64(len(chunk)))
		if w.opts.OnWritten != nil {
			w.opts.OnWritten(ctx, len(chunk))
		}
	}
	return nil
}

func (w *UsageRollupWriter) putBack(rows []UsageRollup) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range rows {
		c := r.UsageCounts
		w.addLocked(rollupKey{keyID: r.KeyID, tenantID: r.TenantID, hour: r.Hour.Unix()}, c,
			c.Allowed+c.Denied+c.RateLimited+c.UsageExceeded+c.Refused)
	}
}

// Close stops the timer and writes the last counts, waiting at most until
// ctx ends.
func (w *UsageRollupWriter) Close(ctx context.Context) error {
	w.once.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return w.Flush(ctx)
}

func (w *UsageRollupWriter) run() {
	defer close(w.done)
	flushEvery(w.stop, w.opts.Interval, w.Flush, w.opts.Logger, "key usage")
}
