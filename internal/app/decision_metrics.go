package app

import (
	"context"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// latencyBuckets are the bounds, in seconds, of decision latency
// histograms: a cached answer takes microseconds, a cold key a database
// round trip, a batch milliseconds.
var latencyBuckets = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// decisionObserver counts policy evaluations by query and outcome, and
// their latency; with a tracer it also gives each evaluation a span.
// Attribute sets, and the option slices that carry them, are made once:
// the hot path allocates nothing for its metrics.
type decisionObserver struct {
	tracer    trace.Tracer // nil: no spans
	decisions metric.Int64Counter
	latency   metric.Float64Histogram
	queries   map[string]*queryAttrs
}

type queryAttrs struct {
	allowed, denied, errored, cachedAllowed, cachedDenied []metric.AddOption
	latency                                               []metric.RecordOption
}

func newQueryAttrs(query string) *queryAttrs {
	q := attribute.String("query", query)
	add := func(kv ...attribute.KeyValue) []metric.AddOption {
		return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(append(kv, q)...))}
	}
	cached := attribute.Bool("cached", true)
	return &queryAttrs{
		allowed:       add(attribute.String("outcome", "allowed")),
		denied:        add(attribute.String("outcome", "denied")),
		errored:       add(attribute.String("outcome", "error")),
		cachedAllowed: add(attribute.String("outcome", "allowed"), cached),
		cachedDenied:  add(attribute.String("outcome", "denied"), cached),
		latency:       []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(q))},
	}
}

func newDecisionObserver(tracer trace.Tracer, mp metric.MeterProvider) (*decisionObserver, error) {
	meter := mp.Meter(meterName)
	decisions, err := meter.Int64Counter("keygate.decisions",
		metric.WithDescription("Policy evaluations by query and outcome; cached answers too, with cached=true"), metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	latency, err := meter.Float64Histogram("keygate.decision.duration",
		metric.WithDescription("Time to evaluate a policy query"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		return nil, err
	}
	o := &decisionObserver{tracer: tracer, decisions: decisions, latency: latency, queries: map[string]*queryAttrs{}}
	for _, q := range []string{authz.QueryDecision, authz.QueryDecisions, authz.QueryManagementDecision, authz.QueryHTTPDecision} {
		o.queries[q] = newQueryAttrs(q)
	}
	return o, nil
}

func (o *decisionObserver) attrs(query string) *queryAttrs {
	if a := o.queries[query]; a != nil {
		return a
	}
	return newQueryAttrs(query)
}

func (o *decisionObserver) CachedDecisions(ctx context.Context, query string, checks, allowed int) {
	a := o.attrs(query)
	if allowed > 0 {
		o.decisions.Add(ctx, int64(allowed), a.cachedAllowed...)
	}
	if checks > allowed {
		o.decisions.Add(ctx, int64(checks-allowed), a.cachedDenied...)
	}
}

func (o *decisionObserver) StartEvaluation(ctx context.Context, query string, checks int) (context.Context, func(int, error)) {
	start := time.Now()
	var span trace.Span
	if o.tracer != nil {
		ctx, span = o.tracer.Start(ctx, "policy.evaluate", trace.WithAttributes(
			attribute.String("keygate.policy.query", query), attribute.Int("keygate.policy.checks", checks)))
	}
	return ctx, func(allowed int, err error) {
		a := o.attrs(query)
		if err != nil {
			o.decisions.Add(ctx, int64(checks), a.errored...)
		} else {
			if allowed > 0 {
				o.decisions.Add(ctx, int64(allowed), a.allowed...)
			}
			if checks > allowed {
				o.decisions.Add(ctx, int64(checks-allowed), a.denied...)
			}
		}
		o.latency.Record(ctx, time.Since(start).Seconds(), a.latency...)
		if span != nil {
			if err != nil {
				span.RecordError(err)
			}
			span.SetAttributes(attribute.Int("keygate.policy.allowed", allowed))
			span.End()
		}
	}
}

// decisionMetrics counts the decision requests of every surface by source
// and code (authz.DecisionMetrics), and their latency from the key to the
// answer.
type decisionMetrics struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
	counted  map[[2]string][]metric.AddOption // by source and code
	timed    map[string][]metric.RecordOption // by source
}

var _ authz.DecisionMetrics = (*decisionMetrics)(nil)

// decisionSources and decisionCodes are the attribute values made ready
// at start; others are made when seen.
var (
	decisionSources = []string{authz.SourceAuthorize, authz.SourceForwardAuth, authz.SourceGRPC, authz.SourceMCP, authz.SourceMiddleware}
	decisionCodes   = []string{authz.CodeAllowed, authz.CodeDenied, authz.KeyInvalid, authz.KeyDisabled, authz.KeyExpired,
		authz.ERATELIMIT, authz.EUNAVAILABLE, authz.EINTERNAL, authz.EINVALID}
)

func newDecisionMetrics(mp metric.MeterProvider) (*decisionMetrics, error) {
	meter := mp.Meter(meterName)
	requests, err := meter.Int64Counter("keygate.decision.requests",
		metric.WithDescription("Decision requests answered, by source (the surface) and code (the answer's, or the error's)"),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	duration, err := meter.Float64Histogram("keygate.decision.request.duration",
		metric.WithDescription("Time to answer a decision request: authentication, the policy and the audit of a denial"),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		return nil, err
	}
	m := &decisionMetrics{requests: requests, duration: duration, counted: map[[2]string][]metric.AddOption{}, timed: map[string][]metric.RecordOption{}}
	for _, s := range decisionSources {
		m.timed[s] = sourceAttrs(s)
		for _, c := range decisionCodes {
			m.counted[[2]string{s, c}] = decisionAttrs(s, c)
		}
	}
	return m, nil
}

func decisionAttrs(source, code string) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("source", source), attribute.String("code", code)))}
}

func sourceAttrs(source string) []metric.RecordOption {
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("source", source)))}
}

func (m *decisionMetrics) Decided(ctx context.Context, source, code string, elapsed time.Duration) {
	add, ok := m.counted[[2]string{source, code}]
	if !ok {
		add = decisionAttrs(source, code)
	}
	m.requests.Add(ctx, 1, add...)
	rec, ok := m.timed[source]
	if !ok {
		rec = sourceAttrs(source)
	}
	m.duration.Record(ctx, elapsed.Seconds(), rec...)
}

// registerCacheMetrics reports the key cache's and the decision cache's
// hits, misses, evictions and sizes, read when metrics are collected.
func (a *App) registerCacheMetrics(mp metric.MeterProvider) error {
	meter := mp.Meter(meterName)
	var k authz.KeyCacheStats // read once per collection, below
	var d authz.DecisionCacheStats
	read := func(v *int64) func() (int64, bool) { return func() (int64, bool) { return *v, true } }
	var keyEntries, decisionEntries int64
	stats := []intStat{
		{"keygate.key_cache.hits", "Keys served from the key cache", "{lookup}", true, read(&k.Hits)},
		{"keygate.key_cache.misses", "Keys the key cache did not hold: looked up, or waiting on a lookup in flight", "{lookup}", true, read(&k.Misses)},
		{"keygate.key_cache.negative_hits", "Unknown tokens answered from the key cache's memory of unknown tokens", "{lookup}", true, read(&k.NegativeHits)},
		{"keygate.key_cache.refreshes", "Keys in use looked up again in the background in the last quarter of KEYGATE_KEY_CACHE_TTL, so that no caller waits for it", "{key}", true, read(&k.Refreshes)},
		{"keygate.key_cache.evictions", "Keys dropped from the key cache to stay within KEYGATE_KEY_CACHE_SIZE", "{key}", true, read(&k.Evictions)},
		{"keygate.key_cache.entries", "Keys in the key cache", "{key}", false, read(&keyEntries)},
		{"keygate.decision_cache.hits", "Policy answers served from the decision cache", "{decision}", true, read(&d.Hits)},
		{"keygate.decision_cache.misses", "Policy answers the decision cache did not hold", "{decision}", true, read(&d.Misses)},
		{"keygate.decision_cache.evictions", "Policy answers dropped to stay within KEYGATE_DECISION_CACHE_SIZE", "{decision}", true, read(&d.Evictions)},
		{"keygate.decision_cache.entries", "Policy answers in the decision cache", "{decision}", false, read(&decisionEntries)},
	}
	instruments, observe, err := intObservables(meter, stats)
	if err != nil {
		return err
	}
	var mu sync.Mutex // two readers (Prometheus, OTLP) may collect at once
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		mu.Lock()
		defer mu.Unlock()
		k, d = a.KeyCache.Stats(), a.Engine.DecisionCacheStats()
		keyEntries, decisionEntries = int64(k.Entries), int64(d.Entries)
		observe(o)
		return nil
	}, instruments...)
	return err
}
