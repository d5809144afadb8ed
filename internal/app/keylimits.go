package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/redis"
	"github.com/keygate/keygate/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// keyLimits are the parts behind per-key rate limits, credits and usage
// history; docs/operations.md, "Per-key limits", describes them.
type keyLimits struct {
	rate      authz.RateLimiter
	redis     *redis.RateLimiter // nil without KEYGATE_REDIS_URL
	credits   *authz.CreditSpender
	rollups   *authz.UsageRollupWriter
	retention *authz.Retention // nil when usage is kept forever
	onLimited func(ctx context.Context, code string)
}

func newKeyLimits(cfg Config, db *storage.DB, keys *storage.KeyStore, logger *slog.Logger, mp metric.MeterProvider) (*keyLimits, error) {
	meter := mp.Meter(meterName)
	kl := &keyLimits{}
	memory := authz.NewMemoryRateLimiter(cfg.KeyCacheSize)
	kl.rate = memory
	if cfg.RedisURL != "" {
		fallbacks, err := meter.Int64Counter("keygate.rate_limit.redis_fallbacks",
			metric.WithDescription("Requests of rate-limited keys counted on this instance alone because Redis did not answer, by cause (timeout, unreachable, error, backoff)"),
			metric.WithUnit("{request}"))
		if err != nil {
			return nil, err
		}
		kl.redis, err = redis.NewRateLimiter(redis.Options{
			URL: cfg.RedisURL, Timeout: cfg.RedisTimeout, Fallback: memory, Logger: logger, Now: cfg.Now,
			OnFallback: func(ctx context.Context, cause string) {
				fallbacks.Add(ctx, 1, metric.WithAttributes(attribute.String("cause", cause)))
			},
		})
		if err != nil {
			return nil, err
		}
		kl.rate = kl.redis
	}
	refused, err := meter.Int64Counter("keygate.key_limits.refused",
		metric.WithDescription("Decision requests refused by the key's own limits, by code (RATE_LIMITED, USAGE_EXCEEDED)"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	kl.onLimited = func(ctx context.Context, code string) {
		refused.Add(ctx, 1, metric.WithAttributes(attribute.String("code", code)))
	}
	rounds, err := meter.Int64Histogram("keygate.credits.spend_batch",
		metric.WithDescription("Requests served by one spend of a key's credits in the database"), metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	kl.credits = authz.NewCreditSpender(keys, authz.CreditSpenderOptions{Now: cfg.Now, Logger: logger,
		OnRound: func(n int) { rounds.Record(context.Background(), int64(n)) }})
	_, err = meter.Int64ObservableGauge("keygate.credits.reserved",
		metric.WithDescription("Credits this instance holds reserved ahead of keys' requests"), metric.WithUnit("{credit}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(kl.credits.Reserved())
			return nil
		}))
	if err != nil {
		return nil, err
	}

	usage := storage.NewUsageStore(db)
	written, err := meter.Int64Counter("keygate.usage.rollups_written",
		metric.WithDescription("Hourly usage rollups of keys added to the database"), metric.WithUnit("{rollup}"))
	if err != nil {
		return nil, err
	}
	dropped, err := meter.Int64Counter("keygate.usage.requests_dropped",
		metric.WithDescription("Decision requests left out of the usage history: more key-hours pending than it holds in memory"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	kl.rollups = authz.NewUsageRollupWriter(usage, authz.UsageRollupWriterOptions{
		Interval: cfg.FlushInterval, Logger: logger,
		OnWritten: func(ctx context.Context, n int) { written.Add(ctx, int64(n)) },
		OnDropped: func(ctx context.Context, n int64) { dropped.Add(ctx, n) },
	})
	if cfg.UsageRetention > 0 {
		deleted, err := meter.Int64Counter("keygate.usage.rollups_deleted",
			metric.WithDescription("Usage rollups deleted for being older than KEYGATE_USAGE_RETENTION"), metric.WithUnit("{rollup}"))
		if err != nil {
			return nil, err
		}
		kl.retention = authz.NewUsageRetention(usage, authz.RetentionOptions{MaxAge: cfg.UsageRetention, Logger: logger, Now: cfg.Now,
			OnDeleted: func(ctx context.Context, n int) { deleted.Add(ctx, int64(n)) }})
	}
	return kl, nil
}

// wire gives the key service what enforces and counts keys' limits.
func (kl *keyLimits) wire(s *authz.KeyService, usage authz.UsageRollupStore) {
	s.RateLimiter, s.Credits, s.Rollups, s.UsageLog, s.OnLimited = kl.rate, kl.credits, kl.rollups, usage, kl.onLimited
}

// details is what /readyz says of them.
func (kl *keyLimits) details() map[string]any {
	if kl.redis == nil {
		return map[string]any{"counted": "per_instance"}
	}
	state := "ok"
	if kl.redis.Down() {
		state = "failing_open"
	}
	return map[string]any{"counted": "redis", "redis": state}
}

// close gives back the credits reserved ahead, writes the last usage
// counts and closes Redis' connections.
func (kl *keyLimits) close(ctx context.Context) error {
	var err error
	if kl.credits != nil {
		if e := kl.credits.Close(ctx); e != nil {
			err = fmt.Errorf("give back reserved credits: %w", e)
		}
	}
	if kl.rollups != nil {
		if e := kl.rollups.Close(ctx); e != nil && authz.ErrorCode(e) != authz.EUNAVAILABLE && err == nil {
			err = fmt.Errorf("flush key usage: %w", e)
		}
	}
	if kl.redis != nil {
		if e := kl.redis.Close(); e != nil && err == nil {
			err = fmt.Errorf("close Redis: %w", e)
		}
	}
	return err
}
