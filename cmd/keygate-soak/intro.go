package main

// intro opens docs/soak.md: what a soak does and how it is judged. The
// sections after it are written by runs, one per database.
func intro() string {
	return `# Soak

Written by ` + "`make soak`" + ` (` + "`go run ./cmd/keygate-soak`" + `); each run replaces its database's
section below. A soak shows that keygate runs for weeks: its memory, goroutines and open files
stay flat under the traffic of a busy deployment, and nothing fails along the way.

## How to run it

` + "```sh" + `
make soak                                # 10 minutes on SQLite
make soak SOAK_DURATION=3m               # shorter
make soak SOAK_DB=postgres               # on a Postgres database created for the run, dropped after
go run ./cmd/keygate-soak -h             # every knob: rate, shares, intervals, limits
` + "```" + `

Postgres is ` + "`postgres://postgres@127.0.0.1:5432`" + ` unless ` + "`KEYGATE_SOAK_POSTGRES_URL`" + ` or
` + "`-postgres-url`" + ` says otherwise. The soak is not part of ` + "`make test`" + `: it takes minutes and wants
a quiet machine. It exits 1 when the verdict is a failure, after writing the report.

## What it does

It builds keygate from the checkout and runs ` + "`keygate serve`" + ` with a data folder of its own,
the profiler listener (` + "`KEYGATE_DEBUG_ADDR`" + `), ` + "`KEYGATE_MCP_ALLOWED_NETWORKS=127.0.0.0/8`" + ` (so keygate
reaches the harness's upstream MCP server), ` + "`KEYGATE_TRUSTED_PROXIES=127.0.0.1`" + `, an encryption key
and ` + "`KEYGATE_MCP_SESSION_IDLE_TIMEOUT=30s`" + ` (the default is 10 minutes; short here so that
abandoned sessions expire within the run). Then, all at once, for the duration:

- **Decisions**: up to 1,000 requests a second to ` + "`/v1/authorize`" + ` from 16 workers, over 200 keys
  created through the API. Each key's scope owns a family of ids (` + "`agent-17-*`" + `, ` + "`flow-17-*`" + `, …);
  questions draw one of 5,000 ids per key and type, four in five the key's own (allowed) and one
  in five another key's (denied), so millions of distinct questions keep the decision cache
  churning. One request in ten is a batch of 10 checks. Every answer is checked.
- **Bad keys**: 4% of the decisions carry a malformed or an unknown key. They come through
  ` + "`X-Forwarded-For`" + ` (believed from 127.0.0.1), as from a proxy: seven in eight from a pool of 1,000
  addresses, each well within its failed-authentication budget (20, then 1 a second), and one in
  eight from a single noisy address that goes past it. A bad key must be answered ` + "`KEY_INVALID`" + `,
  or 429 once its address is past the budget; both are expected, and 429s are counted apart.
  Good keys come from 127.0.0.1 itself, which never fails, so a 429 on a good key is unexpected.
- **Forward auth**: when keygate answers ` + "`/v1/forward-auth`" + ` (probed at the start), one request in
  ten goes there instead, with ` + "`X-Forwarded-Method`" + ` and ` + "`X-Forwarded-Uri`" + `: 200 when allowed, 403 when
  not. Without it the report says it was skipped.
- **Management churn**, every second: a key created and used; another disabled (refused with
  ` + "`KEY_DISABLED`" + `), then enabled with a new name and a wider scope (the new id allowed at once);
  one rotated when keygate can (probed at the start) and its new token used; past 20 churned keys
  the oldest deleted and its token refused with ` + "`KEY_INVALID`" + `; the key list and the audit trail read.
- **MCP sessions**, two a second, through keygate's ` + "`/mcp`" + ` to an upstream MCP server inside the
  harness (the official Go SDK), registered through the API with a header keygate seals: two in
  three with the SDK's client (event stream included), listing the tools, calling an allowed one and
  a denied one, then closing the session; one in three with plain requests (initialize, list, call)
  and then abandoned without a DELETE, for the idle timeout to close.

Every 5 seconds it samples keygate: resident size (` + "`/proc/PID/status`" + `), open file descriptors
(` + "`/proc/PID/fd`" + `), goroutines (` + "`/debug/pprof/goroutine?debug=1`" + `), the heap (the MemStats that end
` + "`/debug/pprof/heap?debug=1&gc=1`" + `, taken right after a forced collection), the database's size (the
SQLite files, or ` + "`pg_database_size`" + `), the requests since the last sample with their 5xx,
unexpected answers and transport errors, and the decisions' median and 99th-percentile latency.

The **live heap** is what the forced collection marked live, read from the goal it set:
with Go's default ` + "`GOGC=100`" + ` and no memory limit, ` + "`NextGC`" + ` is twice the marked heap plus the
stacks and globals, so the live heap is (` + "`NextGC`" + ` − ` + "`StackInuse`" + `) / 2 (half the globals, a
constant, stay in). ` + "`HeapAlloc`" + ` and ` + "`HeapInuse`" + ` are shown too, but not judged: they are read once the
profile is written, so they also hold what writing it allocated (its records and text, which grow
over a run as the profile gathers stacks) and what the traffic allocated meanwhile. The soak
therefore runs keygate with Go's default collector settings: it drops ` + "`GOGC`" + `, ` + "`GOMEMLIMIT`" + ` and
` + "`GODEBUG`" + `, like every ` + "`KEYGATE_*`" + ` setting, from the environment it passes on. Reading the heap profile
costs keygate a collection and some tens of milliseconds every 5 seconds (the report's "read ms").

## How it is judged

The first fifth of the run is warm-up (at least the session idle timeout and 10 seconds more):
caches fill, and abandoned sessions start to expire as fast as they are abandoned. Over the
samples after it, a least-squares line is fitted to each figure. The run **fails** when

- the live heap rises more than **1 MiB a minute**,
- goroutines, net of MCP sessions, rise more than **10 a minute**,
- open file descriptors rise more than **5 a minute**,
- any answer has a 5xx status, any answer is not the expected one, any request gets no answer,
- keygate's output reports a panic, keygate exits on its own, or it does not exit cleanly on SIGTERM.

Goroutines are judged net of MCP sessions inside their idle timeout, because such a session is
work in progress, not a leak: each open session holds two goroutines (the SDK's reader of its
messages and keygate's session limiter waiting for its end), which the harness finds by their
stacks in the goroutine profile; the limiter's waits are also the count of sessions open. The
harness knows which sessions it is using and when it left each abandoned one, so it expects that
many open (allowing 5 seconds past the idle timeout); it subtracts the goroutines of at most that
many, and those of sessions open beyond them, which should have been closed, stay in the count and
make it rise. Resident
size, heap in use, all goroutines and the database's size are fitted and shown, not judged: the
resident size follows the heap with a lag the runtime decides, and the database grows with the
audit trail by design (every denial is a row, kept for ` + "`KEYGATE_AUDIT_RETENTION`" + `).

The limits are flags (` + "`-max-heap-slope`" + `, ` + "`-max-goroutine-slope`" + `, ` + "`-max-fd-slope`" + `). A 10-minute run
fits about 96 samples over 8 minutes; the standard error of each slope is shown beside it. On a
busy machine, figures jitter: judge a run by its slopes and their errors, and compare runs made on
the same machine.
`
}
