package main

import (
	"strings"
	"testing"
	"time"
)

// fakeResult is a measurement of rps requests per second over 10s with
// every latency lat.
func fakeResult(name string, rps float64, lat time.Duration) *result {
	r := &result{name: name, conns: 32, ok: uint64(rps * 10), elapsed: 10 * time.Second, hist: &histogram{}}
	for range 100 {
		r.hist.record(lat)
	}
	return r
}

func fullReport() *report {
	return &report{
		date:    time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		command: "go run ./cmd/keygate-bench",
		machine: machineInfo{cpu: "Test CPU", cores: 2, memory: "1.0 GiB", kernel: "Linux 6.0", goVer: "go1.26.8",
			opaVer: "v1.22.2", commit: "df34c1c", postgres: "15.20, shared_buffers 128MB, on this machine", load: "0.10 0.20 0.30", loadEnd: "1.00 0.50 0.40"},
		conns: 32, warmup: 2 * time.Second, duration: 10 * time.Second,
		mix:          requestMix(1, true),
		scope:        describeScope(benchScope()),
		floor:        fakeResult("floor (gin)", 30000, 800*time.Microsecond),
		opa:          fakeResult("OPA server", 5000, 4*time.Millisecond),
		sqlite:       fakeResult("keygate (SQLite)", 12000, 2*time.Millisecond),
		postgres:     fakeResult("keygate (Postgres)", 7000, 6*time.Millisecond),
		batch:        fakeResult("keygate (SQLite), batch of 100", 600, 50*time.Millisecond),
		limited:      fakeResult("keygate (SQLite), key with a rate limit and credits", 11000, 2*time.Millisecond),
		redisLimited: fakeResult("keygate (SQLite), key with a rate limit in Redis and credits", 6000, 4*time.Millisecond),
		scale: &scaleResult{
			seed:         &seedStats{keys: 1_000_000, scopeBytes: 294, copyTime: 40 * time.Second, vacuumTime: 5 * time.Second, tableSize: 1 << 30},
			scopeEntries: 5,
			uncached:     fakeResult("uncached", 4000, 1500*time.Microsecond),
			uncachedOne:  fakeResult("uncached, one at a time", 1000, 900*time.Microsecond),
			cacheKeys:    100_000, usedKeys: 120_000,
			warm:      fakeResult("warm", 4000, 1500*time.Microsecond),
			cached:    fakeResult("cached", 6000, 500*time.Microsecond),
			rssBefore: 50 << 20, rssAfter: 250 << 20, rssPeak: 260 << 20, heapLive: "120", heapGoal: "240",
		},
	}
}

func TestTargets(t *testing.T) {
	got := map[string]targetRow{}
	for _, row := range fullReport().targets() {
		got[row.what] = row
	}
	want := map[string][2]string{ // what: measured, verdict
		"keygate (SQLite) throughput / OPA":                                                  {"2.40×", "pass"},
		"keygate (Postgres) throughput / OPA":                                                {"1.40×", "FAIL"},
		"keygate (SQLite) throughput / floor":                                                {"40%", "pass"},
		"keygate (Postgres) throughput / floor":                                              {"23%", "FAIL"},
		"keygate (SQLite) p99 at 32 connections":                                             {"2.00 ms", "pass"},
		"keygate (Postgres) p99 at 32 connections":                                           {"6.00 ms", "FAIL"},
		"cost of a batch of 100 checks / one check":                                          {"20.00×", "FAIL"},
		"uncached authentication p50, one request at a time (1,000,000 keys in Postgres)":    {"0.90 ms", "pass"},
		"resident memory of keygate serve with 100,000 cached keys":                          {"250.0 MiB", "FAIL"},
		"keygate (SQLite) throughput with a key that has a rate limit and credits / without": {"92%", "pass"},
	}
	if len(got) != len(want) {
		t.Errorf("%d targets, want %d: %v", len(got), len(want), got)
	}
	for what, w := range want {
		row, ok := got[what]
		if !ok {
			t.Errorf("no target %q", what)
			continue
		}
		if row.got != w[0] || row.verdict != w[1] {
			t.Errorf("%s: measured %s (%s), want %s (%s)", what, row.got, row.verdict, w[0], w[1])
		}
	}
}

func TestTargetsNotRun(t *testing.T) {
	r := fullReport()
	r.postgres, r.scale, r.batch, r.limited = nil, nil, nil, nil
	for _, row := range r.targets() {
		missing := strings.Contains(row.what, "Postgres") || strings.Contains(row.what, "batch") ||
			strings.Contains(row.what, "uncached") || strings.Contains(row.what, "memory") || strings.Contains(row.what, "rate limit")
		if missing != (row.verdict == "not run") || missing != (row.got == "not run") {
			t.Errorf("%s: %s (%s)", row.what, row.got, row.verdict)
		}
	}
}

func TestMarkdown(t *testing.T) {
	md := fullReport().markdown()
	for _, want := range []string{
		"# Benchmarks",
		"Command: `go run ./cmd/keygate-bench`",
		"- CPU: Test CPU, 2 cores",
		"- OPA: v1.22.2",
		"- keygate: df34c1c",
		"when the run started: 0.10 0.20 0.30; when it ended, this run's own processes included: 1.00 0.50 0.40",
		"KEYGATE_LOG_LEVEL=warn",
		"| keygate (SQLite)                                             |    32 |  120,000 | 12,000 |  2.00 ms |  2.00 ms |  2.00 ms |      0 |",
		"- keygate (SQLite), key with a rate limit and credits / the same without: 92%",
		"- keygate (SQLite), key with a rate limit in Redis and credits / keygate (SQLite) without: 50%",
		"- keygate (SQLite) / OPA: 2.40×",
		"- keygate (Postgres) / floor: 23%",
		"- keygate (SQLite): a batch of 100 checks costs 20.00× one check",
		"| uncached keys, one request at a time",
		"## Scale (Postgres)",
		"Seeded 1,000,000 keys over 100 tenants × 10 users",
		"(25,000 keys/s)",
		"| uncached keys: each request a key not used before",
		"50.0 MiB before the first seeded key was used, 250.0 MiB after",
		"(120,000 distinct keys)",
		"had marked 120 MB of Go heap live, with a goal of 240 MB",
		"| resident memory of keygate serve with 100,000 cached keys ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	assertTablesAligned(t, md)

	r := fullReport()
	r.scale, r.postgres = nil, nil
	md = r.markdown()
	if strings.Contains(md, "## Scale") || strings.Contains(md, "keygate (Postgres) / OPA") {
		t.Errorf("a report without Postgres shows Postgres figures:\n%s", md)
	}
}

// assertTablesAligned fails unless every line of each table in md has the
// width of the table's first.
func assertTablesAligned(t *testing.T, md string) {
	t.Helper()
	var widths []int
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			widths = nil
			continue
		}
		widths = append(widths, len([]rune(line)))
		if widths[0] != widths[len(widths)-1] {
			t.Errorf("ragged table line %q", line)
		}
	}
}

func TestMdTable(t *testing.T) {
	got := mdTable([]string{"name", "n"}, [][]string{{"a", "1"}, {"µs×", "100"}}, "lr")
	want := "| name |   n |\n" +
		"| ---- | --: |\n" +
		"| a    |   1 |\n" +
		"| µs×  | 100 |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFormatting(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 999.5: "1,000", 1234567.8: "1,234,568", -1234: "-1,234"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtLatency(1234 * time.Microsecond); got != "1.23 ms" {
		t.Errorf("fmtLatency = %q", got)
	}
	if got := fmtMiB(200 << 20); got != "200.0 MiB" {
		t.Errorf("fmtMiB = %q", got)
	}
	if got := commandLine([]string{"-duration", "2s", "-out", "", "-postgres-url", "postgres://a b"}); got !=
		`go run ./cmd/keygate-bench -duration 2s -out '' -postgres-url 'postgres://a b'` {
		t.Errorf("commandLine = %s", got)
	}
}

func TestLastGC(t *testing.T) {
	out := "time=… level=WARN msg=x\n" +
		"gc 1 @0.012s 1%: 0.018+0.50+0.003 ms clock, 0.036+0.12/0.40/0.21+0.007 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		"gc 2 @9.5s 3%: 0.02+12+0.01 ms clock, 0.04+1/20/3+0.02 ms cpu, 900->910->455 MB, 911 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	if live, goal := lastGC(out); live != "455" || goal != "911" {
		t.Errorf("lastGC = %s, %s; want 455, 911", live, goal)
	}
	if live, goal := lastGC("no trace"); live != "?" || goal != "?" {
		t.Errorf("lastGC without a trace = %s, %s", live, goal)
	}
}
