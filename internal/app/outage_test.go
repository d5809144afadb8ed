package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/storage/storagetest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func newOutageApp(t testing.TB, dbURL string, opts ...func(*Config)) *App {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir, cfg.DatabaseURL = t.TempDir(), dbURL
	for _, opt := range opts {
		opt(&cfg)
	}
	cfg.JWTSecret = "outage-test-secret-of-at-least-32-bytes"
	cfg.EncryptionKey = storagetest.KeyringText
	if cfg.FlushInterval == Defaults().FlushInterval {
		cfg.FlushInterval = 20 * time.Millisecond
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Close(ctx)
	})
	return a
}

func readyz(t *testing.T, a *App) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("readyz: %v: %s", err, rec.Body)
	}
	return rec.Code, body
}

func feedState(body map[string]any) string {
	feed, _ := body["change_feed"].(map[string]any)
	s, _ := feed["state"].(string)
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	authztest.Eventually(t, what, 15*time.Second, cond)
}

// metricValues collects the outage instruments by name.
func metricValues(t *testing.T, reader *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch data := m.Data.(type) {
			case metricdata.Gauge[int64]:
				got[m.Name] = float64(data.DataPoints[0].Value)
			case metricdata.Gauge[float64]:
				got[m.Name] = data.DataPoints[0].Value
			case metricdata.Sum[int64]:
				got[m.Name] = float64(data.DataPoints[0].Value)
			}
		}
	}
	return got
}

// TestReadinessWithoutAFeed: on SQLite /readyz says no change feed is
// needed, and reports the audit trail.
func TestReadinessWithoutAFeed(t *testing.T) {
	t.Parallel()
	a := newOutageApp(t, "")
	a.Start(context.Background())
	code, body := readyz(t, a)
	if code != 200 || feedState(body) != "not_needed" || body["audit"] == nil {
		t.Fatalf("readyz %d %v: want ready, no feed needed, and the audit trail's state", code, body)
	}
	reader := sdkmetric.NewManualReader()
	if err := a.registerOutageMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	got := metricValues(t, reader)
	if _, ok := got["keygate.key_change_feed.silence"]; ok {
		t.Fatal("without a feed there is no silence to measure")
	}
	if _, ok := got["keygate.audit.spool.size"]; !ok {
		t.Fatalf("metrics %v: want the spool's size", got)
	}
}

// TestReadinessFollowsTheFeed: on Postgres, /readyz and the metrics follow
// the change feed through a cut: listening, then reconnecting (and not
// ready, the database being gone), then listening again without waiting
// out a backoff; audit events recorded meanwhile are written.
func TestReadinessFollowsTheFeed(t *testing.T) {
	t.Parallel()
	proxy, dbURL := storagetest.NewProxy(t, storagetest.PostgresURL(t))
	a := newOutageApp(t, dbURL)
	reader := sdkmetric.NewManualReader()
	if err := a.registerOutageMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	if _, body := readyz(t, a); feedState(body) != "not_started" || !a.KeyCache.FeedDown() {
		t.Fatalf("before Start: %v; want the feed not started and the cache distrustful", body)
	}
	a.Start(context.Background())
	waitUntil(t, "the feed to listen", func() bool { _, body := readyz(t, a); return feedState(body) == "listening" })
	if silence := metricValues(t, reader)["keygate.key_change_feed.silence"]; silence <= 0 || silence > 5 {
		t.Fatalf("silence %vs while listening", silence)
	}

	proxy.Cut()
	waitUntil(t, "the loss to show", func() bool {
		code, body := readyz(t, a)
		return code == 503 && feedState(body) == "reconnecting"
	})
	_, body := readyz(t, a)
	if feed := body["change_feed"].(map[string]any); feed["cached_keys_trusted_for"] != "1s" {
		t.Fatalf("feed %v: while it is down cached keys are trusted for KEYGATE_KEY_CACHE_STALENESS", feed)
	}
	a.Audit.Record(authz.AuditEvent{OccurredAt: time.Now(), Action: authz.AuditAuthFailed, Reason: "during the cut"})
	waitUntil(t, "the writer to fail", func() bool { return a.Audit.Stats().Failing })

	proxy.Restore()
	if code, _ := readyz(t, a); code != 200 {
		t.Fatalf("readyz %d once the database is back", code)
	}
	waitUntil(t, "the feed to listen again", func() bool { _, body := readyz(t, a); return feedState(body) == "listening" })
	waitUntil(t, "the event to be written", func() bool { return a.Audit.Stats().Written == 1 })
	if got := metricValues(t, reader); got["keygate.audit.written"] != 1 || got["keygate.audit.dropped"] != 0 {
		t.Fatalf("metrics %v", got)
	}
}

// TestStopDuringAnOutage: a graceful stop while the database is gone is
// clean; its audit events wait in the spool, and the next start on that
// data folder writes them.
func TestStopDuringAnOutage(t *testing.T) {
	t.Parallel()
	proxy, dbURL := storagetest.NewProxy(t, storagetest.PostgresURL(t))
	dataDir := t.TempDir()
	logs := &authztest.SyncBuffer{}
	withDir := func(c *Config) {
		c.DataDir = dataDir
		c.FlushInterval = time.Hour // nothing is written before the stop
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	a := newOutageApp(t, dbURL, withDir)
	for i := range 3 {
		a.Audit.Record(authz.AuditEvent{OccurredAt: time.Now(), Action: authz.AuditAuthFailed, Reason: fmt.Sprint("before the stop ", i)})
	}
	a.Usage.Touch("0193a4b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", time.Now())

	proxy.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("a stop during an outage must be clean: %v", err)
	}
	if !strings.Contains(logs.String(), "audit events left in the spool for the next start") ||
		!strings.Contains(logs.String(), "last_used_at not written") {
		t.Fatalf("the stop must say what waits and what was lost:\n%s", logs)
	}

	proxy.Restore()
	next := newOutageApp(t, dbURL, withDir)
	waitUntil(t, "the spooled events written", func() bool { return next.Audit.Stats().Written == 3 })
	n, err := next.DB.Bun().NewSelect().Table("audit_events").Where("reason LIKE 'before the stop %'").Count(ctx)
	if err != nil || n != 3 {
		t.Fatalf("%d events in the trail (%v), want the 3 recorded before the stop", n, err)
	}
}
