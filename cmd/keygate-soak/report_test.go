package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestPage(t *testing.T) {
	t.Parallel()
	intro := "# Soak\n\nIntro.\n\n## How to run it\n\nmake soak\n"
	sqlite := "## SQLite\n\nrun 1\n\n### Samples\n\n| t |\n"
	postgres := "## Postgres\n\nrun 2\n"
	tests := []struct {
		note, old, db, section, want string
	}{
		{"a first run", "", "SQLite", sqlite, intro + "\n" + sqlite},
		{"a second database keeps the first", intro + "\n" + sqlite, "Postgres", postgres, intro + "\n" + sqlite + "\n" + postgres},
		{"sections stay in order whatever runs first", intro + "\n" + postgres, "SQLite", sqlite, intro + "\n" + sqlite + "\n" + postgres},
		{"a run replaces its own section", intro + "\n" + sqlite + "\n" + postgres, "SQLite", "## SQLite\n\nrun 3\n",
			intro + "\n## SQLite\n\nrun 3\n\n" + postgres},
		{"an old introduction is replaced", "# Soak\n\nOld words.\n\n## Old heading\n\nx\n\n" + postgres, "SQLite", sqlite,
			intro + "\n" + sqlite + "\n" + postgres},
	}
	for _, tc := range tests {
		if got := page(tc.old, intro, tc.db, tc.section); got != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.note, got, tc.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	o, err := parseOptions(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var samples []sample
	for i := range 200 {
		samples = append(samples, sample{at: time.Duration(i+1) * o.sample, span: o.sample, heapLive: 20 * mib, goroutines: 60, fds: 40,
			counts: counts{requests: 5000}})
	}
	samples[199].status5xx = 1
	r := &report{db: "SQLite", dbInfo: "SQLite", command: "go run ./cmd/keygate-soak", opts: o, warmup: 2 * time.Minute,
		ran: 1000 * time.Second, samples: samples, outcome: outcome{totals: counts{requests: 1_000_000, status5xx: 1}},
		problems: []string{"1× decision: 500 `boom`"}}
	r.verdict = judge(samples, r.warmup, withLimits(o.limits), r.outcome)
	md := r.markdown()
	for _, want := range []string{
		"## SQLite\n\n**FAIL**: 1 answers with a 5xx status.",
		"| live heap | +0.00 MiB | 0.00 | 20.0 → 20.0 | 1 MiB a minute |",
		"| HTTP requests, every kind | 1,000,000 | 1,000 |",
		"- `1× decision: 500 'boom'`",
		"Every 3 samples shown (200 taken)",
		"| 0:05 w | 0.0 | 20.0 |",
		"| 16:40 | 0.0 | 20.0 | 0.0 | 0.0 | 60 | 0 | 60 | 0 (0) | 40 | 0.0 | 1,000 | 0.0 | 0.0 | 1 | 0 | 0 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the section lacks %q:\n%s", want, md)
		}
	}
	if rows := len(sampleRow.FindAllString(md, -1)); rows != 68 { // every 3rd of 200 (67), and the last
		t.Errorf("%d sample rows, want 68", rows)
	}
}

var sampleRow = regexp.MustCompile(`(?m)^\| \d+:\d\d`)

func TestThousands(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -4321: "-4,321"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%g) = %q, want %q", in, got, want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	t.Parallel()
	o, err := parseOptions([]string{"-duration", "3m", "-postgres"}, nil)
	if err != nil || o.duration != 3*time.Minute || !o.postgres || o.limits != (limits{heapMiB: 1, goroutines: 10, fds: 5}) {
		t.Fatalf("got %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"-duration", "0s"},
		{"-keys", "1"},
		{"-mcp-keys", "500"},
		{"-bad-keys", "0.5", "-batches", "0.4", "-forward-auth", "0.2"},
		{"-session-idle-timeout", "10ms"},
		{"extra"},
	} {
		if _, err := parseOptions(args, &strings.Builder{}); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}
