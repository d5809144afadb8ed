package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/decisionlog"
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
