package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/decisionlog"
	"go.opentelemetry.io/otel/metric"
)

// openDecisionLog starts the decision log KEYGATE_DECISION_LOG names, and
// hooks it into the one decision path; nothing when it is off.
func (a *App) openDecisionLog() error {
	cfg := a.Config
	dl, err := decisionlog.Parse(cfg.DecisionLog)
	if err != nil || dl.Kind == "" {
		return err
	}
	sink, err := decisionlog.Open(dl, decisionlog.Options{Stdout: cfg.DecisionLogStdout, Gzip: cfg.DecisionLogGzip})
	if err != nil {
		return err
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("decision log instance id: %w", err)
	}
	a.DecisionLog = authz.NewDecisionLogWriter(a.Engine, sink, authz.DecisionLogWriterOptions{
		Buffer:   cfg.DecisionLogBuffer,
		Interval: cfg.FlushInterval,
		Sample:   cfg.DecisionLogSample,
		Labels:   map[string]string{"id": hex.EncodeToString(id[:]), "version": cfg.Version, "app": "keygate"},
		Logger:   cfg.logger(),
	})
	a.Keys.DecisionLog = a.DecisionLog
	return nil
}

// registerDecisionLogMetrics exports how the decision log is doing:
// keygate.decision_log.queued (gauge), .written, .dropped (the queue was
// full) and .failed (the sink failed, or an event could not be built).
func (a *App) registerDecisionLogMetrics(mp metric.MeterProvider) error {
	if a.DecisionLog == nil {
		return nil
	}
	meter := mp.Meter("github.com/keygate/keygate")
	queued, err := meter.Int64ObservableGauge("keygate.decision_log.queued",
		metric.WithDescription("Decisions waiting to be written to the decision log"), metric.WithUnit("{event}"))
	if err != nil {
		return err
	}
	var counters [3]metric.Int64ObservableCounter
	for i, c := range []struct{ name, desc string }{
		{"keygate.decision_log.written", "Decision-log events handed to the sink"},
		{"keygate.decision_log.dropped", "Decisions not logged: the queue was full (KEYGATE_DECISION_LOG_BUFFER)"},
		{"keygate.decision_log.failed", "Decision-log events lost: the sink failed, or an event could not be built or masked"},
	} {
		if counters[i], err = meter.Int64ObservableCounter(c.name, metric.WithDescription(c.desc), metric.WithUnit("{event}")); err != nil {
			return err
		}
	}
	w := a.DecisionLog
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := w.Stats()
		o.ObserveInt64(queued, int64(st.Queued))
		o.ObserveInt64(counters[0], st.Written)
		o.ObserveInt64(counters[1], st.Dropped)
		o.ObserveInt64(counters[2], st.Failed)
		return nil
	}, queued, counters[0], counters[1], counters[2])
	return err
}
