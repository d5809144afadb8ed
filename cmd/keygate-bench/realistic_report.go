package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
)

// realisticHeading starts the realistic workload's section of the report;
// -realistic-only replaces the section under it and leaves the rest of the
// page as it was.
const realisticHeading = "## Realistic workload"

// Targets on the realistic workload: near the floor, well ahead of OPA.
const (
	targetRealVsFloor = 0.60 // of the floor's throughput
	targetRealP99     = 1.5  // × the floor's p99
	targetRealVsOPA   = 3.0  // × OPA's throughput
)

// realisticMarkdown renders the realistic workload's section. It names its
// own run and machine, as -realistic-only puts it in a page made by
// another run.
func (r *report) realisticMarkdown() string {
	rr := r.realistic
	if rr == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s", realisticHeading, r.provenance("this workload", rr.load, rr.loadEnd))

	ex := rr.example.AgentIDs
	fmt.Fprintf(&b, "- **Keys**: %s, created through `POST /api/v1/api-keys` on each keygate, each with a scope of its own: %d entries in each of the 4 lists, the last %d globs, drawn from %s ids and %d glob prefixes per resource type (such as `%s` and `%s`); %s bytes of JSON on average.\n",
		thousands(float64(rr.keys)), scopeEntries, scopeGlobs, thousands(catalogIDs), globFamilies, ex[0], ex[len(ex)-1], thousands(float64(rr.scopeBytes)))
	var kinds []string
	denied := 0
	for _, k := range rr.kinds {
		kinds = append(kinds, thousands(float64(k.n))+" × "+k.kind)
		if !k.allow {
			denied += k.n
		}
	}
	fmt.Fprintf(&b, "- **Questions**: %s distinct checks (key, resource type, id, tenant, action), about %s per key, over the 4 resource types and the actions each supports: %s; %s denied in all. A quarter of them name the key's own tenant, the rest none. Shuffled once (seed %d); the connections take the questions of the table in turn, so the sequence repeats every %s requests.\n",
		thousands(float64(rr.questions)), thousands(float64(rr.questions)/float64(rr.keys)), strings.Join(kinds, ", "), thousands(float64(denied)), rr.seed, thousands(float64(rr.questions)))
	fmt.Fprintf(&b, "- **Decision cache**: keygate runs with its decision cache as shipped (%s answers). Each question comes back after %s others", thousands(float64(rr.cacheSize)), thousands(float64(rr.questions-1)))
	if rr.questions > rr.cacheSize {
		b.WriteString(", more than the cache holds: a least-recently-used cache would answer none of them")
	}
	fmt.Fprintf(&b, "; replaying the sequence on a model of keygate's cache (%d shards, a random entry evicted to make room) answers %.0f%% of requests from it, and keygate evaluates the policy for the rest.\n",
		decisionShards, 100*rr.hitRate)
	fmt.Fprintf(&b, "- **Verified**: before measuring, every question was asked of OPA, of the floor with the policy and of each keygate: all gave the expected allow or deny, with the same reasons.\n")
	fmt.Fprintf(&b, "- **floor** decodes keygate's bodies; **%s** is the floor that also evaluates keygate's shipped policy for the key the body names, in process, with keygate's engine and its decision cache as shipped, the keys' scopes held in memory: the policy's cost with nothing around it (no key lookup, audit trail, middleware or logs); **OPA** (`opa run --server`) gets each key's scope in the input; **keygate** runs with `KEYGATE_LOG_LEVEL=warn`, `GODEBUG=gctrace=1` and a profiler listener (`KEYGATE_DEBUG_ADDR`) read only before and after each measurement; on Postgres, in a database of its own created for this workload.\n", policyFloorName)
	fmt.Fprintf(&b, "- The in-repo load generator, on the same machine: %d connections, each sending its next request when the previous answer arrives; %s of warm-up, %s measured. An error is a failed request, a non-200 or a wrong allow flag.\n\n",
		rr.conns, rr.warmup, rr.duration)
	if rr.profiled {
		fmt.Fprintf(&b, "keygate (SQLite) ran under the CPU or contention profiler over its measured window: its figures are not comparable with the others'.\n\n")
	}

	var rows [][]string
	for _, res := range rr.results() {
		rows = append(rows, []string{res.name, strconv.Itoa(res.conns), thousands(float64(res.ok)), thousands(res.rps()),
			fmtLatency(res.hist.quantile(0.5)), fmtLatency(res.hist.quantile(0.9)), fmtLatency(res.hist.quantile(0.99)),
			fmtLatency(res.hist.quantile(0.999)), thousands(float64(res.errors))})
	}
	b.WriteString(mdTable([]string{"target", "conns", "requests", "req/s", "p50", "p90", "p99", "p99.9", "errors"}, rows, "lrrrrrrrr"))
	b.WriteString("\n")
	for _, kg := range rr.keygates {
		res := kg.res
		fmt.Fprintf(&b, "- %s:", res.name)
		if rr.floor != nil {
			fmt.Fprintf(&b, " %.0f%% of the floor's throughput, p99 %.2f× the floor's (%s against %s);", 100*safeRatio(res, rr.floor),
				p99Ratio(res, rr.floor), fmtLatency(res.hist.quantile(0.99)), fmtLatency(rr.floor.hist.quantile(0.99)))
		}
		if rr.opa != nil {
			fmt.Fprintf(&b, " %.2f× OPA's throughput", safeRatio(res, rr.opa))
		}
		if rr.policy != nil {
			fmt.Fprintf(&b, "; %.0f%% of the throughput of the floor with the policy", 100*safeRatio(res, rr.policy))
		}
		b.WriteString("\n")
	}
	if rr.policy != nil && rr.floor != nil {
		fmt.Fprintf(&b, "- %s: %.0f%% of the floor's throughput, p99 %.2f× the floor's", policyFloorName, 100*safeRatio(rr.policy, rr.floor), p99Ratio(rr.policy, rr.floor))
		if rr.opa != nil {
			fmt.Fprintf(&b, "; %.2f× OPA's throughput", safeRatio(rr.policy, rr.opa))
		}
		b.WriteString("\n")
	}

	fmt.Fprintf(&b, "\nkeygate's process over each measurement, warm-up included (MemStats from the profiler listener, CPU time from /proc, collections from the GC trace), divided by the requests it answered, one decision each:\n\n")
	rows = nil
	for _, kg := range rr.keygates {
		u := kg.usage
		rows = append(rows, []string{kg.res.name, thousands(float64(u.requests)),
			fmt.Sprintf("%.0f µs", u.perRequest(float64(u.cpu.Microseconds()))),
			fmt.Sprintf("%.0f", u.perRequest(float64(u.mallocs))), thousands(u.perRequest(float64(u.bytes))),
			fmt.Sprintf("%d (%.1f/s)", u.gcs, float64(u.gcs)/u.span.Seconds()),
			fmt.Sprintf("%s (%.2f%%)", fmtLatency(u.gcPause), 100*u.gcPause.Seconds()/u.span.Seconds()),
			fmtLatency(u.gcMaxPause), fmt.Sprintf("%.0f%%", 100*ratio(u.gcCPU, u.cpu))})
	}
	b.WriteString(mdTable([]string{"target", "requests", "CPU / request", "allocations / request", "bytes / request", "GCs", "GC pauses (share of the time)", "longest GC pause", "GC CPU / keygate CPU"},
		rows, "lrrrrrrrr"))

	fmt.Fprintf(&b, "\nAudit trail: every denial keygate answered, verification and warm-up included, against the `%s` events in its database once it stopped and wrote what its writer held:\n\n", authz.AuditAuthzDenied)
	rows = nil
	for _, kg := range rr.keygates {
		verdict := "every denial audited"
		if !kg.audited() {
			verdict = "FAIL"
		}
		rows = append(rows, []string{kg.res.name, thousands(float64(kg.denials)), thousands(float64(kg.rows)), thousands(float64(kg.unsure)), verdict})
	}
	b.WriteString(mdTable([]string{"target", "denials answered", "rows written", "requests without a 200 answer", "result"}, rows, "lrrrl"))

	fmt.Fprintf(&b, "\nTargets:\n\n")
	rows = nil
	for _, t := range rr.targets() {
		row := []string{t.what, t.want, t.got, t.verdict}
		if rr.policy != nil {
			row = slices.Insert(row, 3, t.policy)
		}
		rows = append(rows, row)
	}
	if rr.policy != nil {
		b.WriteString(mdTable([]string{"target", "wanted", "measured", policyFloorName, "result"}, rows, "lrrrl"))
	} else {
		b.WriteString(mdTable([]string{"target", "wanted", "measured", "result"}, rows, "lrrl"))
	}
	if rr.floor != nil {
		fmt.Fprintf(&b, "\nThe load generator shares the %d cores with the server it measures: the floor's figures from the same run, %s req/s and %s at p99, are what this machine allows.\n",
			r.machine.cores, thousands(rr.floor.rps()), fmtLatency(rr.floor.hist.quantile(0.99)))
	}
	if missed := rr.policyMisses(); len(missed) > 0 {
		fmt.Fprintf(&b, "\nThe floor with the policy, which only decodes the request and evaluates the policy, itself misses %s: %s. No server that evaluates this policy for each question a cache does not answer can meet %s on this machine.\n",
			plural(len(missed), "this target", "these targets"), strings.Join(missed, "; "), plural(len(missed), "it", "them"))
	}
	return b.String()
}

// policyMisses are the targets the floor with the policy misses, each with
// its figure; none when it was not measured.
func (rr *realisticResult) policyMisses() []string {
	if rr.policy == nil || rr.floor == nil {
		return nil
	}
	var out []string
	if share := safeRatio(rr.policy, rr.floor); share < targetRealVsFloor {
		out = append(out, fmt.Sprintf("%.0f%% of the floor's throughput (wanted ≥ %.0f%%)", 100*share, 100*targetRealVsFloor))
	}
	if p99 := p99Ratio(rr.policy, rr.floor); p99 > targetRealP99 {
		out = append(out, fmt.Sprintf("p99 %.2f× the floor's (wanted ≤ %.1f×)", p99, targetRealP99))
	}
	if rr.opa != nil {
		if x := safeRatio(rr.policy, rr.opa); x < targetRealVsOPA {
			out = append(out, fmt.Sprintf("%.2f× OPA's throughput (wanted ≥ %.0f×)", x, targetRealVsOPA))
		}
	}
	return out
}

// plural is one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// results are the rows of the main table, in the order measured.
func (rr *realisticResult) results() []*result {
	var out []*result
	for _, res := range []*result{rr.floor, rr.policy, rr.opa} {
		if res != nil {
			out = append(out, res)
		}
	}
	for _, kg := range rr.keygates {
		out = append(out, kg.res)
	}
	return out
}

// targets checks the realistic targets against each keygate measured,
// beside the floor with the policy's own figure when it was measured.
func (rr *realisticResult) targets() []targetRow {
	var rows []targetRow
	verdict := func(pass bool) string { return map[bool]string{true: "pass", false: "FAIL"}[pass] }
	policy := func(figure func(*result) string) string {
		if rr.policy == nil {
			return ""
		}
		return figure(rr.policy)
	}
	share := func(res *result) string { return fmt.Sprintf("%.0f%%", 100*safeRatio(res, rr.floor)) }
	p99 := func(res *result) string { return fmt.Sprintf("%.2f×", p99Ratio(res, rr.floor)) }
	vsOPA := func(res *result) string { return fmt.Sprintf("%.2f×", safeRatio(res, rr.opa)) }
	for _, kg := range rr.keygates {
		name := kg.res.name
		if rr.floor != nil {
			rows = append(rows,
				targetRow{what: name + " throughput / floor", want: fmt.Sprintf("≥ %.0f%%", 100*targetRealVsFloor),
					got: share(kg.res), verdict: verdict(safeRatio(kg.res, rr.floor) >= targetRealVsFloor), policy: policy(share)},
				targetRow{what: name + " p99 / floor p99", want: fmt.Sprintf("≤ %.1f×", targetRealP99),
					got: p99(kg.res), verdict: verdict(p99Ratio(kg.res, rr.floor) <= targetRealP99), policy: policy(p99)})
		}
		if rr.opa != nil {
			rows = append(rows, targetRow{what: name + " throughput / OPA", want: fmt.Sprintf("≥ %.0f×", targetRealVsOPA),
				got: vsOPA(kg.res), verdict: verdict(safeRatio(kg.res, rr.opa) >= targetRealVsOPA), policy: policy(vsOPA)})
		}
		rows = append(rows, targetRow{what: name + " denials in the audit trail", want: "all",
			got: fmt.Sprintf("%s of %s", thousands(float64(kg.rows)), thousands(float64(kg.denials))), verdict: verdict(kg.audited())})
	}
	return rows
}

// auditFailure names every keygate whose audit trail does not hold its
// denials; nil when all do, or nothing was measured.
func (rr *realisticResult) auditFailure() error {
	if rr == nil {
		return nil
	}
	var errs []error
	for _, kg := range rr.keygates {
		if !kg.audited() {
			errs = append(errs, fmt.Errorf("%s answered %d denials (%d requests without a 200 answer) but its audit trail holds %d %s events",
				kg.res.name, kg.denials, kg.unsure, kg.rows, authz.AuditAuthzDenied))
		}
	}
	return errors.Join(errs...)
}

// p99Ratio is a's p99 over b's, 0 when b's is 0.
func p99Ratio(a, b *result) float64 {
	return ratio(a.hist.quantile(0.99), b.hist.quantile(0.99))
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// provenance says when, how and where a section was measured, as a
// section a run of its own writes into a page made by another run must.
func (r *report) provenance(what, load, loadEnd string) string {
	m := r.machine
	var b strings.Builder
	fmt.Fprintf(&b, "Measured on %s by `%s` (keygate %s) on %s, %d cores, %s, %s, Go %s, OPA %s",
		r.date.UTC().Format("2006-01-02 15:04 MST"), r.command, m.commit, m.cpu, m.cores, m.memory, m.kernel, m.goVer, m.opaVer)
	if m.postgres != "" {
		fmt.Fprintf(&b, ", PostgreSQL %s", m.postgres)
	}
	fmt.Fprintf(&b, ". Load average (1, 5, 15 min) when %s started: %s; when it ended: %s.\n\n", what, load, loadEnd)
	return b.String()
}

// spliceSection puts section (which starts with heading) in page in place
// of the section under heading, up to the next "## " heading; a page
// without one gets it at its end, an empty page a title first.
func spliceSection(page, heading, section string) string {
	section = strings.TrimRight(section, "\n") + "\n"
	if strings.TrimSpace(page) == "" {
		return "# Benchmarks\n\n" + section
	}
	start := -1
	if strings.HasPrefix(page, heading+"\n") {
		start = 0
	} else if i := strings.Index(page, "\n"+heading+"\n"); i >= 0 {
		start = i + 1
	}
	if start < 0 {
		return strings.TrimRight(page, "\n") + "\n\n" + section
	}
	rest := page[start+len(heading):]
	if end := strings.Index(rest, "\n## "); end >= 0 {
		return page[:start] + section + "\n" + rest[end+1:]
	}
	return page[:start] + section
}
