package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// metricsCardinalityLimit bounds the series of one instrument: past it,
// new attribute sets are folded into one series marked
// otel_metric_overflow="true", so a flood of upstream names cannot grow
// memory without bound.
const metricsCardinalityLimit = 2000

// telemetry holds the OpenTelemetry providers. Metrics are always kept:
// every instrument made from meterProvider is served in Prometheus form by
// metrics (GET /metrics) and, with OTEL_EXPORTER_OTLP_ENDPOINT set, pushed
// over OTLP/HTTP with the spans. Without an endpoint no span is made.
type telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	metrics        http.Handler
	observer       authz.Observer
	shutdown       func(context.Context) error
	exporting      bool // spans are exported
}

// httpTracerProvider is the provider for HTTP spans, nil when nothing is
// exported, so requests skip the tracing middleware altogether.
func (t *telemetry) httpTracerProvider() trace.TracerProvider {
	if !t.exporting {
		return nil
	}
	return t.tracerProvider
}

func setupTelemetry(ctx context.Context, logger *slog.Logger, version string) (_ *telemetry, err error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "keygate"), attribute.String("service.version", version)))
	if err != nil {
		return nil, err
	}
	// A registry of keygate's own, not the process-wide default: two
	// instances in one process (tests) each serve their own metrics.
	reg := prometheus.NewRegistry()
	gc := newGCPauseProducer()
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithProducer(gc))
	if err != nil {
		return nil, err
	}
	opts := []sdkmetric.Option{sdkmetric.WithReader(promExp), sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(metricsCardinalityLimit)}
	t := &telemetry{tracerProvider: tracenoop.NewTracerProvider()}
	var tp *sdktrace.TracerProvider
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		traceExp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, err
		}
		metricExp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(metricExp, sdkmetric.WithProducer(gc))))
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(traceExp), sdktrace.WithResource(res))
		t.tracerProvider, t.exporting = tp, true
	}
	mp := sdkmetric.NewMeterProvider(opts...)
	t.meterProvider = mp
	t.shutdown = func(ctx context.Context) error {
		err := mp.Shutdown(ctx)
		if tp != nil {
			err = errors.Join(err, tp.Shutdown(ctx))
		}
		return err
	}
	defer func() {
		if err != nil {
			_ = t.shutdown(context.Background())
		}
	}()
	if t.exporting {
		// The database hooks and the HTTP middleware read the global
		// providers.
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
		logger.Info("exporting traces and metrics over OTLP/HTTP")
	}
	var tracer trace.Tracer
	if t.exporting {
		tracer = tp.Tracer("github.com/keygate/keygate/authz")
	}
	if t.observer, err = newDecisionObserver(tracer, mp); err != nil {
		return nil, err
	}
	if err := startRuntimeMetrics(mp); err != nil {
		return nil, err
	}
	// At most a few scrapes at once, each within 10s: /metrics may be on
	// the main listener.
	t.metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return t, nil
}
