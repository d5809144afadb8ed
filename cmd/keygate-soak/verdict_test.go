package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestFitLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note       string
		ts, vs     []float64
		slope      float64
		stderr     float64 // NaN: not defined
		first      float64
		last       float64
		wantErrSub string
	}{
		{note: "a straight line is found exactly, with no error", ts: []float64{0, 1, 2, 3}, vs: []float64{5, 7, 9, 11},
			slope: 2, stderr: 0, first: 5, last: 11},
		{note: "flat", ts: []float64{1, 2, 3}, vs: []float64{4, 4, 4}, slope: 0, stderr: 0, first: 4, last: 4},
		{note: "falling", ts: []float64{0, 2}, vs: []float64{10, 6}, slope: -2, stderr: math.NaN(), first: 10, last: 6},
		// Least squares through (0,0) (1,2) (2,1): slope 0.5, intercept
		// 0.5; residuals -0.5, 1, -0.5; SSE 1.5; Stt 2; stderr
		// sqrt(1.5/1/2).
		{note: "noisy points", ts: []float64{0, 1, 2}, vs: []float64{0, 2, 1}, slope: 0.5, stderr: math.Sqrt(0.75), first: 0.5, last: 1.5},
		{note: "one point has no slope", ts: []float64{1}, vs: []float64{1}, wantErrSub: "needs 2"},
		{note: "points at one time have no slope", ts: []float64{1, 1, 1}, vs: []float64{1, 2, 3}, wantErrSub: "same time"},
		{note: "lengths must agree", ts: []float64{1, 2}, vs: []float64{1}, wantErrSub: "2 times and 1 values"},
	}
	for _, tc := range tests {
		f, err := fitLine(tc.ts, tc.vs)
		if tc.wantErrSub != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
				t.Errorf("%s: err %v, want one with %q", tc.note, err, tc.wantErrSub)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.note, err)
			continue
		}
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 || math.IsNaN(a) && math.IsNaN(b) }
		if !near(f.slope, tc.slope) || !near(f.stderr, tc.stderr) || !near(f.first, tc.first) || !near(f.last, tc.last) {
			t.Errorf("%s: got %+v, want slope %g ± %g, %g → %g", tc.note, f, tc.slope, tc.stderr, tc.first, tc.last)
		}
	}
}

// samplesOf makes a sample every 5 seconds for d, with the figures set by
// fill from the time into the run in minutes.
func samplesOf(d time.Duration, fill func(min float64, s *sample)) []sample {
	var out []sample
	for at := 5 * time.Second; at <= d; at += 5 * time.Second {
		s := sample{at: at}
		fill(at.Minutes(), &s)
		out = append(out, s)
	}
	return out
}

func TestJudge(t *testing.T) {
	t.Parallel()
	lim := limits{heapMiB: 1, goroutines: 10, fds: 5}
	flat := func(_ float64, s *sample) {
		s.heapLive, s.goroutines, s.fds = 20*mib, 60, 40
	}
	tests := []struct {
		note    string
		samples []sample
		warmup  time.Duration
		out     outcome
		want    []string // substrings of the reasons, in order; none: passes
	}{
		{note: "flat figures pass", samples: samplesOf(10*time.Minute, flat), warmup: 2 * time.Minute},
		{note: "a heap rising 2.5 MiB a minute fails",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) { flat(m, s); s.heapLive = uint64((20 + 2.5*m) * mib) }),
			warmup:  2 * time.Minute, want: []string{"live heap keeps rising: +2.50 MiB a minute, over the limit of 1"}},
		{note: "a heap rising 0.5 MiB a minute passes",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) { flat(m, s); s.heapLive = uint64((20 + 0.5*m) * mib) })},
		{note: "growth during warm-up only is not judged",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) {
				flat(m, s)
				s.heapLive = uint64((5 + 10*min(m, 2)) * mib)
			}), warmup: 2 * time.Minute},
		{note: "goroutines of sessions inside their idle timeout are not a leak",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) {
				flat(m, s)
				s.sessions = int(20 * m)
				s.expected = s.sessions
				s.sessionGs = 2 * s.sessions
				s.goroutines += s.sessionGs
			})},
		{note: "goroutines of sessions past their idle timeout are",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) {
				flat(m, s)
				s.expected = 20
				s.sessions = 20 + int(10*m) // 10 a minute never close
				s.sessionGs = 2 * s.sessions
				s.goroutines += s.sessionGs
			}),
			want: []string{"goroutines, net of MCP sessions inside their idle timeout keeps rising: +20"}},
		{note: "other goroutines rising fail",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) { flat(m, s); s.goroutines += int(30 * m) }),
			want:    []string{"goroutines, net of MCP sessions inside their idle timeout keeps rising: +30"}},
		{note: "fds rising fail",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) { flat(m, s); s.fds += int(12 * m) }),
			want:    []string{"open fds keeps rising: +12"}},
		{note: "a database growing is reported, not judged",
			samples: samplesOf(10*time.Minute, func(m float64, s *sample) { flat(m, s); s.dbSize = int64(100 * m * mib) })},
		{note: "too few samples after warm-up fail", samples: samplesOf(30*time.Second, flat), warmup: 20 * time.Second,
			want: []string{"only 3 samples after the 20s warm-up"}},
		{note: "every problem of the traffic and the process fails",
			samples: samplesOf(10*time.Minute, flat),
			out: outcome{totals: counts{status5xx: 1, unexpected: 2, transport: 3}, panics: 1,
				exited: "signal: killed", stopFailure: "still running", setupErrors: []string{"set-up"}},
			want: []string{"1 answers with a 5xx status", "2 unexpected answers", "3 transport errors", "1 panics",
				"ended before it was stopped: signal: killed", "did not stop cleanly: still running", "set-up"}},
	}
	for _, tc := range tests {
		v := judge(tc.samples, tc.warmup, withLimits(lim), tc.out)
		if len(v.reasons) != len(tc.want) {
			t.Errorf("%s: reasons %q, want %d like %q", tc.note, v.reasons, len(tc.want), tc.want)
			continue
		}
		for i, want := range tc.want {
			if !strings.Contains(v.reasons[i], want) {
				t.Errorf("%s: reason %q, want one with %q", tc.note, v.reasons[i], want)
			}
		}
		if v.passed() != (len(tc.want) == 0) {
			t.Errorf("%s: passed %v with reasons %q", tc.note, v.passed(), v.reasons)
		}
	}
}

func TestJudgeFitsOnlyAfterWarmup(t *testing.T) {
	t.Parallel()
	samples := samplesOf(10*time.Minute, func(m float64, s *sample) { s.heapLive = uint64(m * 10 * mib) })
	v := judge(samples, 2*time.Minute, withLimits(limits{heapMiB: 1000, goroutines: 1, fds: 1}), outcome{})
	if v.judged != 97 { // 2:00 to 10:00 every 5s
		t.Fatalf("judged %d samples, want 97", v.judged)
	}
	heap := v.slopes[0]
	if heap.name != "live heap" || math.Abs(heap.slope-10) > 1e-6 || math.Abs(heap.first-20) > 1e-6 || heap.over {
		t.Fatalf("live heap fit %+v, want slope 10 from 20 MiB, within the limit", heap)
	}
}

func TestWarmupFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note           string
		duration, idle time.Duration
		want           time.Duration
	}{
		{"a fifth of a long run", 10 * time.Minute, 30 * time.Second, 2 * time.Minute},
		{"the idle timeout and 10s in a short run", 3 * time.Minute, 30 * time.Second, 40 * time.Second},
		{"never past the run", 20 * time.Second, time.Minute, 20 * time.Second},
	} {
		if got := warmupFor(tc.duration, tc.idle); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.note, got, tc.want)
		}
	}
}
