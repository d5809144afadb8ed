package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// report is one run, rendered as its database's section of docs/soak.md.
type report struct {
	db       string // "SQLite" or "Postgres": the section's heading
	dbInfo   string
	date     time.Time
	command  string
	machine  machine
	opts     *options
	warmup   time.Duration
	ran      time.Duration // traffic time
	forward  string        // forward auth: in the mix, or why not
	rotation string        // key rotation: in the churn, or why not
	samples  []sample
	verdict  *verdict
	outcome  outcome
	problems []string // examples of unexpected answers, 5xx, transport errors
	messages []string // keygate's warnings and errors, by message
	panics   []string
	stopTook time.Duration
}

// machine describes where the figures come from.
type machine struct {
	cpu, memory, kernel, goVersion, commit string
	cores                                  int
	loadStart, loadEnd                     string
}

func readMachine(ctx context.Context, repo string) machine {
	m := machine{cpu: "unknown", memory: "unknown", kernel: "unknown", goVersion: runtime.Version(), commit: "unknown",
		cores: runtime.NumCPU(), loadStart: loadAverage()}
	if v := procValue("/proc/cpuinfo", "model name"); v != "" {
		m.cpu = v
	}
	if v := procValue("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(data))
	}
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = repo
	if out, err := cmd.Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
	}
	return m
}

// procValue is the value of the first "name: value" line of a /proc file.
func procValue(path, name string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// maxRows bounds the sample table; longer runs show every k-th sample.
const maxRows = 80

// markdown renders the run's section.
func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	o := r.opts
	verdict := "**PASS**"
	if !r.verdict.passed() {
		verdict = "**FAIL**: " + strings.Join(r.verdict.reasons, "; ")
	}
	w("## %s\n\n", r.db)
	w("%s. Run %s for %s (warm-up %s, a sample every %s) with `%s`.\n\n", verdict, r.date.Format("2006-01-02 15:04 MST"),
		round(r.ran), r.warmup, o.sample, r.command)
	m := r.machine
	w("- Machine: %s, %d cores, %s, %s; %s; commit %s; load average %s at the start, %s at the end.\n",
		m.cpu, m.cores, m.memory, m.kernel, m.goVersion, m.commit, m.loadStart, m.loadEnd)
	w("- Database: %s.\n", r.dbInfo)
	w("- Traffic: decisions at up to %d requests a second from %d workers over %d keys (%.0f%% bad keys, %.0f%% batches of %d checks, ids drawn from %s per key and type, a fifth of them denied); management churn every %s; an MCP session every %s, one in %d abandoned, with KEYGATE_MCP_SESSION_IDLE_TIMEOUT=%s.\n",
		o.rate, o.workers, o.keys, o.badShare*100, o.batchShare*100, batchChecks, thousands(float64(o.idSpace)), o.churnInterval, o.mcpInterval, o.abandonEvery, o.idle)
	w("- Forward auth: %s. Key rotation: %s.\n", r.forward, r.rotation)
	w("- keygate stopped in %s after SIGTERM.\n\n", round(r.stopTook))

	w("### Slopes after warm-up\n\n")
	w("Least-squares fit over the %d samples from %s on; the first three decide the verdict.\n\n", r.verdict.judged, r.warmup)
	w("| figure | slope a minute | ± standard error | fitted at warm-up → end | limit |\n|---|---:|---:|---:|---:|\n")
	for _, s := range r.verdict.slopes {
		limit := "reported only"
		if s.limit > 0 {
			limit = fmt.Sprintf("%g %s a minute", s.limit, s.unit)
			if s.over {
				limit += " **exceeded**"
			}
		}
		w("| %s | %+.2f %s | %s | %.1f → %.1f | %s |\n", s.name, s.slope, s.unit, fmtStderr(s.stderr), s.first, s.last, limit)
	}

	t := r.outcome.totals
	secs := r.ran.Seconds()
	rate := func(n int64) string { return thousands(float64(n) / max(secs, 1)) }
	w("\n### Traffic\n\n| | count | a second |\n|---|---:|---:|\n")
	for _, row := range []struct {
		name string
		n    int64
	}{
		{"HTTP requests, every kind", t.requests},
		{"decisions with a good key", t.decisions},
		{"of them batches", t.batches},
		{"decisions with a bad key", t.badKeys},
		{"of them refused with 429 (expected: past the address's budget)", t.limited},
		{"forward-auth requests", t.forwardAuth},
		{"management requests", t.management},
		{"MCP sessions used and closed", t.closed},
		{"MCP sessions used and abandoned", t.abandoned},
		{"answers with a 5xx status", t.status5xx},
		{"unexpected answers", t.unexpected},
		{"transport errors", t.transport},
	} {
		w("| %s | %s | %s |\n", row.name, thousands(float64(row.n)), rate(row.n))
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		w("\n%s\n\n", title)
		for _, it := range items {
			w("- `%s`\n", strings.ReplaceAll(truncate(it, 300), "`", "'"))
		}
	}
	list("Problems seen (first kinds):", r.problems)
	list("Panics in keygate's output:", r.panics)
	list("keygate's warnings and errors, by message:", r.messages)

	w("\n### Samples\n\n")
	w("Live heap is what a forced collection (`/debug/pprof/heap?gc=1`) marked live, read from the goal it set: (NextGC − StackInuse) / 2; heap alloc and heap in use are HeapAlloc and HeapInuse once the profile is written, its own allocations and the traffic's meanwhile included; session goroutines are those of the limiter's wait and the SDK's reader of each open MCP session; net is all less those of the sessions expected open (at work, or abandoned less than the idle timeout and 5 seconds ago). Read is how long reading keygate took (the heap profile with its forced collection is most of it). Rows marked w are warm-up.\n\n")
	every := max(1, (len(r.samples)+maxRows-1)/maxRows)
	if every > 1 {
		w("Every %d samples shown (%d taken); the fit uses them all.\n\n", every, len(r.samples))
	}
	w("| t | RSS MiB | live heap MiB | heap alloc MiB | heap in use MiB | goroutines | of sessions | net | sessions (expected) | fds | DB MiB | req/s | p50 ms | p99 ms | 5xx | unexpected | read ms |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range r.samples {
		if i%every != 0 && i != len(r.samples)-1 {
			continue
		}
		mark := ""
		if s.at < r.warmup {
			mark = " w"
		}
		w("| %s%s | %.1f | %.1f | %.1f | %.1f | %d | %d | %d | %d (%d) | %d | %.1f | %s | %.1f | %.1f | %d | %d | %.0f |\n",
			clock(s.at), mark, float64(s.rss)/mib, float64(s.heapLive)/mib, float64(s.heapAlloc)/mib, float64(s.heapInuse)/mib,
			s.goroutines, s.sessionGs, s.netGoroutines(), s.sessions, s.expected, s.fds, float64(s.dbSize)/mib,
			thousands(float64(s.requests)/max(s.span.Seconds(), 0.001)), ms(s.p50), ms(s.p99), s.status5xx, s.unexpected, ms(s.readTook))
	}
	return b.String()
}

func fmtStderr(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// clock shows a time into the run as m:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// thousands formats a count with thousands separators, no decimals.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// sectionOrder is the order of the databases' sections in the page.
var sectionOrder = []string{"SQLite", "Postgres"}

// page is docs/soak.md: the introduction, then each database's latest
// run; section replaces its database's and keeps the other's.
func page(old, intro, db, section string) string {
	sections := map[string]string{}
	for _, part := range strings.Split("\n"+old, "\n## ")[1:] {
		name, _, _ := strings.Cut(part, "\n")
		sections[strings.TrimSpace(name)] = "## " + strings.TrimRight(part, "\n") + "\n"
	}
	sections[db] = strings.TrimRight(section, "\n") + "\n"
	out := strings.TrimRight(intro, "\n") + "\n"
	for _, name := range sectionOrder {
		if s, ok := sections[name]; ok {
			out += "\n" + s
		}
	}
	return out
}
