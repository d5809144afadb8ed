package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/authz"
)

// report is everything one run measured, rendered to docs/benchmarks.md and
// to the terminal.
type report struct {
	date     time.Time
	command  string
	machine  machineInfo
	conns    int
	warmup   time.Duration
	duration time.Duration
	mix      []mixEntry
	scope    string // how the bench key's scope looks

	// One per target, nil when not run.
	floor, opa, sqlite, postgres, batch *result
	sqliteRaw, batchRaw                 *result // keygate with its decision cache off
	limited, redisLimited               *result // a key with a rate limit and credits
	redisSkipped                        string  // why redisLimited was not measured
	scale                               *scaleResult
	realistic                           *realisticResult
	decisionLogs                        *decisionLogResult
}

// scaleResult is what the scale part measured, on Postgres.
type scaleResult struct {
	seed         *seedStats
	scopeEntries int
	uncached     *result
	uncachedOne  *result // uncached keys, one request at a time
	cacheKeys    int
	usedKeys     int // distinct seeded keys used before rssAfter was read
	warm         *result
	cached       *result
	rssBefore    uint64 // bytes, after the main benchmark, before any seeded key was used
	rssAfter     uint64 // bytes, after warming cacheKeys keys
	rssPeak      uint64 // VmHWM at the end
	heapLive     string // MB marked live by the last GC before rssAfter, from gctrace
	heapGoal     string // MB the heap could grow to before the next GC
	memLimit     string // GOMEMLIMIT keygate ran with, "" for none
}

// machineInfo describes where the numbers come from.
type machineInfo struct {
	cpu      string
	cores    int
	memory   string
	kernel   string
	goVer    string
	opaVer   string
	commit   string // git describe of the repository measured; "-dirty" with uncommitted changes
	postgres string // version and shared_buffers, "" without Postgres
	load     string // load averages when the run started
	loadEnd  string // and when it ended: other work on the machine shows here
}

// readMachine gathers machineInfo from /proc, the runtime and go.mod.
func readMachine(ctx context.Context, repo string) machineInfo {
	m := machineInfo{cpu: "unknown", cores: runtime.NumCPU(), memory: "unknown", kernel: "unknown",
		goVer: runtime.Version(), opaVer: "unknown", commit: "unknown", load: "unknown"}
	if v := procField("/proc/cpuinfo", "model name", ":"); v != "" {
		m.cpu = v
	}
	if v := procField("/proc/meminfo", "MemTotal", ":"); v != "" {
		if kb, err := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = "Linux " + strings.TrimSpace(string(data))
	}
	m.load = loadAverage()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "github.com/open-policy-agent/opa")
	cmd.Dir = repo
	if out, err := cmd.Output(); err == nil {
		m.opaVer = strings.TrimSpace(string(out))
	}
	cmd = exec.CommandContext(ctx, "git", "describe", "--always", "--dirty")
	cmd.Dir = repo
	if out, err := cmd.Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
	}
	return m
}

// writeReport prints the report and writes it to -out: the whole page, or
// with -realistic-only the realistic workload's section in the page as it
// stands.
func (b *bench) writeReport(rep *report, stdout io.Writer) error {
	md := rep.markdown()
	heading := ""
	switch {
	case b.opts.realisticOnly:
		md, heading = rep.realisticMarkdown(), realisticHeading
	case b.opts.decisionOnly:
		md, heading = rep.decisionLogMarkdown(), decisionLogHeading
	}
	fmt.Fprintln(stdout, md)
	if b.opts.out == "" {
		return nil
	}
	path := b.opts.out
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.repo, path)
	}
	if heading != "" {
		page, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		md = spliceSection(string(page), heading, md)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	b.logf("wrote %s", path)
	return nil
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// procField returns the value of the first "key<sep> value" line of a
// /proc file, "" when absent.
func procField(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// residentBytes reads a process's VmRSS or VmHWM from /proc.
func residentBytes(pid int, field string) (uint64, error) {
	v := procField(fmt.Sprintf("/proc/%d/status", pid), field, ":")
	kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s of process %d: %q", field, pid, v)
	}
	return kb << 10, nil
}

// Targets on the cached workload and the key store at scale.
const (
	targetVsOPA       = 1.5
	targetVsFloor     = 0.40
	targetP99         = 5 * time.Millisecond
	targetBatch       = 10.0
	targetUncachedP50 = time.Millisecond
	targetRSS         = 200 << 20
)

// targetRow is one target and how the run did.
type targetRow struct {
	what, want, got, verdict string
	// policy is the floor with the policy's own figure for the target,
	// on the realistic workload; "" where it has none.
	policy string
}

// targets checks every target against what was measured; one whose
// measurement did not run says so.
func (r *report) targets() []targetRow {
	var rows []targetRow
	add := func(what, want string, measured bool, got string, pass bool) {
		verdict := "not run"
		if measured {
			verdict = map[bool]string{true: "pass", false: "FAIL"}[pass]
		} else {
			got = "not run"
		}
		rows = append(rows, targetRow{what: what, want: want, got: got, verdict: verdict})
	}
	keygates := []struct {
		name string
		res  *result
	}{{"keygate (SQLite)", r.sqlite}, {"keygate (Postgres)", r.postgres}}
	for _, kg := range keygates {
		ratio := safeRatio(kg.res, r.opa)
		add(kg.name+" throughput / OPA", fmt.Sprintf("≥ %.1f×", targetVsOPA), kg.res != nil && r.opa != nil,
			fmt.Sprintf("%.2f×", ratio), ratio >= targetVsOPA)
	}
	for _, kg := range keygates {
		ratio := safeRatio(kg.res, r.floor)
		add(kg.name+" throughput / floor", fmt.Sprintf("≥ %.0f%%", 100*targetVsFloor), kg.res != nil && r.floor != nil,
			fmt.Sprintf("%.0f%%", 100*ratio), ratio >= targetVsFloor)
	}
	for _, kg := range keygates {
		var p99 time.Duration
		if kg.res != nil {
			p99 = kg.res.hist.quantile(0.99)
		}
		add(fmt.Sprintf("%s p99 at %d connections", kg.name, r.conns), "< "+fmtLatency(targetP99), kg.res != nil,
			fmtLatency(p99), p99 < targetP99)
	}
	limited := safeRatio(r.limited, r.sqlite)
	add("keygate (SQLite) throughput with a key that has a rate limit and credits / without", fmt.Sprintf("≥ %.0f%%", 100*targetLimited),
		r.limited != nil && r.sqlite != nil, fmt.Sprintf("%.0f%%", 100*limited), limited >= targetLimited)
	cost := safeRatio(r.sqlite, r.batch)
	add(fmt.Sprintf("cost of a batch of %d checks / one check", batchSize), fmt.Sprintf("≤ %.0f×", targetBatch),
		r.sqlite != nil && r.batch != nil, fmt.Sprintf("%.2f×", cost), cost <= targetBatch)

	s := r.scale
	keys := "the seeded keys"
	if s != nil {
		keys = fmt.Sprintf("%s keys", thousands(float64(s.seed.keys)))
	}
	var p50 time.Duration
	if s != nil && s.uncachedOne != nil {
		p50 = s.uncachedOne.hist.quantile(0.5)
	}
	add(fmt.Sprintf("uncached authentication p50, one request at a time (%s in Postgres)", keys), "< "+fmtLatency(targetUncachedP50),
		s != nil && s.uncachedOne != nil, fmtLatency(p50), p50 < targetUncachedP50)
	cached := "cached keys"
	var rss uint64
	if s != nil {
		cached = fmt.Sprintf("%s cached keys", thousands(float64(s.cacheKeys)))
		rss = s.rssAfter
	}
	add("resident memory of keygate serve with "+cached, "< "+fmtMiB(targetRSS), s != nil && s.warm != nil, fmtMiB(rss), rss < targetRSS)
	return rows
}

// safeRatio is a's throughput over b's, 0 when either is missing.
func safeRatio(a, b *result) float64 {
	if a == nil || b == nil || b.rps() == 0 {
		return 0
	}
	return a.rps() / b.rps()
}

// resultsTable is the main table: one row per target that ran.
func (r *report) resultsTable() string {
	rows := [][]string{}
	for _, res := range []*result{r.floor, r.opa, r.sqlite, r.limited, r.redisLimited, r.postgres, r.batch, r.sqliteRaw, r.batchRaw} {
		if res != nil {
			rows = append(rows, resultRow(res))
		}
	}
	return mdTable([]string{"target", "conns", "requests", "req/s", "p50", "p90", "p99", "errors"}, rows, "lrrrrrrr")
}

func resultRow(res *result) []string {
	return []string{res.name, strconv.Itoa(res.conns), thousands(float64(res.ok)), thousands(res.rps()),
		fmtLatency(res.hist.quantile(0.5)), fmtLatency(res.hist.quantile(0.9)), fmtLatency(res.hist.quantile(0.99)),
		thousands(float64(res.errors))}
}

// markdown renders the whole of docs/benchmarks.md.
func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (cmd/keygate-bench) on %s; rerun it to update this page.\n\n", r.date.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Command: `%s`\n\n", r.command)

	fmt.Fprintf(&b, "## Machine\n\n")
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n- Memory: %s\n- Kernel: %s\n- Go: %s\n- OPA: %s (the version in go.mod)\n- keygate: %s (`git describe --always --dirty`)\n",
		m.cpu, m.cores, m.memory, m.kernel, m.goVer, m.opaVer, m.commit)
	if m.postgres != "" {
		fmt.Fprintf(&b, "- PostgreSQL: %s\n", m.postgres)
	}
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) when the run started: %s; when it ended, this run's own processes included: %s\n\n", m.load, m.loadEnd)

	fmt.Fprintf(&b, "## Setup\n\n")
	fmt.Fprintf(&b, "Every server is its own process on a loopback port; the load generator (in-repo Go, `cmd/keygate-bench`) runs on the same machine and shares its cores; to take as little of them as it can, it writes requests encoded once up front on plain HTTP/1.1 keep-alive connections and reads only the status, the headers it needs and the body. ")
	fmt.Fprintf(&b, "Each target gets %d connections, each a goroutine sending its next request when the previous answer arrives, for %s of warm-up and %s measured. ", r.conns, r.warmup, r.duration)
	fmt.Fprintf(&b, "A non-200 answer, or an answer whose allow flag is not the expected one, counts as an error; latencies are of right answers only.\n\n")
	fmt.Fprintf(&b, "- Request mix, one after the other: %s.\n", describeMix(r.mix))
	fmt.Fprintf(&b, "- The key: %s.\n", r.scope)
	fmt.Fprintf(&b, "- **floor**: a gin handler (release mode, no middleware) that reads and JSON-decodes keygate's request body and answers a fixed JSON.\n")
	fmt.Fprintf(&b, "- **OPA**: `opa run --server` with `policies/*.rego`, `POST /v1/data/keygate/authz/decision`; the key's scope is sent in every request's input.\n")
	fmt.Fprintf(&b, "- **keygate**: `keygate serve` with `KEYGATE_LOG_LEVEL=warn` (no access log lines), `POST /v1/authorize` with the key's token; on SQLite (`--data-dir` in a temporary folder) and on Postgres (a database created for the run and dropped after it).\n")
	fmt.Fprintf(&b, "- **batch**: `POST /v1/authorize` with `checks`: the first %d requests of the mix in one request.\n", batchSize)
	if r.limited != nil {
		fmt.Fprintf(&b, "- **key with a rate limit and credits**: the same mix on the same keygate with a second key of the same scope that has `rate_limit` {%d per second} and `credits` {%d}, too many to refuse anything: every answer says where the key stands, and each allowed check spends a credit. With its rate limit in Redis: another keygate with `KEYGATE_REDIS_URL` at the machine's Redis.\n",
			authz.MaxRateLimit, int64(authz.MaxCredits))
	}
	if slices.ContainsFunc(r.mix, func(m mixEntry) bool { return !m.allow }) {
		fmt.Fprintf(&b, "- Half the checks of the mix are denials; keygate records each denied check as an audit event, written in batches off the request path, so that cost is in its figures.\n")
	} else {
		fmt.Fprintf(&b, "- The mix holds no denial (`-denials=false`): keygate writes no audit event, so these figures leave out what recording refusals costs.\n")
	}
	fmt.Fprintf(&b, "- Before measuring, %s sent to keygate and to OPA: both gave the expected allow or deny with the same reasons.\n\n", verified(len(r.mix)))

	fmt.Fprintf(&b, "## Results\n\n%s\n", r.resultsTable())
	fmt.Fprintf(&b, "Throughput ratios:\n\n")
	for _, kg := range []*result{r.sqlite, r.postgres} {
		if kg == nil {
			continue
		}
		if r.opa != nil {
			fmt.Fprintf(&b, "- %s / OPA: %.2f×\n", kg.name, safeRatio(kg, r.opa))
		}
		if r.floor != nil {
			fmt.Fprintf(&b, "- %s / floor: %.0f%%\n", kg.name, 100*safeRatio(kg, r.floor))
		}
	}
	for _, pair := range [][2]*result{{r.sqlite, r.batch}, {r.sqliteRaw, r.batchRaw}} {
		single, batch := pair[0], pair[1]
		if single == nil || batch == nil {
			continue
		}
		n := batchSize
		fmt.Fprintf(&b, "- %s: a batch of %d checks costs %.2f× one check (%s req/s single / %s req/s batch); %.1f µs per check in a batch against %.1f µs per single request.\n",
			single.name, n, safeRatio(single, batch), thousands(single.rps()), thousands(batch.rps()),
			1e6/(batch.rps()*float64(n)), 1e6/single.rps())
	}
	if r.sqliteRaw != nil && r.opa != nil {
		fmt.Fprintf(&b, "- %s / OPA: %.2f× (every check evaluated, as OPA evaluates every request)\n", r.sqliteRaw.name, safeRatio(r.sqliteRaw, r.opa))
	}
	r.limitsMarkdown(&b)
	b.WriteString("\n")

	if s := r.scale; s != nil {
		r.scaleMarkdown(&b, s)
	}

	fmt.Fprintf(&b, "## Targets\n\n")
	var rows [][]string
	for _, t := range r.targets() {
		rows = append(rows, []string{t.what, t.want, t.got, t.verdict})
	}
	b.WriteString(mdTable([]string{"target", "wanted", "measured", "result"}, rows, "lrrl"))
	if r.floor != nil {
		fmt.Fprintf(&b, "\nFor the p99 targets: the floor, which only decodes the request, answered in %s at p99 in this run. At a fixed %d requests in flight, the mean latency is %d divided by the throughput (Little's law), so a target's p99 follows its req/s.\n",
			fmtLatency(r.floor.hist.quantile(0.99)), r.conns, r.conns)
	}
	if r.decisionLogs != nil {
		b.WriteString("\n" + r.decisionLogMarkdown())
	}
	if r.realistic != nil {
		b.WriteString("\n" + r.realisticMarkdown())
	}
	return b.String()
}

func (r *report) scaleMarkdown(b *strings.Builder, s *scaleResult) {
	st := s.seed
	fmt.Fprintf(b, "## Scale (Postgres)\n\n")
	fmt.Fprintf(b, "- Seeded %s keys over %d tenants × %d users with COPY (%s rows per statement, %d streams at once) in %s (%s keys/s), then `VACUUM ANALYZE` in %s. `api_keys` with its indexes: %s.\n",
		thousands(float64(st.keys)), seedTenants, seedUsers, thousands(seedChunk), seedParallel, st.copyTime.Round(100*time.Millisecond),
		thousands(float64(st.keys)/st.copyTime.Seconds()), st.vacuumTime.Round(100*time.Millisecond), fmtMiB(uint64(st.tableSize)))
	fmt.Fprintf(b, "- Each seeded key's scope: %d entries in each of the 4 lists, one a glob (%d bytes of JSON). Every request: `agent` `%s` `%s` (an exact-id allow).\n",
		s.scopeEntries, st.scopeBytes, seedCheck.Resource.ID, seedCheck.Action)
	fmt.Fprintf(b, "- The keygate on Postgres in the results above ran against this database.\n\n")
	var rows [][]string
	if s.uncachedOne != nil {
		row := resultRow(s.uncachedOne)
		row[0] = "uncached keys, one request at a time"
		rows = append(rows, row)
	}
	if s.uncached != nil {
		row := resultRow(s.uncached)
		row[0] = "uncached keys: each request a key not used before"
		rows = append(rows, row)
	}
	if s.warm != nil {
		row := resultRow(s.warm)
		row[0] = fmt.Sprintf("warming: %s more keys, one request each", thousands(float64(s.cacheKeys)))
		rows = append(rows, row)
	}
	if s.cached != nil {
		row := resultRow(s.cached)
		row[0] = "cached keys: the last warmed keys again"
		rows = append(rows, row)
	}
	b.WriteString(mdTable([]string{"phase", "conns", "requests", "req/s", "p50", "p90", "p99", "errors"}, rows, "lrrrrrrr"))
	b.WriteString("\n")
	if s.warm != nil {
		limit := "no `GOMEMLIMIT`"
		if s.memLimit != "" {
			limit = "`GOMEMLIMIT=" + s.memLimit + "`"
		}
		fmt.Fprintf(b, "Resident memory of `keygate serve` (VmRSS, `KEYGATE_KEY_CACHE_SIZE=%d`, "+limit+"): %s before the first seeded key was used, %s after the uncached and warming phases (%s distinct keys); peak (VmHWM) %s at the end. At that point the last GC (`GODEBUG=gctrace=1`) had marked %s MB of Go heap live, with a goal of %s MB for the next.\n\n",
			s.cacheKeys, fmtMiB(s.rssBefore), fmtMiB(s.rssAfter), thousands(float64(s.usedKeys)), fmtMiB(s.rssPeak), s.heapLive, s.heapGoal)
	}
}

// mdTable renders a Markdown table with padded columns, readable as text
// too; align holds 'l' or 'r' per column.
func mdTable(header []string, rows [][]string, align string) string {
	width := make([]int, len(header))
	for _, row := range append([][]string{header}, rows...) {
		for i, cell := range row {
			width[i] = max(width[i], utf8.RuneCountInString(cell), 3)
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, cell := range cells {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if align[i] == 'r' {
				cell = pad + cell
			} else {
				cell += pad
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for i := range header {
		dashes := strings.Repeat("-", width[i])
		if align[i] == 'r' {
			dashes = dashes[1:] + ":"
		}
		b.WriteString(" " + dashes + " |")
	}
	b.WriteString("\n")
	for _, row := range rows {
		line(row)
	}
	return b.String()
}

// fmtLatency prints a latency in milliseconds, one unit for every cell so
// columns compare at a glance.
func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func fmtMiB(bytes uint64) string {
	return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20))
}

// thousands rounds v and groups its digits: 1234567.8 → "1,234,568".
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// verified says which requests of a mix of n verify compared.
func verified(n int) string {
	if n <= verifyMax {
		return "every request of the mix was"
	}
	return fmt.Sprintf("the first %d requests of the mix were", verifyMax)
}
