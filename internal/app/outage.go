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
	s, err := spool.OpenAudit(dir, spool.Options{MaxBytes: a.Config.AuditSpoolBytes, Logger: a.Config.logger()})
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

// kickingLookup is the key store as the cache sees it: a lookup that gets
// an answer proves the database is back, so a feed waiting to reconnect
// tries at once.
type kickingLookup struct {
	authz.KeyLookup
	feed func() *storage.KeyChangeFeed
}

func (l kickingLookup) KeyByHash(ctx context.Context, hash string) (*authz.APIKey, error) {
	key, err := l.KeyLookup.KeyByHash(ctx, hash)
	if f := l.feed(); f != nil && (err == nil || authz.ErrorCode(err) == authz.ENOTFOUND) {
		f.Kick()
	}
	return key, err
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
	return d
}

// registerOutageMetrics exports, through the meter provider, how the audit
// trail and the change feed are doing.
func (a *App) registerOutageMetrics(mp metric.MeterProvider) error {
	meter := mp.Meter("github.com/keygate/keygate")
	queued, err1 := meter.Int64ObservableGauge("keygate.audit.queued",
		metric.WithDescription("Audit events in memory, waiting to be written"), metric.WithUnit("{event}"))
	spooled, err2 := meter.Int64ObservableGauge("keygate.audit.spooled",
		metric.WithDescription("Audit events in the spool on disk, waiting for the database"), metric.WithUnit("{event}"))
	spoolSize, err3 := meter.Int64ObservableGauge("keygate.audit.spool.size",
		metric.WithDescription("Bytes of the audit spool on disk (bounded by KEYGATE_AUDIT_SPOOL_BYTES)"), metric.WithUnit("By"))
	written, err4 := meter.Int64ObservableCounter("keygate.audit.written",
		metric.WithDescription("Audit events written to the database by the batched writer"), metric.WithUnit("{event}"))
	dropped, err5 := meter.Int64ObservableCounter("keygate.audit.dropped",
		metric.WithDescription("Audit events lost: past the queue and the spool, or after shutdown"), metric.WithUnit("{event}"))
	corrupt, err6 := meter.Int64ObservableCounter("keygate.audit.spool.corrupt",
		metric.WithDescription("Corrupt parts of the audit spool found and skipped"), metric.WithUnit("{part}"))
	silence, err7 := meter.Float64ObservableGauge("keygate.key_change_feed.silence",
		metric.WithDescription("Time since the key change feed last heard the database"), metric.WithUnit("s"))
	stale, err8 := meter.Int64ObservableCounter("keygate.key_cache.stale_reloads",
		metric.WithDescription("Cached keys looked up again because the change feed was down past KEYGATE_KEY_CACHE_STALENESS"), metric.WithUnit("{key}"))
	for _, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8} {
		if err != nil {
			return err
		}
	}
	_, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if a.Audit != nil {
			st := a.Audit.Stats()
			o.ObserveInt64(queued, int64(st.Queued))
			o.ObserveInt64(spooled, int64(st.Spooled))
			o.ObserveInt64(written, st.Written)
			o.ObserveInt64(dropped, st.Dropped)
		}
		if a.spool != nil {
			o.ObserveInt64(spoolSize, a.spool.Size())
			o.ObserveInt64(corrupt, a.spool.Corrupt())
		}
		if a.Feed != nil {
			if heard := a.Feed.LastHeard(); !heard.IsZero() {
				o.ObserveFloat64(silence, time.Since(heard).Seconds())
			}
		}
		o.ObserveInt64(stale, a.KeyCache.Stats().Stale)
		return nil
	}, queued, spooled, spoolSize, written, dropped, corrupt, silence, stale)
	return err
}
