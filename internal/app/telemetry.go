package app

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// telemetry holds the OpenTelemetry providers. Without
// OTEL_EXPORTER_OTLP_ENDPOINT they are no-ops and no exporter runs.
type telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	observer       authz.Observer
	shutdown       func(context.Context) error
	exporting      bool
}

// httpTracerProvider is the provider for HTTP spans, nil when nothing is
// exported, so requests skip the tracing middleware altogether.
func (t *telemetry) httpTracerProvider() trace.TracerProvider {
	if !t.exporting {
		return nil
	}
	return t.tracerProvider
}

func setupTelemetry(ctx context.Context, logger *slog.Logger, version string) (*telemetry, error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		t := &telemetry{
			tracerProvider: tracenoop.NewTracerProvider(),
			meterProvider:  metricnoop.NewMeterProvider(),
			observer:       authz.NopObserver{},
			shutdown:       func(context.Context) error { return nil },
		}
		return t, nil
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "keygate"), attribute.String("service.version", version)))
	if err != nil {
		return nil, err
	}
	traceExp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	metricExp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(traceExp), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp)), sdkmetric.WithResource(res))
	// The database hooks and the HTTP middleware read the global providers.
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	obs, err := newDecisionObserver(tp, mp)
	if err != nil {
		return nil, err
	}
	logger.Info("exporting traces and metrics over OTLP/HTTP")
	return &telemetry{
		exporting:      true,
		tracerProvider: tp,
		meterProvider:  mp,
		observer:       obs,
		shutdown: func(ctx context.Context) error {
			return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
		},
	}, nil
}

// decisionObserver gives every policy evaluation a span, and counts
// decisions and their latency.
type decisionObserver struct {
	tracer    trace.Tracer
	decisions metric.Int64Counter
	latency   metric.Float64Histogram
}

func newDecisionObserver(tp trace.TracerProvider, mp metric.MeterProvider) (*decisionObserver, error) {
	meter := mp.Meter("github.com/keygate/keygate")
	decisions, err := meter.Int64Counter("keygate.decisions",
		metric.WithDescription("Policy decisions by query and outcome"), metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	latency, err := meter.Float64Histogram("keygate.decision.duration",
		metric.WithDescription("Time to evaluate a policy query"), metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	return &decisionObserver{tracer: tp.Tracer("github.com/keygate/keygate/authz"), decisions: decisions, latency: latency}, nil
}

func (o *decisionObserver) CachedDecisions(ctx context.Context, query string, checks, allowed int) {
	q, cached := attribute.String("query", query), attribute.Bool("cached", true)
	o.decisions.Add(ctx, int64(allowed), metric.WithAttributes(q, cached, attribute.String("outcome", "allowed")))
	o.decisions.Add(ctx, int64(checks-allowed), metric.WithAttributes(q, cached, attribute.String("outcome", "denied")))
}

func (o *decisionObserver) StartEvaluation(ctx context.Context, query string, checks int) (context.Context, func(int, error)) {
	start := time.Now()
	ctx, span := o.tracer.Start(ctx, "policy.evaluate", trace.WithAttributes(
		attribute.String("keygate.policy.query", query), attribute.Int("keygate.policy.checks", checks)))
	return ctx, func(allowed int, err error) {
		q := attribute.String("query", query)
		if err != nil {
			span.RecordError(err)
			o.decisions.Add(ctx, int64(checks), metric.WithAttributes(q, attribute.String("outcome", "error")))
		} else {
			o.decisions.Add(ctx, int64(allowed), metric.WithAttributes(q, attribute.String("outcome", "allowed")))
			o.decisions.Add(ctx, int64(checks-allowed), metric.WithAttributes(q, attribute.String("outcome", "denied")))
		}
		span.SetAttributes(attribute.Int("keygate.policy.allowed", allowed))
		o.latency.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(q))
		span.End()
	}
}
