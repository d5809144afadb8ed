// Command keygate-bench is the benchmark harness behind `make bench`. It
// measures keygate's POST /v1/authorize on SQLite and on Postgres against
// OPA's own server making the same decisions and against a bare gin handler
// (the floor), each a separate process driven by the same in-repo load
// generator; with -scale it also seeds a million keys into Postgres and
// measures uncached authentication and the memory of 100,000 cached keys.
// Then, with -realistic (the default), the same targets answer a realistic
// workload: many keys with scopes of their own and a table of distinct
// questions, half denied, too many for a decision cache to answer most.
// It prints the results and writes them, with the machine's description, to
// docs/benchmarks.md.
//
//	go run ./cmd/keygate-bench [flags]
//	go run ./cmd/keygate-bench -realistic-only [flags]   (the realistic workload alone; rewrites its section)
//	go run ./cmd/keygate-bench floor --addr 127.0.0.1:PORT   (the floor server; the harness starts it)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/authz"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == "floor" {
		err = runFloor(ctx, os.Args[2:])
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		}
		os.Exit(1)
	}
}

// benchJWTSecret signs the management JWT of the bench admin; every keygate
// the harness starts uses it, so `keygate token` can sign for any of them.
const benchJWTSecret = "keygate-bench-jwt-secret-not-for-production-0123456789"

// benchEncryptionKey seals the (absent) upstream secrets of the benchmark's
// keygate processes; Postgres needs one, and every run may use the same.
const benchEncryptionKey = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// defaultPostgresURL is the local Postgres the harness creates its
// database on.
const defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

type options struct {
	conns       int
	warmup      time.Duration
	duration    time.Duration
	timeout     time.Duration
	postgres    bool
	postgresURL string
	scale       bool
	scaleKeys   int
	uncached    int
	scaleConns  int
	cacheKeys   int
	seedScope   int
	distinct    int
	denials     bool
	memLimit    string
	heapProfile string
	cpuProfile  string
	out         string

	limits   bool
	redisURL string

	realistic      bool
	realisticOnly  bool
	decisionLogs   bool
	decisionOnly   bool
	realKeys       int
	realQuestions  int
	realSeed       uint64
	realCPUProfile string
	realContention string
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("keygate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.conns, "conns", 32, "connections (concurrent callers) per target")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measurement")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per target")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout; a request past it is an error")
	fs.BoolVar(&o.postgres, "postgres", true, "also run keygate on Postgres (and the scale part)")
	pgURL := defaultPostgresURL
	if v := os.Getenv("KEYGATE_BENCH_POSTGRES_URL"); v != "" {
		pgURL = v
	}
	fs.StringVar(&o.postgresURL, "postgres-url", pgURL, "Postgres to create the benchmark database on (KEYGATE_BENCH_POSTGRES_URL)")
	fs.BoolVar(&o.scale, "scale", true, "seed -scale-keys keys into Postgres and measure uncached authentication and cache memory")
	fs.IntVar(&o.scaleKeys, "scale-keys", 1_000_000, "keys to seed for the scale part")
	fs.IntVar(&o.uncached, "uncached", 20_000, "requests with keys never used before, for uncached authentication")
	fs.IntVar(&o.scaleConns, "scale-conns", 8, "connections for the scale part")
	fs.IntVar(&o.cacheKeys, "cache-keys", 100_000, "distinct keys to warm into keygate's cache before reading its memory (also KEYGATE_KEY_CACHE_SIZE)")
	fs.IntVar(&o.seedScope, "seed-scope", 5, "entries in each scope list of a seeded key")
	fs.BoolVar(&o.denials, "denials", true, "put the two denials in the mix; without them keygate writes no audit event, which shows what recording refusals costs")
	fs.IntVar(&o.distinct, "distinct", 1, "distinct resource ids per kind of request in the mix; 1 repeats four requests, more keeps a decision cache from answering most of them")
	fs.StringVar(&o.memLimit, "memory-limit", "", "GOMEMLIMIT for keygate on Postgres (such as 170MiB); empty: Go's default, no limit")
	fs.StringVar(&o.cpuProfile, "cpu-profile", "", "save a CPU profile of keygate (SQLite) over its measured window of the cached mix to this file (-realistic-cpu-profile: of the realistic workload); profiling slows it, so its figures are not comparable (KEYGATE_DEBUG_ADDR)")
	fs.StringVar(&o.heapProfile, "heap-profile", "", "save a heap profile of keygate on Postgres, taken after warming -cache-keys keys, to this file (KEYGATE_DEBUG_ADDR)")
	fs.StringVar(&o.out, "out", "docs/benchmarks.md", "report file, relative to the repository root; empty: print only")
	fs.BoolVar(&o.limits, "limits", true, "also measure a key with a rate limit and credits, on SQLite, and with the rate limit counted in Redis (-redis-url)")
	redisURL := "redis://127.0.0.1:6379/14"
	if v, ok := os.LookupEnv("KEYGATE_BENCH_REDIS_URL"); ok {
		redisURL = v
	}
	fs.StringVar(&o.redisURL, "redis-url", redisURL, "Redis for the limited key's shared rate limit (KEYGATE_BENCH_REDIS_URL); empty: skip that measurement")
	fs.BoolVar(&o.realistic, "realistic", true, "also measure the realistic workload: many keys with scopes of their own, distinct questions, half denied, few answered from a cache")
	fs.BoolVar(&o.realisticOnly, "realistic-only", false, "measure the realistic workload alone and replace only its section of -out")
	fs.BoolVar(&o.decisionLogs, "decision-logs", true, "also measure keygate with its decision log off, on the console and posted over HTTP")
	fs.BoolVar(&o.decisionOnly, "decision-logs-only", false, "measure the decision logs alone and replace only their section of -out")
	fs.IntVar(&o.realKeys, "realistic-keys", 500, "keys of the realistic workload, each with a scope of its own (20 entries per list, 3 globs)")
	fs.IntVar(&o.realQuestions, "realistic-questions", 20_000, "distinct questions of the realistic workload, half denied, cycled by the load generator")
	fs.Uint64Var(&o.realSeed, "realistic-seed", 1, "seed of the realistic workload's scopes and questions")
	fs.StringVar(&o.realContention, "realistic-contention-profile", "", "save the mutex and block profiles of keygate (SQLite) over its measured window of the realistic workload to this path with .mutex and .block added, recording 1 in 5 contended locks and a wait per 10 µs blocked (KEYGATE_DEBUG_MUTEX_FRACTION, KEYGATE_DEBUG_BLOCK_RATE); its figures are then not comparable")
	fs.StringVar(&o.realCPUProfile, "realistic-cpu-profile", "", "save a CPU profile of keygate (SQLite) over its measured window of the realistic workload to this file; its figures are then not comparable")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.realistic = (o.realistic || o.realisticOnly) && !o.decisionOnly
	o.decisionLogs = (o.decisionLogs || o.decisionOnly) && !o.realisticOnly
	switch {
	case o.realisticOnly && o.decisionOnly:
		return nil, errors.New("-realistic-only and -decision-logs-only each measure one part; give one")
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.conns < 1 || o.scaleConns < 1:
		return nil, errors.New("-conns and -scale-conns must be at least 1")
	case o.duration <= 0 || o.warmup < 0 || o.timeout <= 0:
		return nil, errors.New("-duration and -timeout must be positive, -warmup not negative")
	case o.scale && o.postgres && (o.uncached < 1 || o.cacheKeys < 1 || o.uncached+o.cacheKeys+uncachedOne > o.scaleKeys):
		return nil, errors.New("-uncached and -cache-keys must be positive and together at most -scale-keys less 2,000")
	case o.heapProfile != "" && (!o.postgres || !o.scale):
		return nil, errors.New("-heap-profile is taken in the scale part: it needs -postgres and -scale")
	case o.seedScope < 1 || o.distinct < 1:
		return nil, errors.New("-seed-scope and -distinct must be at least 1")
	case o.realKeys < 1 || o.realQuestions < 1:
		return nil, errors.New("-realistic-keys and -realistic-questions must be at least 1")
	case o.realisticOnly && (o.cpuProfile != "" || o.heapProfile != ""):
		return nil, errors.New("-cpu-profile and -heap-profile are taken of the cached mix and the scale part; with -realistic-only, use -realistic-cpu-profile")
	case (o.realCPUProfile != "" || o.realContention != "") && !o.realistic:
		return nil, errors.New("-realistic-cpu-profile and -realistic-contention-profile need the realistic workload: drop -realistic=false")
	}
	return o, nil
}

// bench holds what every step of a run shares.
type bench struct {
	opts   *options
	repo   string
	tmp    string
	bins   binaries
	procs  *servers
	gen    loadGen
	stderr io.Writer

	debugAddr string // keygate on Postgres's profiler, with -heap-profile
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, format+"\n", args...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	opts, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	repo, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	procs := &servers{}
	defer procs.stopAll()

	b := &bench{opts: opts, repo: repo, tmp: tmp, procs: procs, stderr: stderr,
		gen: loadGen{conns: opts.conns, timeout: opts.timeout}}
	rep := &report{date: time.Now(), command: commandLine(args), machine: readMachine(ctx, repo),
		conns: opts.conns, warmup: opts.warmup, duration: opts.duration, mix: requestMix(opts.distinct, opts.denials), scope: describeScope(benchScope())}

	b.logf("building keygate and the OPA CLI")
	if b.bins, err = buildBinaries(ctx, repo, tmp); err != nil {
		return err
	}
	if !opts.realisticOnly && !opts.decisionOnly {
		if err := b.runMain(ctx, rep); err != nil {
			return err
		}
	}
	if opts.decisionLogs {
		if rep.decisionLogs, err = b.runDecisionLogs(ctx, rep.mix); err != nil {
			return err
		}
	}
	if opts.realistic {
		if rep.realistic, err = b.runRealistic(ctx, &rep.machine); err != nil {
			return err
		}
	}
	rep.machine.loadEnd = loadAverage()
	if err := b.writeReport(rep, stdout); err != nil {
		return err
	}
	// The figures are written either way; a keygate that lost a denial
	// fails the run.
	return rep.realistic.auditFailure()
}

// runMain measures every target in turn, one server under load at a time.
func (b *bench) runMain(ctx context.Context, rep *report) error {
	mix := rep.mix
	floor, err := b.procs.start(ctx, serverSpec{name: "floor", path: b.bins.floor, readyPath: "/healthz",
		args: func(addr string) []string { return []string{"floor", "--addr", addr} }})
	if err != nil {
		return err
	}
	opa, err := b.startOPA(ctx)
	if err != nil {
		return err
	}
	var kgEnv []string
	var debugAddr string
	if b.opts.cpuProfile != "" {
		if debugAddr, kgEnv, err = withProfiler(ctx, kgEnv); err != nil {
			return err
		}
	}
	kg, key, err := b.startKeygate(ctx, "sqlite", kgEnv)
	if err != nil {
		return err
	}
	if err := verify(ctx, kg.base, opa.base, key, mix); err != nil {
		return fmt.Errorf("keygate (SQLite) and OPA disagree: %w", err)
	}
	b.logf("keygate (SQLite) and OPA give the expected decisions with the same reasons")

	single := keygateBodies(key.Token, mix)
	if rep.floor, err = b.measure(ctx, workload{name: "floor (gin)", url: floor.base + "/v1/authorize",
		bodies: single, check: statusCheck}); err != nil {
		return err
	}
	floor.stop()
	if rep.opa, err = b.measure(ctx, workload{name: "OPA server", url: opa.base + "/v1/data/keygate/authz/decision",
		bodies: opaBodies(key, mix, time.Now()), check: allowCheck(opaAllowed, mixAllow(mix))}); err != nil {
		return err
	}
	profiled := b.profileWindow(ctx, debugAddr, windowProfile{"profile", b.opts.cpuProfile})
	if rep.sqlite, err = b.measure(ctx, workload{name: "keygate (SQLite)", url: kg.base + "/v1/authorize",
		bodies: single, check: allowCheck(keygateAllowed, mixAllow(mix))}); err != nil {
		return err
	}
	if err := profiled(); err != nil {
		return err
	}
	if b.opts.limits {
		if rep.limited, err = b.measureLimited(ctx, kg, "keygate (SQLite), key with a rate limit and credits", mix); err != nil {
			return err
		}
	}
	if rep.batch, err = b.measure(ctx, workload{name: fmt.Sprintf("keygate (SQLite), batch of %d", batchSize),
		url: kg.base + "/v1/authorize", bodies: [][]byte{batchBody(key.Token, mix)}, check: batchCheck(mix)}); err != nil {
		return err
	}
	if err := stopKeygate(kg); err != nil {
		return err
	}

	// The same with the decision cache off: every check is a policy
	// evaluation, as every request is for OPA.
	raw, rawKey, err := b.startKeygate(ctx, "sqlite-no-decision-cache", []string{"KEYGATE_DECISION_CACHE_SIZE=0"})
	if err != nil {
		return err
	}
	if rep.sqliteRaw, err = b.measure(ctx, workload{name: "keygate (SQLite), decision cache off", url: raw.base + "/v1/authorize",
		bodies: keygateBodies(rawKey.Token, mix), check: allowCheck(keygateAllowed, mixAllow(mix))}); err != nil {
		return err
	}
	if rep.batchRaw, err = b.measure(ctx, workload{name: fmt.Sprintf("keygate (SQLite), batch of %d, decision cache off", batchSize),
		url: raw.base + "/v1/authorize", bodies: [][]byte{batchBody(rawKey.Token, mix)}, check: batchCheck(mix)}); err != nil {
		return err
	}
	if err := stopKeygate(raw); err != nil {
		return err
	}
	if b.opts.limits {
		if err := b.runRedisLimited(ctx, rep); err != nil {
			return err
		}
	}

	if b.opts.postgres {
		if err := b.runPostgres(ctx, rep, opa); err != nil {
			return err
		}
	}
	return nil
}

// runPostgres measures keygate on a fresh Postgres database, seeded first
// with -scale, and then the scale part. keygate stops before the database
// is dropped, whatever happens.
func (b *bench) runPostgres(ctx context.Context, rep *report, opa *server) (err error) {
	db, env, err := b.migratedDatabase(ctx)
	if err != nil {
		return err
	}
	defer dropDatabase(ctx, db, &err)
	var seeded *seedStats
	if b.opts.scale {
		b.logf("seeding %s keys into Postgres", thousands(float64(b.opts.scaleKeys)))
		if seeded, err = seedKeys(ctx, db.url, b.opts.scaleKeys, b.opts.seedScope, b.stderr); err != nil {
			return err
		}
		b.logf("  seeded in %s, VACUUM ANALYZE %s", seeded.copyTime.Round(100*time.Millisecond), seeded.vacuumTime.Round(100*time.Millisecond))
	}
	if rep.machine.postgres, err = postgresInfo(ctx, db.url); err != nil {
		return err
	}

	kgEnv := env
	if b.opts.memLimit != "" {
		kgEnv = append(slices.Clip(kgEnv), "GOMEMLIMIT="+b.opts.memLimit)
	}
	if b.opts.heapProfile != "" {
		if b.debugAddr, kgEnv, err = withProfiler(ctx, kgEnv); err != nil {
			return err
		}
	}
	if seeded != nil {
		// One line per GC on stderr, so the scale part can tell the live
		// heap from the garbage the resident size also holds.
		kgEnv = append(slices.Clip(kgEnv), "GODEBUG=gctrace=1")
	}
	kg, key, err := b.startKeygate(ctx, "postgres", kgEnv)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopKeygate(kg)) }()
	if err := verify(ctx, kg.base, opa.base, key, rep.mix); err != nil {
		return fmt.Errorf("keygate (Postgres) and OPA disagree: %w", err)
	}
	if rep.postgres, err = b.measure(ctx, workload{name: "keygate (Postgres)", url: kg.base + "/v1/authorize",
		bodies: keygateBodies(key.Token, rep.mix), check: allowCheck(keygateAllowed, mixAllow(rep.mix))}); err != nil {
		return err
	}
	if seeded != nil {
		if rep.scale, err = b.runScale(ctx, kg, seeded); err != nil {
			return err
		}
	}
	return nil
}

// migratedDatabase creates a Postgres database for the run and migrates it
// with `keygate migrate up`; it returns the database and the setting that
// points keygate at it. The caller drops it with dropDatabase.
func (b *bench) migratedDatabase(ctx context.Context) (db *pgDatabase, env []string, err error) {
	if db, err = createDatabase(ctx, b.opts.postgresURL); err != nil {
		return nil, nil, err
	}
	env = []string{"KEYGATE_DATABASE_URL=" + db.url}
	if _, err := runCommand(ctx, b.bins.keygate, env, "migrate", "up"); err != nil {
		dropDatabase(ctx, db, &err)
		return nil, nil, err
	}
	return db, env, nil
}

// dropDatabase drops db, even when ctx has ended, and adds any failure to
// *err.
func dropDatabase(ctx context.Context, db *pgDatabase, err *error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	*err = errors.Join(*err, db.drop(dctx))
}

// windowProfile is a profile of keygate's debug listener taken over a
// measured window: its name under /debug/pprof/ (profile: CPU; mutex and
// block: what was recorded in the window) and the file it is saved to.
type windowProfile struct{ name, path string }

// profileWindow takes the profiles of the measured window of the
// measurement about to start (after its warm-up), each saved to its path;
// the function returned waits for them. Without a profiler listener, or for
// a profile without a path, it does nothing.
func (b *bench) profileWindow(ctx context.Context, debugAddr string, profiles ...windowProfile) func() error {
	profiled := make(chan error, len(profiles))
	taken := 0
	for _, p := range profiles {
		if debugAddr == "" || p.path == "" {
			continue
		}
		taken++
		go func() {
			select {
			case <-time.After(b.opts.warmup):
			case <-ctx.Done():
				profiled <- ctx.Err()
				return
			}
			url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", debugAddr, p.name, max(1, int(b.opts.duration.Seconds())))
			if err := saveProfile(ctx, url, p.path); err != nil {
				profiled <- fmt.Errorf("%s profile: %w", p.name, err)
				return
			}
			b.logf("  %s profile saved to %s", p.name, p.path)
			profiled <- nil
		}()
	}
	return func() error {
		var errs []error
		for range taken {
			errs = append(errs, <-profiled)
		}
		return errors.Join(errs...)
	}
}

// measure runs one timed measurement and logs its outcome. Errors do not
// stop the run; the report shows them beside the figures they affect.
func (b *bench) measure(ctx context.Context, w workload) (*result, error) {
	b.logf("measuring %s: %s warm-up, %s, %d connections", w.name, b.opts.warmup, b.opts.duration, b.opts.conns)
	res, err := b.gen.runTimed(ctx, w, b.opts.warmup, b.opts.duration)
	if err != nil {
		return nil, err
	}
	b.logResult(res)
	return res, nil
}

func (b *bench) logResult(res *result) {
	b.logf("  %s req/s, p50 %s, p90 %s, p99 %s, %d errors", thousands(res.rps()),
		fmtLatency(res.hist.quantile(0.5)), fmtLatency(res.hist.quantile(0.9)), fmtLatency(res.hist.quantile(0.99)), res.errors)
	if res.firstErr != "" {
		b.logf("  first error: %s", res.firstErr)
	}
}

// startOPA runs the pinned OPA CLI as a server over the repository's
// policies (the .rego files only, no tests).
func (b *bench) startOPA(ctx context.Context) (*server, error) {
	policies, err := filepath.Glob(filepath.Join(b.repo, "policies", "*.rego"))
	if err != nil || len(policies) == 0 {
		return nil, fmt.Errorf("no policies/*.rego under %s", b.repo)
	}
	return b.procs.start(ctx, serverSpec{name: "OPA", path: b.bins.opa, readyPath: "/health",
		args: func(addr string) []string {
			return append([]string{"run", "--server", "--addr", addr, "--log-level", "error"}, policies...)
		}})
}

// startKeygate runs keygate serve with a data folder of its own, signs an
// admin JWT with `keygate token` and creates the bench key over the API.
func (b *bench) startKeygate(ctx context.Context, name string, env []string) (*server, *createdKey, error) {
	kg, jwt, err := b.launchKeygate(ctx, name, env, nil)
	if err != nil {
		return nil, nil, err
	}
	key, err := createKey(ctx, kg.base, jwt, "bench-key", benchScope())
	if err != nil {
		return nil, nil, err
	}
	return kg, key, nil
}

// launchKeygate runs keygate serve with a data folder of its own (its
// SQLite database, unless env names another) and returns it with an admin
// JWT of the bench tenant, signed with `keygate token`. watch, when set,
// also receives the process's output.
func (b *bench) launchKeygate(ctx context.Context, name string, env []string, watch io.Writer) (*server, string, error) {
	dataDir := b.dataDir(name)
	env = append([]string{
		"KEYGATE_JWT_SECRET=" + benchJWTSecret,
		"KEYGATE_ENCRYPTION_KEY=" + benchEncryptionKey,
		"KEYGATE_LOG_LEVEL=warn",
		"KEYGATE_KEY_CACHE_SIZE=" + strconv.Itoa(b.opts.cacheKeys),
	}, env...)
	kg, err := b.procs.start(ctx, serverSpec{name: "keygate (" + name + ")", path: b.bins.keygate, readyPath: "/readyz", env: env, watch: watch,
		args: func(addr string) []string { return []string{"serve", "--addr", addr, "--data-dir", dataDir} }})
	if err != nil {
		return nil, "", err
	}
	jwt, err := runCommand(ctx, b.bins.keygate, env, "token", "--tenant", benchTenant, "--user", benchUser, "--role", "admin")
	if err != nil {
		return nil, "", err
	}
	return kg, jwt, nil
}

// dataDir is the data folder of the keygate named name.
func (b *bench) dataDir(name string) string { return filepath.Join(b.tmp, name) }

// withProfiler gives a keygate a profiler listener of its own: its address,
// and env with the setting added.
func withProfiler(ctx context.Context, env []string) (string, []string, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return "", nil, err
	}
	return addr, append(slices.Clip(env), "KEYGATE_DEBUG_ADDR="+addr), nil
}

// stopKeygate stops a keygate gracefully and fails the run if it dropped
// audit events: its figures would then count work it did not do.
func stopKeygate(kg *server) error {
	kg.stop()
	if out := kg.output.String(); strings.Contains(out, "audit events were dropped") || strings.Contains(out, "audit events dropped") {
		return fmt.Errorf("%s dropped audit events under load; its output ends:\n%s", kg.name, out)
	}
	return nil
}

// repoRoot is the folder of the go.mod the harness runs in.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run keygate-bench inside the keygate repository")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "keygate")); err != nil {
		return "", fmt.Errorf("%s is not the keygate repository: %w", root, err)
	}
	return root, nil
}

// postgresInfo returns the server's version and shared_buffers.
func postgresInfo(ctx context.Context, dsn string) (string, error) {
	db := openPG(dsn)
	defer func() { _ = db.Close() }()
	var version, buffers string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version'), current_setting('shared_buffers')").Scan(&version, &buffers); err != nil {
		return "", fmt.Errorf("read the Postgres version: %w", err)
	}
	return fmt.Sprintf("%s, shared_buffers %s, on this machine", version, buffers), nil
}

// describeScope says what the bench key's scope holds, for the report.
func describeScope(s authz.Scope) string {
	data, err := json.Marshal(s)
	if err != nil {
		return "unknown"
	}
	globs := 0
	for _, id := range s.FlowIDs {
		if strings.Contains(id, "*") {
			globs++
		}
	}
	return fmt.Sprintf("%d entries in each of the 4 scope lists, the last %d of each globs (such as `%s` and `%s`), %d bytes of JSON",
		len(s.FlowIDs), globs, s.FlowIDs[len(s.FlowIDs)-globs], s.MCPToolIDs[len(s.MCPToolIDs)-1], len(data))
}

// commandLine is how this run was started, for the report.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./cmd/keygate-bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
