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

// AuditRetentionOptions tunes an AuditRetention; zero values take the
// defaults, except MaxAge.
type AuditRetentionOptions struct {
	MaxAge   time.Duration // events older than this are deleted; required
	Batch    int           // events deleted per statement; 1000
	Pause    time.Duration // rest between two batches; 100ms
	Interval time.Duration // how often Run looks for old events; 10 minutes
	// OnDeleted hears how many events each batch deleted (a metric).
	OnDeleted func(ctx context.Context, n int)
	Logger    *slog.Logger
	Now       func() time.Time
}

// AuditRetention keeps the audit trail to its retention: it deletes events
// older than MaxAge in small batches with a rest between them, so a large
// backlog never holds a long lock or starves the requests sharing the
// database. Several instances may run it at once; each deletes what is
// left.
type AuditRetention struct {
	store AuditPruner
	opts  AuditRetentionOptions
}

// NewAuditRetention returns a retention over store.
func NewAuditRetention(store AuditPruner, opts AuditRetentionOptions) *AuditRetention {
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
	return &AuditRetention{store: store, opts: opts}
}

// Prune deletes every event older than MaxAge, a batch at a time, and
// returns how many it deleted; it stops early when ctx ends or a batch
// fails.
func (r *AuditRetention) Prune(ctx context.Context) (int, error) {
	before := r.opts.Now().Add(-r.opts.MaxAge)
	total := 0
	for {
		n, err := r.store.DeleteAuditEventsBefore(ctx, before, r.opts.Batch)
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
func (r *AuditRetention) Run(ctx context.Context) {
	ticker := time.NewTicker(r.opts.Interval)
	defer ticker.Stop()
	for {
		n, err := r.Prune(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Logger.Warn("old audit events not deleted; will retry", "deleted", n, "err", err)
		case n > 0:
			r.opts.Logger.Info("old audit events deleted", "deleted", n, "retention", r.opts.MaxAge)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
