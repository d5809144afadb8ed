package authz

import (
	"context"
	"maps"
	"sync"
	"time"
)

// RefusalAggregatorOptions tunes a RefusalAggregator; zero values take the
// defaults.
type RefusalAggregatorOptions struct {
	// Interval is how long refusals of one kind from one address are
	// counted into one event; 1 minute.
	Interval time.Duration
	// MaxEntries bounds the kinds counted at once; refusals beyond it are
	// counted per tenant and reason alone, without their address. 1000.
	MaxEntries int
	Now        func() time.Time
}

// RefusalAggregator stands in front of an AuditRecorder and folds refused
// credentials (authentication.failed) into one event per address, reason
// and key (none for an unknown or malformed token) per Interval: the first
// refusal opens the interval, the event is recorded when it ends, carrying
// the first refusal's request facts and in details how many there were
// (count) and when (first_at, last_at). A flood of bad credentials thus
// writes a few rows a minute, not one a request. Every other event passes
// straight through. Memory is bounded by MaxEntries (about 1 KB each), and
// so are the events a minute: a flood from more addresses than that is
// counted in one more event per reason. Close records what is pending.
type RefusalAggregator struct {
	next AuditRecorder
	opts RefusalAggregatorOptions

	mu       sync.Mutex
	entries  churnMap[refusalKey, *refusalEntry]
	overflow churnMap[refusalKey, *refusalEntry] // address left out, when entries is full
	closed   bool
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
}

type refusalKey struct{ tenant, key, ip, reason string }

type refusalEntry struct {
	ev          AuditEvent // the first refusal
	count       int
	first, last time.Time
}

// NewRefusalAggregator starts an aggregator recording into next; Close must
// be called to record what is pending.
func NewRefusalAggregator(next AuditRecorder, opts RefusalAggregatorOptions) *RefusalAggregator {
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &RefusalAggregator{next: next, opts: opts,
		entries:  newChurnMap[refusalKey, *refusalEntry](opts.MaxEntries),
		overflow: newChurnMap[refusalKey, *refusalEntry](opts.MaxEntries),
		stop:     make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

var _ AuditRecorder = (*RefusalAggregator)(nil)

// Record counts a refused credential, or passes any other event on.
func (a *RefusalAggregator) Record(ev AuditEvent) {
	if ev.Action != AuditAuthFailed {
		a.next.Record(ev)
		return
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.next.Record(ev)
		return
	}
	k := refusalKey{tenant: ev.TenantID, key: ev.ActorID, ip: ev.IP, reason: ev.Reason}
	e, _ := a.entries.get(k)
	if e == nil && a.entries.len() >= a.opts.MaxEntries {
		k = refusalKey{tenant: ev.TenantID, reason: ev.Reason}
		if e, _ = a.overflow.get(k); e == nil {
			ev.ActorID, ev.TargetID, ev.IP, ev.UserAgent, ev.RequestID, ev.TraceID = "", "", "", "", "", ""
			if ev.TenantID == "" {
				ev.ActorType = ActorTypeAnonymous
			}
			ev.Details = maps.Clone(ev.Details)
			if ev.Details == nil {
				ev.Details = map[string]any{}
			}
			ev.Details["addresses"] = "many: more than the aggregator tracks at once"
			e = &refusalEntry{ev: ev, first: ev.OccurredAt}
			a.overflow.put(k, e)
		}
	}
	if e == nil {
		e = &refusalEntry{ev: ev, first: ev.OccurredAt}
		a.entries.put(k, e)
	}
	e.count++
	e.last = ev.OccurredAt
	a.mu.Unlock()
}

// Flush records every event whose interval has ended by now.
func (a *RefusalAggregator) Flush() { a.flush(false) }

// Close stops the timer and records every pending event, ended or not;
// later refusals pass straight through. It waits at most until ctx ends.
func (a *RefusalAggregator) Close(ctx context.Context) error {
	a.once.Do(func() { close(a.stop) })
	select {
	case <-a.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	a.flush(true)
	return nil
}

// Pending returns how many events are being counted.
func (a *RefusalAggregator) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.entries.len() + a.overflow.len()
}

func (a *RefusalAggregator) run() {
	defer close(a.done)
	tick := min(max(a.opts.Interval/10, 100*time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-ticker.C:
			a.Flush()
		}
	}
}

func (a *RefusalAggregator) flush(all bool) {
	now := a.opts.Now()
	var due []*refusalEntry
	a.mu.Lock()
	if all {
		a.closed = true
	}
	for _, m := range []*churnMap[refusalKey, *refusalEntry]{&a.entries, &a.overflow} {
		var done []refusalKey
		for k, e := range m.m {
			if all || !now.Before(e.first.Add(a.opts.Interval)) {
				due = append(due, e)
				done = append(done, k)
			}
		}
		for _, k := range done {
			m.delete(k)
		}
	}
	a.mu.Unlock()
	for _, e := range due {
		a.next.Record(e.event())
	}
}

// event is the one event recording the entry's refusals.
func (e *refusalEntry) event() AuditEvent {
	ev := e.ev
	ev.Details = maps.Clone(ev.Details)
	if ev.Details == nil {
		ev.Details = map[string]any{}
	}
	ev.Details["count"] = e.count
	ev.Details["first_at"] = e.first.UTC().Format(time.RFC3339Nano)
	ev.Details["last_at"] = e.last.UTC().Format(time.RFC3339Nano)
	return ev
}
