package authz

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// DecisionLogSink takes batches of encoded decision-log events (one JSON
// object each), in order: a console, a file, an HTTP collector.
type DecisionLogSink interface {
	// WriteDecisions writes one batch; an error means the batch is lost
	// (the sink has retried what it could).
	WriteDecisions(ctx context.Context, events []json.RawMessage) error
	Close() error
}

// DecisionEventBuilder turns entries into events (the Engine does).
type DecisionEventBuilder interface {
	DecisionLogEvent(ctx context.Context, en DecisionLogEntry) (*DecisionLogEvent, error)
}

// DecisionLogWriterOptions tune a DecisionLogWriter; zero values take the
// defaults.
type DecisionLogWriterOptions struct {
	Buffer   int               // decisions queued; 10000
	Batch    int               // events per write; 500
	Interval time.Duration     // longest an event waits; 1s
	Sample   float64           // share of decisions logged, (0, 1]; 0 is 1
	Labels   map[string]string // in every event (OPA's: id, version)
	Logger   *slog.Logger
}

// MaxDecisionLogEventBytes bounds one event: a larger one (a key with a
// scope of thousands of entries, say) is written without its input,
// "/input" then listed in erased.
const MaxDecisionLogEventBytes = 1 << 20

// DecisionLogWriter logs decisions off the request path: LogDecision puts
// the entry on a bounded queue and returns; one goroutine turns entries
// into events (building the input and masking it), encodes them and
// writes them in batches. A full queue drops the decision and counts it,
// so logging never slows or blocks a decision.
type DecisionLogWriter struct {
	build    DecisionEventBuilder
	sink     DecisionLogSink
	opts     DecisionLogWriterOptions
	queue    chan DecisionLogEntry
	stop     chan struct{}
	done     chan struct{}
	closed   sync.Once
	sinkOnce sync.Once
	sinkErr  error

	written, dropped, failed atomic.Int64
	lastLog                  atomic.Int64 // when a loss was last logged, Unix nanoseconds
}

var _ DecisionLogger = (*DecisionLogWriter)(nil)

// NewDecisionLogWriter starts a writer; Close flushes it.
func NewDecisionLogWriter(build DecisionEventBuilder, sink DecisionLogSink, opts DecisionLogWriterOptions) *DecisionLogWriter {
	if opts.Buffer <= 0 {
		opts.Buffer = 10000
	}
	if opts.Batch <= 0 {
		opts.Batch = 500
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Sample <= 0 || opts.Sample > 1 {
		opts.Sample = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &DecisionLogWriter{build: build, sink: sink, opts: opts, queue: make(chan DecisionLogEntry, opts.Buffer),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Sampled implements DecisionLogger: whether this decision is logged.
func (w *DecisionLogWriter) Sampled() bool {
	return w.opts.Sample >= 1 || rand.Float64() < w.opts.Sample
}

// LogDecision implements DecisionLogger; it never blocks.
func (w *DecisionLogWriter) LogDecision(en DecisionLogEntry) {
	select {
	case w.queue <- en:
	default:
		w.dropped.Add(1)
		w.logLoss("decision log queue full; decisions dropped (KEYGATE_DECISION_LOG_BUFFER)")
	}
}

// DecisionLogStats counts what a writer did.
type DecisionLogStats struct {
	Queued  int   // waiting now
	Written int64 // handed to the sink
	Dropped int64 // not logged: the queue was full
	Failed  int64 // not logged: the sink failed, or the event could not be built
}

// Stats returns the writer's counts.
func (w *DecisionLogWriter) Stats() DecisionLogStats {
	return DecisionLogStats{Queued: len(w.queue), Written: w.written.Load(), Dropped: w.dropped.Load(), Failed: w.failed.Load()}
}

// Close writes what is queued, waiting at most until ctx ends, and closes
// the sink. Closing again changes nothing; decisions logged after Close
// are dropped.
func (w *DecisionLogWriter) Close(ctx context.Context) error {
	w.closed.Do(func() { close(w.stop) })
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.sinkOnce.Do(func() { w.sinkErr = w.sink.Close() })
	return w.sinkErr
}

func (w *DecisionLogWriter) run() {
	defer close(w.done)
	ctx := context.Background()
	tick := time.NewTicker(w.opts.Interval)
	defer tick.Stop()
	batch := make([]json.RawMessage, 0, w.opts.Batch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := w.sink.WriteDecisions(ctx, batch); err != nil {
			w.failed.Add(int64(len(batch)))
			w.logLoss("decision log events lost: the sink failed", "err", err)
		} else {
			w.written.Add(int64(len(batch)))
		}
		batch = batch[:0]
	}
	add := func(en DecisionLogEntry) {
		if data := w.encode(ctx, en); data != nil {
			batch = append(batch, data)
		}
		if len(batch) >= w.opts.Batch {
			flush()
		}
	}
	for {
		select {
		case en := <-w.queue:
			add(en)
		case <-tick.C:
			flush()
		case <-w.stop:
			for {
				select {
				case en := <-w.queue:
					add(en)
				default:
					flush()
					return
				}
			}
		}
	}
}

// encode builds and encodes one event; nil when it cannot be, counted.
func (w *DecisionLogWriter) encode(ctx context.Context, en DecisionLogEntry) json.RawMessage {
	en.Labels = w.opts.Labels
	ev, err := w.build.DecisionLogEvent(ctx, en)
	if err != nil {
		w.failed.Add(1)
		w.logLoss("decision log event not written: it could not be built or masked", "err", err)
		return nil
	}
	data, err := ev.MarshalJSON()
	if err == nil && len(data) > MaxDecisionLogEventBytes {
		ev.Input = nil
		ev.Erased = append(ev.Erased, "/input")
		data, err = ev.MarshalJSON()
	}
	if err != nil || len(data) > MaxDecisionLogEventBytes {
		w.failed.Add(1)
		w.logLoss("decision log event not written: too large", "decision_id", en.DecisionID)
		return nil
	}
	return data
}

// logLoss logs a loss at most once a minute.
func (w *DecisionLogWriter) logLoss(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := w.lastLog.Load()
	if now-last < int64(time.Minute) || !w.lastLog.CompareAndSwap(last, now) {
		return
	}
	s := w.Stats()
	w.opts.Logger.Warn(msg, append(args, "dropped", s.Dropped, "failed", s.Failed)...)
}
