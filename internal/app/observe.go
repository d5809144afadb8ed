package app

import "go.opentelemetry.io/otel/metric"

// intStat is a number read when metrics are collected: a gauge, or a
// counter that only grows. value reports false when there is nothing to
// report (the part it reads is off).
type intStat struct {
	name, description, unit string
	counter                 bool
	value                   func() (int64, bool)
}

// intObservables makes the instruments of stats and the function that
// observes them all, for one callback to register with what else it
// observes.
func intObservables(meter metric.Meter, stats []intStat) ([]metric.Observable, func(metric.Observer), error) {
	instruments := make([]metric.Int64Observable, len(stats))
	observables := make([]metric.Observable, len(stats))
	for i, s := range stats {
		desc, unit := metric.WithDescription(s.description), metric.WithUnit(s.unit)
		var err error
		if s.counter {
			instruments[i], err = meter.Int64ObservableCounter(s.name, desc, unit)
		} else {
			instruments[i], err = meter.Int64ObservableGauge(s.name, desc, unit)
		}
		if err != nil {
			return nil, nil, err
		}
		observables[i] = instruments[i]
	}
	observe := func(o metric.Observer) {
		for i, s := range stats {
			if v, ok := s.value(); ok {
				o.ObserveInt64(instruments[i], v)
			}
		}
	}
	return observables, observe, nil
}
