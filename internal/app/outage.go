package app

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/spool"
	"github.com/keygate/keygate/storage"
	"go.opentelemetry.io/otel/metric"
)

// What an instance does when its database blinks: the audit spool, the
// change feed that keeps the key cache honest, what /readyz says about
// both, and their metrics.

// openAuditSpool opens <DataDir>/audit-spool unless the spool is off.
func (a *App) openAuditSpool() error {
	if a.Config.AuditSpoolBytes == 0 {
		return nil
	}
	dir := a.Config.AuditSpoolDir()
	s, err := spool.OpenAudit(dir, spool.Options{MaxBytes: int64(a.Config.AuditSpoolBytes), Logger: a.Config.logger()})
	if err != nil {
		return fmt.Errorf("audit spool %s: %w (give every instance its own KEYGATE_DATA_DIR, or set KEYGATE_AUDIT_SPOOL_BYTES=0)", dir, err)
	}
	if n := s.Len(); n > 0 {
		a.Config.logger().Info("audit events spooled by an earlier run are written first", "events", n, "dir", dir)
	}
	a.spool = s
	return nil
}

// newFeed makes the change feed on Postgres (nil on SQLite, whose one
// instance hears every change directly). Until it listens, the cache
// trusts a key for KEYGATE_KEY_CACHE_STALENESS only.
func (a *App) newFeed() {
	clock := a.Config.Now
	if clock == nil {
		clock = time.Now
	}
	a.Feed = storage.NewKeyChangeFeed(a.DB, storage.KeyChangeFeedOptions{
		OnChange: a.KeyCache.Invalidate,
		OnResync: a.KeyCache.FeedListening,
		OnLost: func(heard time.Time) {
			// The cache may run on a clock of its own: say how long ago.
			if !heard.IsZero() {
				heard = clock().Add(-time.Since(heard))
			}
			a.KeyCache.FeedLost(heard)
		},
		Logger: a.Config.logger(),
	})
	if a.Feed != nil {
		a.KeyCache.FeedLost(time.Time{})
	}
}

// readyDetails is what /readyz says beyond ready or not.
func (a *App) readyDetails(context.Context) map[string]any {
	d := map[string]any{}
	if a.Feed == nil {
		d["change_feed"] = map[string]any{"state": "not_needed",
			"detail": "SQLite serves one instance: every key change reaches its cache directly"}
	} else {
		feed := map[string]any{"state": "reconnecting"}
		trust := a.Config.KeyCacheStaleness
		switch {
		case a.Feed.Connected():
			feed["state"], trust = "listening", a.Config.KeyCacheTTL
		case !a.started.Load():
			feed["state"] = "not_started"
		}
		if heard := a.Feed.LastHeard(); !heard.IsZero() {
			feed["last_heard_seconds_ago"] = math.Round(time.Since(heard).Seconds()*1000) / 1000
		}
		feed["cached_keys_trusted_for"] = trust.String()
		d["change_feed"] = feed
	}
	if a.Audit != nil {
		st := a.Audit.Stats()
		writing := "ok"
		if st.Failing {
			writing = "retrying"
		}
		d["audit"] = map[string]any{"writing": writing, "queued": st.Queued, "spooled": st.Spooled, "dropped": st.Dropped}
	}
	d["rate_limits"] = a.limits.details()
	return d
}

// registerOutageMetrics exports, through the meter provider, how the audit
// trail and the change feed are doing.
func (a *App) registerOutageMetrics(mp metric.MeterProvider) error {
	meter := mp.Meter("github.com/keygate/keygate")
	audit := func(f func(authz.AuditWriterStats) int64) func() (int64, bool) {
		return func() (int64, bool) {
			if a.Audit == nil {
				return 0, false
			}
			return f(a.Audit.Stats()), true
		}
	}
	spooled := func(f func(*spool.Audit) int64) func() (int64, bool) {
		return func() (int64, bool) {
			if a.spool == nil {
				return 0, false
			}
			return f(a.spool), true
		}
	}
	ints := []intStat{
		{"keygate.audit.queued", "Audit events in memory, waiting to be written", "{event}", false,
			audit(func(st authz.AuditWriterStats) int64 { return int64(st.Queued) })},
		{"keygate.audit.spooled", "Audit events in the spool on disk, waiting for the database", "{event}", false,
			audit(func(st authz.AuditWriterStats) int64 { return int64(st.Spooled) })},
		{"keygate.audit.written", "Audit events written to the database by the batched writer", "{event}", true,
			audit(func(st authz.AuditWriterStats) int64 { return st.Written })},
		{"keygate.audit.dropped", "Audit events lost: past the queue and the spool, or after shutdown", "{event}", true,
			audit(func(st authz.AuditWriterStats) int64 { return st.Dropped })},
		{"keygate.audit.spool.size", "Bytes of the audit spool on disk (bounded by KEYGATE_AUDIT_SPOOL_BYTES)", "By", false,
			spooled((*spool.Audit).Size)},
		{"keygate.audit.spool.corrupt", "Corrupt parts of the audit spool found and skipped", "{part}", true,
			spooled((*spool.Audit).Corrupt)},
		{"keygate.key_cache.stale_reloads", "Cached keys looked up again because the change feed was down past KEYGATE_KEY_CACHE_STALENESS", "{key}", true,
			func() (int64, bool) { return a.KeyCache.Stats().Stale, true }},
	}
	instruments, observe, err := intObservables(meter, ints)
	if err != nil {
		return err
	}
	silence, err := meter.Float64ObservableGauge("keygate.key_change_feed.silence",
		metric.WithDescription("Time since the key change feed last heard the database"), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(o)
		if a.Feed != nil {
			if heard := a.Feed.LastHeard(); !heard.IsZero() {
				o.ObserveFloat64(silence, time.Since(heard).Seconds())
			}
		}
		return nil
	}, append(instruments, silence)...)
	return err
}
