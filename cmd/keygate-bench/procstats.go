package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What a keygate process did over a measurement, read from outside it: its
// allocations (the runtime's MemStats, from its profiler listener), its CPU
// time (/proc) and its garbage collections (GODEBUG=gctrace=1 on stderr).

// memStats are the cumulative MemStats counters the harness reads.
type memStats struct {
	mallocs, totalAlloc uint64
}

// readMemStats reads keygate's MemStats from /debug/pprof/allocs?debug=1,
// whose text ends with them; the heap profile before them is skipped.
func readMemStats(ctx context.Context, debugAddr string) (memStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+debugAddr+"/debug/pprof/allocs?debug=1", nil)
	if err != nil {
		return memStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return memStats{}, fmt.Errorf("read keygate's MemStats: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return memStats{}, fmt.Errorf("read keygate's MemStats: %s", resp.Status)
	}
	return parseMemStats(resp.Body)
}

// parseMemStats reads the "# Mallocs = N" and "# TotalAlloc = N" lines of
// a heap profile in its debug=1 text form.
func parseMemStats(r io.Reader) (memStats, error) {
	var m memStats
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if !ok {
			continue
		}
		var dst *uint64
		switch name {
		case "Mallocs":
			dst = &m.mallocs
		case "TotalAlloc":
			dst = &m.totalAlloc
		default:
			continue
		}
		v, err := strconv.ParseUint(value, 10, 64)
		if err != nil {
			return memStats{}, fmt.Errorf("MemStats: %s = %q", name, value)
		}
		*dst = v
		found++
	}
	if err := sc.Err(); err != nil {
		return memStats{}, err
	}
	if found != 2 {
		return memStats{}, fmt.Errorf("MemStats: Mallocs or TotalAlloc missing from the profile")
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux the harness runs on.
const clockTicks = 100

// cpuTime is the CPU time (user and system) a process has used so far.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseCPUTime(string(data))
}

// parseCPUTime reads utime and stime, fields 14 and 15 of /proc/PID/stat,
// counting after the command name (in parentheses, which may hold spaces).
func parseCPUTime(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat %.80q", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat %.80q", stat)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat %.80q", stat)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// gcEvent is one garbage collection as gctrace reports it.
type gcEvent struct {
	at    time.Time     // when the harness read its line
	pause time.Duration // the two stop-the-world phases, wall clock
	cpu   time.Duration // CPU spent on it, idle-time marking excluded
}

// gcTraceLine matches the clock and cpu figures of a gctrace line:
// "gc 7 @1.2s 3%: A+B+C ms clock, D+E/F/G+H ms cpu, …" where A and C are the
// stop-the-world phases, D and H their CPU, E assists, F background marking
// and G marking on otherwise idle processors.
var gcTraceLine = regexp.MustCompile(`^gc \d+ @[\d.]+s \d+%[^:]*: ([\d.]+)\+[\d.]+\+([\d.]+) ms clock, ([\d.]+)\+([\d.]+)/([\d.]+)/[\d.]+\+([\d.]+) ms cpu`)

// gcTrace collects the GCs a process reports on its output, as they come.
type gcTrace struct {
	mu      sync.Mutex
	now     func() time.Time
	partial []byte
	events  []gcEvent
}

func newGCTrace() *gcTrace { return &gcTrace{now: time.Now} }

func (g *gcTrace) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.partial = append(g.partial, p...)
	for {
		i := bytes.IndexByte(g.partial, '\n')
		if i < 0 {
			break
		}
		if ev, ok := parseGCLine(string(g.partial[:i])); ok {
			ev.at = g.now()
			g.events = append(g.events, ev)
		}
		g.partial = g.partial[i+1:]
	}
	if len(g.partial) > 64<<10 { // no line is this long; drop what is not one
		g.partial = g.partial[:0]
	}
	return len(p), nil
}

func parseGCLine(line string) (gcEvent, bool) {
	m := gcTraceLine.FindStringSubmatch(line)
	if m == nil {
		return gcEvent{}, false
	}
	ms := make([]time.Duration, len(m)-1)
	for i, s := range m[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return gcEvent{}, false
		}
		ms[i] = time.Duration(math.Round(v * float64(time.Millisecond)))
	}
	return gcEvent{pause: ms[0] + ms[1], cpu: ms[2] + ms[3] + ms[4] + ms[5]}, true
}

// between returns the GCs whose lines arrived in [from, to].
func (g *gcTrace) between(from, to time.Time) []gcEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []gcEvent
	for _, ev := range g.events {
		if !ev.at.Before(from) && !ev.at.After(to) {
			out = append(out, ev)
		}
	}
	return out
}

// procUsage is what a keygate process did over one measurement, warm-up
// included: every figure is divided by the requests it answered then.
type procUsage struct {
	span       time.Duration
	requests   uint64
	mallocs    uint64
	bytes      uint64
	cpu        time.Duration
	gcs        int
	gcPause    time.Duration // total
	gcMaxPause time.Duration
	gcCPU      time.Duration
}

// procSnapshot is one reading of a process's counters.
type procSnapshot struct {
	at  time.Time
	mem memStats
	cpu time.Duration
}

func takeSnapshot(ctx context.Context, pid int, debugAddr string) (procSnapshot, error) {
	mem, err := readMemStats(ctx, debugAddr)
	if err != nil {
		return procSnapshot{}, err
	}
	cpu, err := cpuTime(pid)
	if err != nil {
		return procSnapshot{}, err
	}
	return procSnapshot{at: time.Now(), mem: mem, cpu: cpu}, nil
}

// usage is what happened between two snapshots, in which requests were
// answered.
func usage(before, after procSnapshot, gcs []gcEvent, requests uint64) *procUsage {
	u := &procUsage{span: after.at.Sub(before.at), requests: requests, gcs: len(gcs),
		mallocs: after.mem.mallocs - before.mem.mallocs, bytes: after.mem.totalAlloc - before.mem.totalAlloc,
		cpu: after.cpu - before.cpu}
	for _, ev := range gcs {
		u.gcPause += ev.pause
		u.gcMaxPause = max(u.gcMaxPause, ev.pause)
		u.gcCPU += ev.cpu
	}
	return u
}

// perRequest divides v by the requests answered, 0 without any.
func (u *procUsage) perRequest(v float64) float64 {
	if u.requests == 0 {
		return 0
	}
	return v / float64(u.requests)
}
