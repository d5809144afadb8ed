package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMemStats(t *testing.T) {
	t.Parallel()
	profile := "heap profile: 1: 2 [3: 4] @ heap/1048576\n1: 2 [3: 4] @ 0x1 0x2\n#\t0x1\tmain.f+0x1\t/x.go:1\n\n" +
		"# runtime.MemStats\n# Alloc = 123\n# TotalAlloc = 987654321\n# Sys = 5\n# Lookups = 0\n# Mallocs = 4242\n# Frees = 4000\n"
	m, err := parseMemStats(strings.NewReader(profile))
	if err != nil || m.mallocs != 4242 || m.totalAlloc != 987654321 {
		t.Errorf("parseMemStats = %+v, %v", m, err)
	}
	if _, err := parseMemStats(strings.NewReader("# Alloc = 1\n")); err == nil {
		t.Error("a profile without Mallocs parsed")
	}
	if _, err := parseMemStats(strings.NewReader("# Mallocs = x\n# TotalAlloc = 1\n")); err == nil {
		t.Error("a bad number parsed")
	}
}

func TestParseCPUTime(t *testing.T) {
	t.Parallel()
	stat := "4242 (keygate (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 9 0 100 0 0"
	if got, err := parseCPUTime(stat); err != nil || got != 3800*time.Millisecond {
		t.Errorf("parseCPUTime = %s, %v; want 3.8s", got, err)
	}
	for _, bad := range []string{"", "4242 (k) S 1 2", "4242 (k) S 1 2 3 4 5 6 7 8 9 10 x 11"} {
		if _, err := parseCPUTime(bad); err == nil {
			t.Errorf("parseCPUTime(%q) parsed", bad)
		}
	}
}

func TestGCTrace(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newGCTrace()
	g.now = func() time.Time { return clock }
	line1 := "gc 1 @0.012s 1%: 0.018+0.50+0.003 ms clock, 0.036+0.12/0.40/0.21+0.007 ms cpu, 4->4->0 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n"
	line2 := "gc 2 @9.5s 3%: 1.5+12+0.5 ms clock, 3+1/20/3+1 ms cpu, 900->910->455 MB, 911 MB goal, 0 MB stacks, 0 MB globals, 2 P (forced)\n"
	// Lines arrive in pieces, mixed with log lines.
	for _, chunk := range []string{"time=x level=WARN msg=y\n" + line1[:30], line1[30:]} {
		if _, err := g.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	clock = clock.Add(time.Second)
	_, _ = g.Write([]byte(line2))
	all := g.between(clock.Add(-time.Hour), clock)
	if len(all) != 2 {
		t.Fatalf("%d GCs, want 2: %+v", len(all), all)
	}
	if all[0].pause != 21*time.Microsecond || all[0].cpu != 563*time.Microsecond {
		t.Errorf("first GC %+v, want a 0.021 ms pause and 0.563 ms of CPU (idle marking left out)", all[0])
	}
	if all[1].pause != 2*time.Millisecond || all[1].cpu != 25*time.Millisecond {
		t.Errorf("second GC %+v", all[1])
	}
	if late := g.between(clock, clock); len(late) != 1 || late[0].pause != 2*time.Millisecond {
		t.Errorf("between the second line's arrival: %+v", late)
	}

	u := usage(procSnapshot{at: clock, mem: memStats{mallocs: 100, totalAlloc: 1000}, cpu: time.Second},
		procSnapshot{at: clock.Add(10 * time.Second), mem: memStats{mallocs: 1100, totalAlloc: 21000}, cpu: 3 * time.Second}, all, 10)
	if u.mallocs != 1000 || u.bytes != 20000 || u.cpu != 2*time.Second || u.gcs != 2 || u.gcPause != 2021*time.Microsecond ||
		u.gcMaxPause != 2*time.Millisecond || u.perRequest(float64(u.mallocs)) != 100 {
		t.Errorf("usage = %+v", u)
	}
	if (&procUsage{}).perRequest(5) != 0 {
		t.Error("perRequest without requests")
	}
}

func TestSpliceSection(t *testing.T) {
	t.Parallel()
	section := realisticHeading + "\n\nnew figures\n"
	tests := []struct {
		note, page, want string
	}{
		{"an empty page", "", "# Benchmarks\n\n" + section},
		{"a page without the section", "# Benchmarks\n\n## Results\n\nold\n", "# Benchmarks\n\n## Results\n\nold\n\n" + section},
		{"the section last", "# B\n\n## Results\n\nx\n\n" + realisticHeading + "\n\nold figures\n\n| a |\n",
			"# B\n\n## Results\n\nx\n\n" + section},
		{"the section before another", "# B\n\n" + realisticHeading + "\n\nold\n\n## Targets\n\nt\n",
			"# B\n\n" + section + "\n## Targets\n\nt\n"},
		{"the section first", realisticHeading + "\n\nold\n\n## Targets\n\nt\n", section + "\n## Targets\n\nt\n"},
		{"a longer heading is another section", "# B\n\n" + realisticHeading + "s\n\nkept\n",
			"# B\n\n" + realisticHeading + "s\n\nkept\n\n" + section},
	}
	for _, tc := range tests {
		if got := spliceSection(tc.page, realisticHeading, section); got != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.note, got, tc.want)
		}
	}
}

func fakeRealistic() *realisticResult {
	kg := func(name string, rps float64, lat time.Duration, rows int64) *keygateRun {
		return &keygateRun{res: fakeResult(name, rps, lat), denials: 60_000, rows: rows,
			usage: &procUsage{span: 12 * time.Second, requests: 120_000, mallocs: 36_000_000, bytes: 2_400_000_000,
				cpu: 12 * time.Second, gcs: 60, gcPause: 120 * time.Millisecond, gcMaxPause: 4 * time.Millisecond, gcCPU: 1800 * time.Millisecond}}
	}
	return &realisticResult{keys: 500, questions: 20_000, seed: 1, cacheSize: 10_000, hitRate: 0.2, conns: 32,
		warmup: 2 * time.Second, duration: 10 * time.Second, load: "1.00 1.00 1.00", loadEnd: "3.00 2.00 1.00",
		kinds:      kindCounts(nil),
		scopeBytes: 1214, example: realisticScopes(1, 1)[0],
		floor:  fakeResult("floor (gin)", 40_000, 600*time.Microsecond),
		opa:    fakeResult("OPA server", 6_000, 4*time.Millisecond),
		policy: fakeResult(policyFloorName, 20_000, 1500*time.Microsecond),
		keygates: []*keygateRun{
			kg("keygate (SQLite)", 30_000, 800*time.Microsecond, 60_000),
			kg("keygate (Postgres)", 12_000, 3*time.Millisecond, 59_999),
		}}
}

func TestRealisticMarkdown(t *testing.T) {
	t.Parallel()
	r := fullReport()
	r.realistic = fakeRealistic()
	md := r.realisticMarkdown()
	for _, want := range []string{
		realisticHeading + "\n",
		"Measured on 2026-11-25 12:00 UTC by `go run ./cmd/keygate-bench` (keygate df34c1c) on Test CPU, 2 cores",
		"PostgreSQL 15.20",
		"when this workload started: 1.00 1.00 1.00; when it ended: 3.00 2.00 1.00",
		"- **Keys**: 500,",
		"comes back after 19,999 others, more than the cache holds",
		"answers 20% of requests from it",
		"| target             | conns | requests |  req/s |     p50 |     p90 |     p99 |   p99.9 | errors |",
		"| keygate (SQLite)   |    32 |  300,000 | 30,000 | 0.80 ms | 0.80 ms | 0.80 ms | 0.80 ms |      0 |",
		"- keygate (SQLite): 75% of the floor's throughput, p99 1.33× the floor's (0.80 ms against 0.60 ms); 5.00× OPA's throughput; 150% of the throughput of the floor with the policy\n",
		"- floor + policy: 50% of the floor's throughput, p99 2.50× the floor's; 3.33× OPA's throughput\n",
		"| floor + policy     |    32 |  200,000 | 20,000 | 1.50 ms |",
		"itself misses these targets: 50% of the floor's throughput (wanted ≥ 60%); p99 2.50× the floor's (wanted ≤ 1.5×). No server that evaluates this policy for each question a cache does not answer can meet them on this machine.",
		"| keygate (SQLite)   |  120,000 |        100 µs |                   300 |          20,000 | 60 (5.0/s) |",
		"120.00 ms (1.00%) |          4.00 ms |                  15% |",
		"| keygate (Postgres) |           60,000 |       59,999 |                             0 | FAIL",
		"| target                                        | wanted |         measured | floor + policy | result |",
		"| keygate (SQLite) throughput / floor           |  ≥ 60% |              75% |            50% | pass",
		"| keygate (SQLite) p99 / floor p99              | ≤ 1.5× |            1.33× |          2.50× | pass",
		"| keygate (Postgres) p99 / floor p99            | ≤ 1.5× |            5.00× |          2.50× | FAIL",
		"| keygate (Postgres) throughput / OPA           |   ≥ 3× |            2.00× |          3.33× | FAIL",
		"| keygate (Postgres) denials in the audit trail |    all | 59,999 of 60,000 |                | FAIL",
		"40,000 req/s and 0.60 ms at p99",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "ran under the") {
		t.Error("an unprofiled run says it was profiled")
	}
	assertTablesAligned(t, md)
	if page := r.markdown(); !strings.Contains(page, "## Targets") || !strings.HasSuffix(page, md) {
		t.Error("the whole page must end with the realistic section")
	}

	err := r.realistic.auditFailure()
	if err == nil || !strings.Contains(err.Error(), "keygate (Postgres) answered 60000 denials") || strings.Contains(err.Error(), "SQLite") {
		t.Errorf("auditFailure = %v", err)
	}
	r.realistic.keygates[1].rows = 60_000
	if err := r.realistic.auditFailure(); err != nil {
		t.Errorf("auditFailure with every denial audited: %v", err)
	}
	if err := (*realisticResult)(nil).auditFailure(); err != nil {
		t.Errorf("auditFailure without the workload: %v", err)
	}

	r.realistic.profiled, r.realistic.questions = true, 2_000
	md = r.realisticMarkdown()
	if !strings.Contains(md, "ran under the CPU or contention profiler") || strings.Contains(md, "more than the cache holds") {
		t.Errorf("a profiled run with fewer questions than the cache holds:\n%s", md)
	}
	r.realistic = nil
	if r.realisticMarkdown() != "" || strings.Contains(r.markdown(), realisticHeading) {
		t.Error("a run without the realistic workload shows its section")
	}
}

func TestPolicyMisses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note   string
		policy *result
		want   []string
	}{
		{note: "not measured"},
		{note: "meets every target", policy: fakeResult(policyFloorName, 30_000, 800*time.Microsecond)},
		{note: "slow at the tail only", policy: fakeResult(policyFloorName, 30_000, time.Millisecond),
			want: []string{"p99 1.67× the floor's (wanted ≤ 1.5×)"}},
		{note: "misses all three", policy: fakeResult(policyFloorName, 12_000, 3*time.Millisecond),
			want: []string{"30% of the floor's throughput (wanted ≥ 60%)", "p99 5.00× the floor's (wanted ≤ 1.5×)", "2.00× OPA's throughput (wanted ≥ 3×)"}},
	} {
		rr := fakeRealistic()
		rr.policy = tc.policy
		if got := rr.policyMisses(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: policyMisses = %q, want %q", tc.note, got, tc.want)
		}
	}
	r := fullReport()
	r.realistic = fakeRealistic()
	r.realistic.policy = fakeResult(policyFloorName, 30_000, time.Millisecond)
	if md := r.realisticMarkdown(); !strings.Contains(md, "itself misses this target: p99 1.67× the floor's (wanted ≤ 1.5×). No server that evaluates this policy for each question a cache does not answer can meet it on this machine.") {
		t.Errorf("one target missed:\n%s", md)
	}
	r.realistic.policy = fakeResult(policyFloorName, 30_000, 800*time.Microsecond)
	if md := r.realisticMarkdown(); strings.Contains(md, "itself misses") {
		t.Errorf("no target missed, yet the section says one is:\n%s", md)
	}
	r.realistic.policy = nil
	if md := r.realisticMarkdown(); strings.Contains(md, "| "+policyFloorName) ||
		!strings.Contains(md, "| keygate (SQLite) throughput / floor           |  ≥ 60% |              75% | pass   |") {
		t.Errorf("without the floor with the policy, the section names it or its targets table has its column:\n%s", md)
	}
}
