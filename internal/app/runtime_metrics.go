package app

import (
	"context"
	"math"
	"os"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// startRuntimeMetrics exports the health of the Go runtime and the process
// with keygate's own metrics, so a leak shows on a dashboard before it pages
// anyone: goroutines and memory (OpenTelemetry's runtime instrumentation),
// the live heap, open file descriptors and their limit, and resident
// memory. GC pauses come from newGCPauseProducer.
func startRuntimeMetrics(mp metric.MeterProvider) error {
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return err
	}
	meter := mp.Meter(meterName)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var mu sync.Mutex // guards sample: two readers may collect at once
	stats := []intStat{
		{"keygate.runtime.heap.live", "Heap memory marked live by the last garbage collection", "By", false, func() (int64, bool) {
			mu.Lock()
			defer mu.Unlock()
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 {
				return 0, false
			}
			return int64(min(sample[0].Value.Uint64(), math.MaxInt64)), true
		}},
		{"process.unix.file_descriptor.count", "File descriptors the process has open", "{file_descriptor}", false, openFDs},
		{"keygate.process.file_descriptor.limit", "The most file descriptors the process may open (RLIMIT_NOFILE)", "{file_descriptor}", false, fdLimit},
		{"process.memory.usage", "Resident memory of the process", "By", false, residentBytes},
	}
	instruments, observe, err := intObservables(meter, stats)
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		observe(o)
		return nil
	}, instruments...)
	return err
}

// openFDs counts /proc/self/fd (Linux), less the descriptor reading it.
func openFDs() (int64, bool) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return 0, false
	}
	return int64(len(names) - 1), true
}

func fdLimit() (int64, bool) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > math.MaxInt64 {
		return 0, false
	}
	return int64(lim.Cur), true
}

// residentBytes reads the resident set from /proc/self/statm (Linux).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// gcPauseBounds are the buckets, in seconds, of GC stop-the-world pauses:
// the runtime's own histogram has over a hundred.
var gcPauseBounds = []float64{0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1}

// gcPauseProducer reports the runtime's histogram of GC stop-the-world
// pauses (/sched/pauses/total/gc:seconds) as keygate.runtime.gc.pause.duration,
// in gcPauseBounds: a metric.Producer, since OpenTelemetry has no
// asynchronous histogram.
type gcPauseProducer struct {
	mu     sync.Mutex
	sample []metrics.Sample
	start  time.Time
	attrs  attribute.Set
}

func newGCPauseProducer() *gcPauseProducer {
	return &gcPauseProducer{sample: []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}, start: time.Now()}
}

var _ sdkmetric.Producer = (*gcPauseProducer)(nil)

func (p *gcPauseProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	p.mu.Lock()
	metrics.Read(p.sample)
	v := p.sample[0].Value
	p.mu.Unlock()
	if v.Kind() != metrics.KindFloat64Histogram {
		return nil, nil
	}
	dp := rebucket(v.Float64Histogram(), gcPauseBounds)
	dp.StartTime, dp.Time, dp.Attributes = p.start, time.Now(), p.attrs
	return []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: meterName},
		Metrics: []metricdata.Metrics{{
			Name:        "keygate.runtime.gc.pause.duration",
			Description: "Stop-the-world pauses of the garbage collector",
			Unit:        "s",
			Data: metricdata.Histogram[float64]{
				Temporality: metricdata.CumulativeTemporality,
				DataPoints:  []metricdata.HistogramDataPoint[float64]{dp},
			},
		}},
	}}, nil
}

// rebucket folds a runtime histogram into bounds: each runtime bucket
// [lo, hi) is counted in the bucket holding hi (an overestimate by at most
// one runtime bucket), and the sum takes each at its lower bound.
func rebucket(h *metrics.Float64Histogram, bounds []float64) metricdata.HistogramDataPoint[float64] {
	dp := metricdata.HistogramDataPoint[float64]{Bounds: bounds, BucketCounts: make([]uint64, len(bounds)+1)}
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		if math.IsInf(hi, 1) {
			hi = lo
		}
		dp.BucketCounts[sort.SearchFloat64s(bounds, hi)] += n
		dp.Count += n
		if !math.IsInf(lo, -1) {
			dp.Sum += lo * float64(n)
		}
	}
	return dp
}
