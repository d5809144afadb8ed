package main

import (
	"fmt"
	"math"
	"time"
)

// sample is one reading of keygate and of the traffic since the reading
// before it.
type sample struct {
	at   time.Duration // since the traffic started
	span time.Duration // since the sample before

	rss        uint64 // bytes, VmRSS
	heapLive   uint64 // bytes marked live by a forced collection (heapFigures.live)
	heapAlloc  uint64 // bytes, HeapAlloc after it and the profile written
	heapInuse  uint64 // bytes, HeapInuse at the same moment
	goroutines int    // every goroutine of the process
	sessionGs  int    // of them, those serving MCP client sessions
	sessions   int    // MCP client sessions open, as keygate counts them
	expected   int    // of them, those the harness is using or left inside their idle timeout
	fds        int    // open file descriptors
	dbSize     int64  // bytes: the SQLite files or pg_database_size
	counts            // the traffic since the previous sample
	p50, p99   time.Duration
	readTook   time.Duration // how long reading keygate took
}

// netGoroutines is the goroutines left once those of the MCP sessions
// inside their idle timeout are taken away: such a session is work in
// progress, not a leak. Sessions open past it (more open than expected)
// keep their goroutines in the count.
func (s sample) netGoroutines() int {
	if s.sessions <= s.expected {
		return s.goroutines - s.sessionGs
	}
	return s.goroutines - s.sessionGs*s.expected/s.sessions
}

// series is one figure of the samples, for the fit.
type series struct {
	name  string
	unit  string // per minute, as the table shows it
	value func(sample) float64
	limit float64 // most slope allowed, in unit a minute; 0: reported only
}

const mib = 1 << 20

// watched is every figure whose slope the report shows; those with a limit
// decide the verdict.
var watched = []series{
	{name: "live heap", unit: "MiB", value: func(s sample) float64 { return float64(s.heapLive) / mib }},
	{name: "goroutines, net of MCP sessions inside their idle timeout", unit: "goroutines", value: func(s sample) float64 { return float64(s.netGoroutines()) }},
	{name: "open fds", unit: "fds", value: func(s sample) float64 { return float64(s.fds) }},
	{name: "heap allocated after the collection", unit: "MiB", value: func(s sample) float64 { return float64(s.heapAlloc) / mib }},
	{name: "heap in use", unit: "MiB", value: func(s sample) float64 { return float64(s.heapInuse) / mib }},
	{name: "RSS", unit: "MiB", value: func(s sample) float64 { return float64(s.rss) / mib }},
	{name: "goroutines, all", unit: "goroutines", value: func(s sample) float64 { return float64(s.goroutines) }},
	{name: "MCP sessions open", unit: "sessions", value: func(s sample) float64 { return float64(s.sessions) }},
	{name: "database size", unit: "MiB", value: func(s sample) float64 { return float64(s.dbSize) / mib }},
}

// limits are the slopes past which a figure is said to keep rising.
type limits struct {
	heapMiB    float64 // live heap, MiB a minute
	goroutines float64 // net goroutines a minute
	fds        float64 // open fds a minute
}

// withLimits returns the watched series with l's limits on the three that
// decide the verdict.
func withLimits(l limits) []series {
	out := make([]series, len(watched))
	copy(out, watched)
	out[0].limit, out[1].limit, out[2].limit = l.heapMiB, l.goroutines, l.fds
	return out
}

// fit is a least-squares line through (minutes, value) points.
type fit struct {
	slope  float64 // per minute
	stderr float64 // standard error of the slope; NaN with fewer than 3 points
	first  float64 // the fitted line at the first and the last point
	last   float64
}

// fitLine fits value = a + slope·t by least squares; t in minutes.
func fitLine(ts, vs []float64) (fit, error) {
	n := len(ts)
	if n != len(vs) {
		return fit{}, fmt.Errorf("%d times and %d values", n, len(vs))
	}
	if n < 2 {
		return fit{}, fmt.Errorf("%d points; a slope needs 2", n)
	}
	var mt, mv float64
	for i := range n {
		mt += ts[i]
		mv += vs[i]
	}
	mt /= float64(n)
	mv /= float64(n)
	var stt, stv float64
	for i := range n {
		stt += (ts[i] - mt) * (ts[i] - mt)
		stv += (ts[i] - mt) * (vs[i] - mv)
	}
	if stt == 0 {
		return fit{}, fmt.Errorf("every point at the same time")
	}
	f := fit{slope: stv / stt, stderr: math.NaN()}
	a := mv - f.slope*mt
	f.first, f.last = a+f.slope*ts[0], a+f.slope*ts[n-1]
	if n > 2 {
		var sse float64
		for i := range n {
			r := vs[i] - (a + f.slope*ts[i])
			sse += r * r
		}
		f.stderr = math.Sqrt(sse / float64(n-2) / stt)
	}
	return f, nil
}

// slopeResult is one series' fit over the samples after warm-up.
type slopeResult struct {
	series
	fit
	over bool // past its limit
}

// verdict is the outcome of a run.
type verdict struct {
	judged  int // samples after warm-up
	slopes  []slopeResult
	reasons []string // why it failed; none: it passed
}

func (v *verdict) passed() bool { return len(v.reasons) == 0 }

// outcome is what the run saw besides the samples.
type outcome struct {
	totals      counts
	panics      int    // lines of keygate's output that report a panic
	exited      string // keygate ended before it was stopped: how
	stopFailure string // stopping it did not end cleanly: how
	setupErrors []string
}

// minJudged is the fewest samples after warm-up a slope is trusted on.
const minJudged = 5

// judge fits every series over the samples taken at or after warmup and
// decides the run: it fails on a slope past its limit, any 5xx, any
// unexpected answer or transport error, a panic, or a keygate that ended
// on its own or did not stop cleanly.
func judge(samples []sample, warmup time.Duration, ss []series, o outcome) *verdict {
	v := &verdict{}
	var ts []float64
	var after []sample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
			ts = append(ts, s.at.Minutes())
		}
	}
	v.judged = len(after)
	if len(after) < minJudged {
		v.reasons = append(v.reasons, fmt.Sprintf("only %d samples after the %s warm-up; a slope needs at least %d: run longer", len(after), warmup, minJudged))
	} else {
		for _, s := range ss {
			vs := make([]float64, len(after))
			for i, smp := range after {
				vs[i] = s.value(smp)
			}
			f, err := fitLine(ts, vs)
			if err != nil {
				v.reasons = append(v.reasons, fmt.Sprintf("%s: %v", s.name, err))
				continue
			}
			r := slopeResult{series: s, fit: f, over: s.limit > 0 && f.slope > s.limit}
			if r.over {
				v.reasons = append(v.reasons, fmt.Sprintf("%s keeps rising: %+.2f %s a minute, over the limit of %g", s.name, f.slope, s.unit, s.limit))
			}
			v.slopes = append(v.slopes, r)
		}
	}
	t := o.totals
	for _, c := range []struct {
		n    int64
		what string
	}{
		{t.status5xx, "answers with a 5xx status"},
		{t.unexpected, "unexpected answers"},
		{t.transport, "transport errors"},
		{int64(o.panics), "panics in keygate's output"},
	} {
		if c.n > 0 {
			v.reasons = append(v.reasons, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if o.exited != "" {
		v.reasons = append(v.reasons, "keygate ended before it was stopped: "+o.exited)
	}
	if o.stopFailure != "" {
		v.reasons = append(v.reasons, "keygate did not stop cleanly: "+o.stopFailure)
	}
	v.reasons = append(v.reasons, o.setupErrors...)
	return v
}

// warmupFor is the part of a run left out of the fit: the first fifth,
// and at least the MCP session idle timeout and 10 seconds more, so that
// caches have filled and abandoned sessions have begun to expire as fast
// as they are abandoned.
func warmupFor(duration, idle time.Duration) time.Duration {
	return min(duration, max(duration/5, idle+10*time.Second))
}
