// Package redis shares keygate's per-key rate limits between instances
// through Redis (go-redis, and redis_rate's GCRA script, the algorithm the
// in-memory limiter runs too). A Redis that does not answer never holds a
// decision up for longer than the timeout: the limiter fails open to its
// fallback, counting on this instance alone, says so in a log line (once a
// minute per cause) and a metric, and asks Redis again a second later.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/keygate/keygate/authz"
	goredis "github.com/redis/go-redis/v9"
)

// KeyPrefix starts the name of every Redis key the limiter writes, after
// redis_rate's own "rate:".
const KeyPrefix = "keygate:key:"

// Options configure a RateLimiter; zero values take the defaults, except
// URL and Fallback.
type Options struct {
	// URL is the Redis server, redis://[user:password@]host:port/db or
	// rediss:// for TLS.
	URL string
	// Timeout bounds each question to Redis, connecting included; 50ms.
	Timeout time.Duration
	// Fallback counts while Redis does not answer; required.
	Fallback authz.RateLimiter
	// Backoff is how long the limiter counts on the fallback after Redis
	// failed, before asking it again; 1s.
	Backoff time.Duration
	// LogInterval is the least time between two log lines about one cause
	// of failure; 1 minute.
	LogInterval time.Duration
	Logger      *slog.Logger
	// OnFallback hears of every request counted by the fallback, with the
	// cause (a metric): "timeout", "unreachable", "error" or "backoff".
	OnFallback func(ctx context.Context, cause string)
	Now        func() time.Time
}

// RateLimiter counts keys' requests in Redis, so every instance shares
// each key's limit.
type RateLimiter struct {
	client  *goredis.Client
	limiter *redis_rate.Limiter
	opts    Options

	downUntil atomic.Int64 // Unix ns: until then the fallback counts
	down      atomic.Bool  // Redis failed and has not answered since
	mu        sync.Mutex
	logged    map[string]int64 // cause → when it was last logged, Unix ns
}

var _ authz.RateLimiter = (*RateLimiter)(nil)

// NewRateLimiter connects lazily to the Redis opts.URL names; a URL that
// does not parse is an error naming KEYGATE_REDIS_URL, without the URL
// (it may hold a password).
func NewRateLimiter(opts Options) (*RateLimiter, error) {
	if opts.Fallback == nil {
		return nil, errors.New("a fallback rate limiter is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 50 * time.Millisecond
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.LogInterval <= 0 {
		opts.LogInterval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ro, err := goredis.ParseURL(opts.URL)
	if err != nil {
		return nil, errors.New("KEYGATE_REDIS_URL is not a Redis URL (redis://[user:password@]host:port/db or rediss://…)")
	}
	// Every question is bounded by the caller's timeout, dialling
	// included; a failed one is not retried: the fallback answers.
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout, ro.PoolTimeout = opts.Timeout, opts.Timeout, opts.Timeout, opts.Timeout
	ro.DialerRetries = 1
	// A connection for every request a busy instance has in flight, so
	// none waits for one: the timeout is for Redis, not for the pool.
	ro.PoolSize = max(ro.PoolSize, 64*runtime.GOMAXPROCS(0))
	ro.MinIdleConns = max(ro.MinIdleConns, 4)
	ro.DisableIdentity = true
	// go-redis logs every failed dial through a logger of its own, for the
	// whole process; its lines go to keygate's log at debug level, as the
	// limiter says what matters once a minute.
	goredis.SetLogger(debugLogger{opts.Logger})
	client := goredis.NewClient(ro)
	return &RateLimiter{client: client, limiter: redis_rate.NewLimiter(client), opts: opts, logged: map[string]int64{}}, nil
}

// Take implements authz.RateLimiter: one request of the key, counted in
// Redis, or by the fallback while Redis does not answer.
func (l *RateLimiter) Take(ctx context.Context, keyID string, limit authz.RateLimit, now time.Time) authz.RateLimitState {
	if l.opts.Now().UnixNano() < l.downUntil.Load() {
		l.fellBack(ctx, "backoff")
		return l.opts.Fallback.Take(ctx, keyID, limit, now)
	}
	// The caller's cancellation does not count as Redis failing; the
	// timeout bounds the wait either way.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.Timeout)
	res, err := l.limiter.Allow(rctx, KeyPrefix+keyID, redis_rate.Limit{Rate: int(limit.Limit), Burst: int(limit.Limit), Period: limit.Window()})
	cancel()
	if err != nil {
		cause := failureCause(err)
		l.failed(ctx, cause, err)
		l.fellBack(ctx, cause)
		return l.opts.Fallback.Take(ctx, keyID, limit, now)
	}
	if l.down.Swap(false) {
		l.opts.Logger.Info("rate limits are shared through Redis again")
	}
	st := authz.RateLimitState{Allowed: res.Allowed > 0, Limit: limit.Limit, Remaining: int64(max(res.Remaining, 0)),
		ResetAt: now.Add(max(res.ResetAfter, 0)).UTC()}
	if !st.Allowed {
		st.RetryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return st
}

func (l *RateLimiter) fellBack(ctx context.Context, cause string) {
	if l.opts.OnFallback != nil {
		l.opts.OnFallback(ctx, cause)
	}
}

// failed notes a failure: the fallback counts for Backoff, and the cause
// is logged unless it was within LogInterval.
func (l *RateLimiter) failed(_ context.Context, cause string, err error) {
	now := l.opts.Now().UnixNano()
	l.downUntil.Store(now + int64(l.opts.Backoff))
	l.down.Store(true)
	l.mu.Lock()
	last, seen := l.logged[cause]
	quiet := seen && now-last < int64(l.opts.LogInterval)
	if !quiet {
		l.logged[cause] = now
	}
	l.mu.Unlock()
	if !quiet {
		l.opts.Logger.Warn("Redis does not answer: rate limits fail open to counting on this instance alone (KEYGATE_REDIS_URL, KEYGATE_REDIS_TIMEOUT)",
			"cause", cause, "timeout", l.opts.Timeout, "err", err)
	}
}

// failureCause sorts a failure into a few causes for logs and metrics.
func failureCause(err error) string {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.As(err, &opErr):
		return "unreachable"
	}
	return "error"
}

// debugLogger hands go-redis's log lines to slog at debug level.
type debugLogger struct{ l *slog.Logger }

func (d debugLogger) Printf(ctx context.Context, format string, v ...any) {
	if d.l.Enabled(ctx, slog.LevelDebug) {
		d.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
	}
}

// Ping checks that Redis answers within the timeout.
func (l *RateLimiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	return l.client.Ping(ctx).Err()
}

// Down reports whether the last question to Redis failed.
func (l *RateLimiter) Down() bool { return l.down.Load() }

// Close closes the connections to Redis.
func (l *RateLimiter) Close() error { return l.client.Close() }
