package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What the harness reads of keygate, from outside it: /proc for the
// resident size and the open files, and the profiler listener
// (KEYGATE_DEBUG_ADDR) for the goroutines and the heap.

// prober reads one keygate process.
type prober struct {
	pid       int
	debugBase string // http://ADDR of the profiler listener
	client    *http.Client
	dbSize    func(context.Context) (int64, error)
}

// read takes one sample of keygate itself; the caller adds the traffic.
func (p *prober) read(ctx context.Context) (sample, error) {
	began := time.Now()
	var s sample
	var err error
	if s.rss, err = readRSS(p.pid); err != nil {
		return s, err
	}
	if s.fds, err = countFDs(p.pid); err != nil {
		return s, err
	}
	var g goroutineCount
	if err := p.get(ctx, "/debug/pprof/goroutine?debug=1", func(r io.Reader) error {
		g, err = parseGoroutines(r)
		return err
	}); err != nil {
		return s, err
	}
	s.goroutines, s.sessionGs, s.sessions = g.total, g.ofSessions, g.sessions
	// gc=1 collects before the profile is written; see heapFigures.live.
	var h heapFigures
	if err := p.get(ctx, "/debug/pprof/heap?debug=1&gc=1", func(r io.Reader) error {
		h, err = parseHeapStats(r)
		return err
	}); err != nil {
		return s, err
	}
	s.heapLive, s.heapAlloc, s.heapInuse = h.live(), h.heapAlloc, h.heapInuse
	if s.dbSize, err = p.dbSize(ctx); err != nil {
		return s, fmt.Errorf("database size: %w", err)
	}
	s.readTook = time.Since(began)
	return s, nil
}

func (p *prober) get(ctx context.Context, path string, parse func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.debugBase+path, nil)
	if err != nil {
		return err
	}
	res, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("profiler: %w", err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("profiler: GET %s: %s", path, res.Status)
	}
	if err := parse(res.Body); err != nil {
		return fmt.Errorf("profiler: GET %s: %w", path, err)
	}
	return nil
}

// readRSS returns VmRSS of /proc/PID/status, in bytes.
func readRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	return parseRSS(f)
}

// parseRSS reads the "VmRSS:   1234 kB" line of a /proc status file.
func parseRSS(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, ok := strings.CutSuffix(strings.TrimSpace(rest), " kB")
		if !ok {
			return 0, fmt.Errorf("VmRSS %q is not in kB", rest)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(kb), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
		}
		return n << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}

// countFDs counts the entries of /proc/PID/fd.
func countFDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(entries), nil
}

// goroutineCount is what a goroutine profile says of the goroutines.
type goroutineCount struct {
	total      int
	ofSessions int // serving an MCP client session (see sessionFrames)
	sessions   int // MCP client sessions open: the limiter's wait on each
}

// sessionWaitFrame is where keygate's session limiter waits for the end
// of every session it counts (its own goroutine, one per open session):
// the same count as the keygate.mcp.sessions gauge.
const sessionWaitFrame = "github.com/modelcontextprotocol/go-sdk/mcp.(*ServerSession).Wait"

// sessionFrames mark a goroutine that lives as long as an MCP client
// session: the limiter's wait and the SDK's reader of the session's
// incoming messages. The SDK's client side (keygate's pooled sessions to
// upstreams) reads through streamableClientConn and is not counted.
var sessionFrames = []string{
	sessionWaitFrame,
	"github.com/modelcontextprotocol/go-sdk/mcp.(*streamableServerConn).Read",
}

// parseGoroutines reads a goroutine profile in its debug=1 text form:
//
//	goroutine profile: total 42
//	3 @ 0x43e 0x44f …
//	#	0x43e	runtime.gopark+0x6e	/usr/local/go/src/runtime/proc.go:402
//	…
//
// Each record is a count and the stack those goroutines share.
func parseGoroutines(r io.Reader) (goroutineCount, error) {
	var g goroutineCount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return g, errors.New("empty goroutine profile")
	}
	total, ok := strings.CutPrefix(sc.Text(), "goroutine profile: total ")
	if !ok {
		return g, fmt.Errorf("goroutine profile starts %.60q", sc.Text())
	}
	var err error
	if g.total, err = strconv.Atoi(total); err != nil {
		return g, fmt.Errorf("goroutine profile total %q", total)
	}
	n, inSession, waiting, sum := 0, false, false, 0
	flush := func() {
		sum += n
		if inSession {
			g.ofSessions += n
		}
		if waiting {
			g.sessions += n
		}
		n, inSession, waiting = 0, false, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "#"):
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			fn := f[2]
			if i := strings.LastIndex(fn, "+0x"); i > 0 {
				fn = fn[:i]
			}
			inSession = inSession || slices.Contains(sessionFrames, fn)
			waiting = waiting || fn == sessionWaitFrame
		default:
			count, _, ok := strings.Cut(line, " @ ")
			if !ok {
				return g, fmt.Errorf("goroutine profile line %.60q", line)
			}
			flush()
			if n, err = strconv.Atoi(count); err != nil {
				return g, fmt.Errorf("goroutine profile line %.60q", line)
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return g, err
	}
	if sum != g.total {
		return g, fmt.Errorf("goroutine profile records add up to %d, its total is %d", sum, g.total)
	}
	return g, nil
}

// heapFigures are the MemStats the harness reads from a heap profile taken
// right after a forced collection. The profile is written between the
// collection and the reading of MemStats, so HeapAlloc and HeapInuse also
// hold what writing it allocated (its records and text: more as the
// profile grows over a run) and what the traffic allocated meanwhile.
type heapFigures struct {
	heapAlloc, heapInuse, nextGC, stackInuse uint64
}

// live is the heap the forced collection marked live, read from the goal
// it set before anything else was allocated: with GOGC=100 (the soak's
// keygate runs with Go's defaults) and no memory limit, NextGC is twice
// the marked heap plus the scanned stacks and globals. StackInuse stands
// for the stacks; the globals, a constant, are left in (half of them).
func (h heapFigures) live() uint64 {
	if h.nextGC < h.stackInuse {
		return 0
	}
	return (h.nextGC - h.stackInuse) / 2
}

// parseHeapStats reads the figures of heapFigures from the runtime.MemStats
// section that ends a heap profile in its debug=1 text form, one
// "# Name = value" line per figure ("# Stack = inuse / sys" for the
// stacks).
func parseHeapStats(r io.Reader) (heapFigures, error) {
	stats := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "# "); ok {
			if name, value, ok := strings.Cut(line, " = "); ok {
				stats[name] = value
			}
		}
	}
	if err := sc.Err(); err != nil {
		return heapFigures{}, err
	}
	var h heapFigures
	stats["Stack"], _, _ = strings.Cut(stats["Stack"], " / ")
	for name, dst := range map[string]*uint64{"HeapAlloc": &h.heapAlloc, "HeapInuse": &h.heapInuse, "NextGC": &h.nextGC, "Stack": &h.stackInuse} {
		v, err := strconv.ParseUint(stats[name], 10, 64)
		if err != nil {
			return heapFigures{}, fmt.Errorf("MemStats %s = %q in the heap profile", name, stats[name])
		}
		*dst = v
	}
	return h, nil
}

// sqliteSize is the size of a SQLite database's files: the database, its
// write-ahead log and the log's index.
func sqliteSize(path string) (int64, error) {
	var total int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		st, err := os.Stat(path + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return 0, err
		}
		total += st.Size()
	}
	return total, nil
}
