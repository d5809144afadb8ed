package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/keygate/keygate/authz"
)

// Audit is a spool of audit events, each one JSON record: the AuditSpool an
// authz.AuditWriter spills to.
type Audit struct {
	s      *Spool
	logger *slog.Logger
	raw    int   // records the last Peek covered, undecodable ones included
	index  []int // record index of each event the last Peek returned
}

var _ authz.AuditSpool = (*Audit)(nil)

// OpenAudit opens the audit spool in dir; see Open.
func OpenAudit(dir string, opts Options) (*Audit, error) {
	s, err := Open(dir, opts)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Audit{s: s, logger: logger}, nil
}

// Append spools ev at the tail.
func (a *Audit) Append(ev authz.AuditEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode audit event %s: %w", ev.ID, err)
	}
	return a.s.Append(b)
}

// Prepend spools events, older than everything spooled, at the head.
func (a *Audit) Prepend(events []authz.AuditEvent) error {
	recs := make([][]byte, len(events))
	for i := range events {
		b, err := json.Marshal(events[i])
		if err != nil {
			return fmt.Errorf("encode audit event %s: %w", events[i].ID, err)
		}
		recs[i] = b
	}
	return a.s.Prepend(recs)
}

// Peek returns up to n events from the head. A record that passed its
// checksum but does not decode is reported and skipped.
func (a *Audit) Peek(n int) ([]authz.AuditEvent, error) {
	for {
		recs, err := a.s.Peek(n)
		if err != nil {
			return nil, err
		}
		a.raw, a.index = len(recs), a.index[:0]
		events := make([]authz.AuditEvent, 0, len(recs))
		for i, rec := range recs {
			var ev authz.AuditEvent
			if err := json.Unmarshal(rec, &ev); err != nil || ev.ID == "" {
				a.s.corrupt.Add(1)
				a.logger.Warn("audit spool: a record that is not an audit event was skipped", "err", err)
				continue
			}
			events = append(events, ev)
			a.index = append(a.index, i)
		}
		if len(events) > 0 || len(recs) == 0 {
			return events, nil
		}
		if err := a.s.Advance(len(recs)); err != nil {
			return nil, err
		}
	}
}

// Advance removes the first n events the last Peek returned; all of them
// takes the skipped records along.
func (a *Audit) Advance(n int) error {
	if n <= 0 {
		return nil
	}
	if n > len(a.index) {
		return errors.New("spool: advance past what was peeked")
	}
	raw := a.index[n-1] + 1
	if n == len(a.index) {
		raw = a.raw
	}
	a.raw, a.index = 0, a.index[:0]
	return a.s.Advance(raw)
}

// Len returns how many events are spooled.
func (a *Audit) Len() int { return a.s.Len() }

// Size returns the spool's bytes on disk.
func (a *Audit) Size() int64 { return a.s.Size() }

// Corrupt counts the corrupt parts found and skipped since it was opened.
func (a *Audit) Corrupt() int64 { return a.s.Corrupt() }

// Close syncs the spool and releases its folder.
func (a *Audit) Close() error { return a.s.Close() }
