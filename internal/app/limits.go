package app

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The limits against abuse New and Serve put in place; docs/operations.md,
// "Limits and abuse", lists them with their defaults and metrics.

const meterName = "github.com/keygate/keygate"

// newAuthLimiter is the failed-authentication budget shared by API keys
// and management JWTs; nil when AuthFailureBurst is 0.
func newAuthLimiter(cfg Config, logger *slog.Logger, mp metric.MeterProvider) (*authz.FailureLimiter, error) {
	if cfg.AuthFailureBurst == 0 {
		return nil, nil
	}
	meter := mp.Meter(meterName)
	limited, err := meter.Int64Counter("keygate.auth.rate_limited",
		metric.WithDescription("Requests refused with 429 because their address is over its failed-authentication budget, by credential (api_key, jwt)"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	l := authz.NewFailureLimiter(authz.FailureLimiterOptions{
		Burst:        cfg.AuthFailureBurst,
		Rate:         cfg.AuthFailureRate,
		MaxAddresses: cfg.AuthFailureMaxAddresses,
		Logger:       logger,
		Now:          cfg.Now,
		OnLimited: func(ctx context.Context, credential string) {
			limited.Add(ctx, 1, metric.WithAttributes(attribute.String("credential", credential)))
		},
	})
	_, err = meter.Int64ObservableGauge("keygate.auth.limited_addresses",
		metric.WithDescription("Addresses with failed authentications the limiter tracks"), metric.WithUnit("{address}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(l.Addresses()))
			return nil
		}))
	return l, err
}

// newAuditRetention deletes events older than AuditRetention; nil when it
// is 0 (kept forever).
func newAuditRetention(cfg Config, store authz.AuditPruner, logger *slog.Logger, mp metric.MeterProvider) (*authz.AuditRetention, error) {
	if cfg.AuditRetention == 0 {
		return nil, nil
	}
	deleted, err := mp.Meter(meterName).Int64Counter("keygate.audit.events_deleted",
		metric.WithDescription("Audit events deleted for being older than KEYGATE_AUDIT_RETENTION"), metric.WithUnit("{event}"))
	if err != nil {
		return nil, err
	}
	return authz.NewAuditRetention(store, authz.AuditRetentionOptions{
		MaxAge:    cfg.AuditRetention,
		Logger:    logger,
		Now:       cfg.Now,
		OnDeleted: func(ctx context.Context, n int) { deleted.Add(ctx, int64(n)) },
	}), nil
}

// withWriteDeadline gives every answer d to be written, so a client that
// stops reading cannot hold a connection forever; an MCP request gets d
// more than the longest tool call may take, and an MCP event stream (GET)
// lives as long as its session.
func withWriteDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		switch {
		case r.URL.Path == "/mcp" || strings.HasPrefix(r.URL.Path, "/mcp/"):
			if r.Method == http.MethodGet {
				_ = rc.SetWriteDeadline(time.Time{})
				break
			}
			_ = rc.SetWriteDeadline(time.Now().Add(d + authz.MaxMCPTimeoutMS*time.Millisecond))
		default:
			_ = rc.SetWriteDeadline(time.Now().Add(d))
		}
		h.ServeHTTP(w, r)
	})
}

// limitListener serves at most cap(sem) connections at once; the next
// waits in the kernel's accept queue until one closes.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	open      atomic.Int64
}

func newLimitListener(ln net.Listener, n int, mp metric.MeterProvider, name, description string) (*limitListener, error) {
	l := &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
	_, err := mp.Meter(meterName).Int64ObservableGauge(name,
		metric.WithDescription(description), metric.WithUnit("{connection}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(l.open.Load())
			return nil
		}))
	return l, err
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	l.open.Add(1)
	return &limitConn{Conn: c, l: l}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.sem
	})
	return err
}
