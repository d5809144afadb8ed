package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseGoroutines(t *testing.T) {
	t.Parallel()
	// A profile of keygate under soak with 7 MCP sessions open.
	f, err := os.Open("testdata/goroutines.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := parseGoroutines(f)
	if err != nil {
		t.Fatal(err)
	}
	if g != (goroutineCount{total: 59, ofSessions: 14, sessions: 7}) {
		t.Fatalf("got %+v, want 59 goroutines, 14 of 7 sessions", g)
	}

	for _, tc := range []struct {
		note, profile, wantErr string
	}{
		{"not a goroutine profile", "heap profile: 1: 2 [3: 4] @ heap/1048576\n", "starts"},
		{"empty", "", "empty"},
		{"a record line that does not parse", "goroutine profile: total 1\nx @ 0x1\n", "line"},
		{"records that do not add up", "goroutine profile: total 3\n1 @ 0x1\n#\t0x1\tmain.main+0x1\t/m.go:1\n", "add up to 1"},
	} {
		if _, err := parseGoroutines(strings.NewReader(tc.profile)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want one with %q", tc.note, err, tc.wantErr)
		}
	}
}

func TestParseHeapStats(t *testing.T) {
	t.Parallel()
	profile := `heap profile: 10: 2048 [900: 1048576] @ heap/524288
1: 1024 [1: 1024] @ 0x4a 0x4b
#	0x4a	main.alloc+0x1	/m.go:1

# runtime.MemStats
# Alloc = 12345678
# TotalAlloc = 999999999
# Sys = 40000000
# HeapAlloc = 12345678
# HeapSys = 30000000
# HeapIdle = 9000000
# HeapInuse = 21000000
# Stack = 2621440 / 2621440
# NextGC = 25823050
# NumGC = 42
`
	h, err := parseHeapStats(strings.NewReader(profile))
	if err != nil {
		t.Fatal(err)
	}
	if h != (heapFigures{heapAlloc: 12345678, heapInuse: 21000000, nextGC: 25823050, stackInuse: 2621440}) {
		t.Fatalf("got %+v", h)
	}
	if live := h.live(); live != (25823050-2621440)/2 {
		t.Fatalf("live %d, want half the goal less the stacks", live)
	}
	if live := (heapFigures{nextGC: 1, stackInuse: 2}).live(); live != 0 {
		t.Fatalf("live %d from a goal below the stacks", live)
	}
	for _, tc := range []struct{ note, profile, wantErr string }{
		{"no MemStats", "heap profile: 1: 2 [3: 4] @ heap/1\n", `= ""`},
		{"a figure that is not a number", "# HeapAlloc = many\n# HeapInuse = 1\n# Stack = 1 / 1\n# NextGC = 1\n", "HeapAlloc"},
		{"no stacks", "# HeapAlloc = 1\n# HeapInuse = 1\n# NextGC = 1\n", "Stack"},
	} {
		if _, err := parseHeapStats(strings.NewReader(tc.profile)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want one with %q", tc.note, err, tc.wantErr)
		}
	}
}

func TestParseRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\tkeygate\nVmPeak:\t 2000000 kB\nVmHWM:\t   90000 kB\nVmRSS:\t   81234 kB\nThreads:\t9\n"
	got, err := parseRSS(strings.NewReader(status))
	if err != nil || got != 81234<<10 {
		t.Fatalf("got %d, %v; want %d", got, err, 81234<<10)
	}
	for _, tc := range []struct{ note, status, wantErr string }{
		{"no VmRSS", "Name:\tkeygate\n", "no VmRSS"},
		{"not in kB", "VmRSS:\t 12 MB\n", "not in kB"},
		{"not a number", "VmRSS:\t x kB\n", "VmRSS"},
	} {
		if _, err := parseRSS(strings.NewReader(tc.status)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err %v, want one with %q", tc.note, err, tc.wantErr)
		}
	}
	// The harness's own process has a status file to read.
	if rss, err := readRSS(os.Getpid()); err != nil || rss == 0 {
		t.Fatalf("own RSS: %d, %v", rss, err)
	}
}

func TestSQLiteSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "keygate.db")
	if _, err := sqliteSize(db); err == nil {
		t.Fatal("a missing database has a size")
	}
	for suffix, n := range map[string]int{"": 4096, "-wal": 1000, "-shm": 32768} {
		if err := os.WriteFile(db+suffix, make([]byte, n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := sqliteSize(db); err != nil || got != 4096+1000+32768 {
		t.Fatalf("got %d, %v; want the three files together", got, err)
	}
	if err := os.Remove(db + "-wal"); err != nil {
		t.Fatal(err)
	}
	if got, err := sqliteSize(db); err != nil || got != 4096+32768 {
		t.Fatalf("without a log: got %d, %v", got, err)
	}
}

func TestLogWatch(t *testing.T) {
	t.Parallel()
	w := newLogWatch()
	lines := []string{
		`time=2026-01-01T00:00:00Z level=INFO msg="listening" addr=127.0.0.1:1`,
		`time=2026-01-01T00:00:01Z level=WARN msg="too many failed authentications; refusing the address for a while" ip=10.99.0.1`,
		`time=2026-01-01T00:00:02Z level=WARN msg="too many failed authentications; refusing the address for a while" ip=10.99.0.2`,
		`time=2026-01-01T00:00:03Z level=ERROR msg="panic serving request" panic="runtime error: index out of range"`,
		`time=2026-01-01T00:00:04Z level=ERROR msg=flush err="database is locked"`,
		`panic: runtime error: invalid memory address or nil pointer dereference`,
		`fatal error: concurrent map writes`,
	}
	// Written in pieces that split lines, as a pipe delivers them.
	all := strings.Join(lines, "\n") + "\n"
	for len(all) > 0 {
		n := min(len(all), 37)
		if _, err := w.Write([]byte(all[:n])); err != nil {
			t.Fatal(err)
		}
		all = all[n:]
	}
	if got := w.panicLines(); len(got) != 3 {
		t.Errorf("panic lines %q, want the recovered one, the crash and the fatal error", got)
	}
	want := []string{
		"2× WARN too many failed authentications; refusing the address for a while",
		"1× ERROR flush",
	}
	if got := w.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("messages %q, want %q", got, want)
	}
	if !strings.HasSuffix(w.tail(), "concurrent map writes\n") {
		t.Errorf("tail %q", w.tail())
	}
}

func TestByKind(t *testing.T) {
	t.Parallel()
	k := newByKind(2, "(others)")
	for _, line := range []string{"a", "b", "a", "c", "d", "b", "c"} {
		k.add(line)
	}
	want := []string{"2× a", "2× b", "3× (others)"}
	if got := k.list(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSessionsExpected(t *testing.T) {
	t.Parallel()
	clock := time.Unix(1000, 0)
	l := &sessionLoad{idle: 30 * time.Second, now: func() time.Time { return clock }}
	l.begin()
	l.begin()
	l.begin()
	if got := l.expected(clock); got != 3 {
		t.Fatalf("%d expected with 3 at work", got)
	}
	l.end(false) // closed
	l.end(true)  // abandoned at 1000
	clock = clock.Add(10 * time.Second)
	l.end(true) // abandoned at 1010
	for _, tc := range []struct {
		at   time.Duration // after 1000
		want int
	}{
		{10 * time.Second, 2},
		{35 * time.Second, 2},                  // inside the idle timeout and its slack
		{35*time.Second + time.Millisecond, 1}, // the first has expired
		{45*time.Second + time.Millisecond, 0}, // and the second
	} {
		if got := l.expected(time.Unix(1000, 0).Add(tc.at)); got != tc.want {
			t.Errorf("at +%s: %d expected, want %d", tc.at, got, tc.want)
		}
	}
}
