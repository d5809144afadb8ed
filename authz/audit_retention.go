package authz

import (
	"context"
	"log/slog"
	"time"
)

// AuditPruner deletes old audit events; the stores implement it.
type AuditPruner interface {
	// DeleteAuditEventsBefore deletes at most limit of the oldest events
	// that occurred before before and returns how many it deleted.
	DeleteAuditEventsBefore(ctx context.Context, before time.Time, limit int) (int, error)
}

// RetentionOptions tunes a Retention; zero values take the defaults,
// except MaxAge.
type RetentionOptions struct {
	MaxAge   time.Duration // rows older than this are deleted; required
	Batch    int           // rows deleted per statement; 1000
	Pause    time.Duration // rest between two batches; 100ms
	Interval time.Duration // how often Run looks for old rows; 10 minutes
	// OnDeleted hears how many rows each batch deleted (a metric).
	OnDeleted func(ctx context.Context, n int)
	Logger    *slog.Logger
	Now       func() time.Time
}

// Retention keeps a history (the audit trail, keys' usage) to its
// retention: it deletes rows older than MaxAge in small batches with a rest
// between them, so a large backlog never holds a long lock or starves the
// requests sharing the database. Several instances may run it at once;
// each deletes what is left.
type Retention struct {
	prune func(ctx context.Context, before time.Time, limit int) (int, error)
	what  string // what it deletes, for log lines
	opts  RetentionOptions
}

// The audit trail's retention, under the names it was first given.
type (
	AuditRetention        = Retention
	AuditRetentionOptions = RetentionOptions
)

// NewAuditRetention returns a retention of the audit trail in store.
func NewAuditRetention(store AuditPruner, opts RetentionOptions) *Retention {
	return newRetention(store.DeleteAuditEventsBefore, "audit events", opts)
}

// NewUsageRetention returns a retention of keys' usage history in store.
func NewUsageRetention(store UsageRollupStore, opts RetentionOptions) *Retention {
	return newRetention(store.DeleteUsageBefore, "key usage rollups", opts)
}

func newRetention(prune func(context.Context, time.Time, int) (int, error), what string, opts RetentionOptions) *Retention {
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Pause <= 0 {
		opts.Pause = 100 * time.Millisecond
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Retention{prune: prune, what: what, opts: opts}
}

// Prune deletes every row older than MaxAge, a batch at a time, and
// returns how many it deleted; it stops early when ctx ends or a batch
// fails.
func (r *Retention) Prune(ctx context.Context) (int, error) {
	before := r.opts.Now().Add(-r.opts.MaxAge)
	total := 0
	for {
		n, err := r.prune(ctx, before, r.opts.Batch)
		total += n
		if n > 0 && r.opts.OnDeleted != nil {
			r.opts.OnDeleted(ctx, n)
		}
		if err != nil || n < r.opts.Batch {
			return total, err
		}
		pause := time.NewTimer(r.opts.Pause)
		select {
		case <-ctx.Done():
			pause.Stop()
			return total, ctx.Err()
		case <-pause.C:
		}
	}
}

// Run prunes now and every Interval until ctx ends.
func (r *Retention) Run(ctx context.Context) {
	ticker := time.NewTicker(r.opts.Interval)
	defer ticker.Stop()
	for {
		n, err := r.Prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Logger.Warn("old "+r.what+" not deleted; will retry", "deleted", n, "err", err)
		case n > 0:
			r.opts.Logger.Info("old "+r.what+" deleted", "deleted", n, "retention", r.opts.MaxAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
