// Command keygate-soak is the soak harness behind `make soak`. It builds
// keygate from this checkout, starts `keygate serve` on SQLite (or, with
// -postgres, on a Postgres database it creates and drops) with its profiler
// listener, and drives a mixed load for -duration as an operator would
// before a rollout: decisions over many keys and ids, bad keys, management
// churn, MCP sessions closed and abandoned, forward auth when keygate has
// it. Every -sample it reads keygate's resident size, goroutines, heap,
// open files and database size; at the end it fits a line through the
// samples after warm-up and fails when the live heap, the goroutines (net
// of MCP sessions) or the open files keep rising, or on any 5xx, unexpected
// answer or panic. It writes its figures to docs/soak.md.
//
//	go run ./cmd/keygate-soak [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keygate-soak:", err)
		}
		os.Exit(1)
	}
}

// defaultPostgresURL is the server a Postgres soak creates its database on.
const defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

type options struct {
	duration    time.Duration
	sample      time.Duration
	postgres    bool
	postgresURL string
	out         string
	binary      string

	rate       int
	workers    int
	keys       int
	badShare   float64
	batchShare float64
	forward    float64
	idSpace    int

	churnInterval time.Duration
	churnKeep     int
	mcpInterval   time.Duration
	mcpKeys       int
	abandonEvery  int
	idle          time.Duration

	limits limits
}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("keygate-soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long the traffic runs")
	fs.DurationVar(&o.sample, "sample", 5*time.Second, "time between two samples")
	fs.BoolVar(&o.postgres, "postgres", false, "run keygate on a Postgres database created for the run and dropped after, instead of SQLite")
	pgURL := defaultPostgresURL
	if v := os.Getenv("KEYGATE_SOAK_POSTGRES_URL"); v != "" {
		pgURL = v
	}
	fs.StringVar(&o.postgresURL, "postgres-url", pgURL, "Postgres server to create the soak database on (KEYGATE_SOAK_POSTGRES_URL)")
	fs.StringVar(&o.binary, "keygate", "", "a keygate binary to soak, such as a release build or another commit's; empty: build this checkout's")
	fs.StringVar(&o.out, "out", "docs/soak.md", "report file, relative to the repository root; the run replaces its database's section; empty: print only")
	fs.IntVar(&o.rate, "rate", 1000, "decision requests a second, at most (bad keys, batches and forward auth included)")
	fs.IntVar(&o.workers, "workers", 16, "decision requests in flight at most")
	fs.IntVar(&o.keys, "keys", 200, "keys the decisions are made with, each owning ids of its own")
	fs.Float64Var(&o.badShare, "bad-keys", 0.04, "share of decisions made with a malformed or unknown key")
	fs.Float64Var(&o.batchShare, "batches", 0.1, "share of decision requests that are batches")
	fs.Float64Var(&o.forward, "forward-auth", 0.1, "share of decision requests sent to /v1/forward-auth, when keygate has it")
	fs.IntVar(&o.idSpace, "ids", 5000, "ids per key and resource type the questions are drawn from")
	fs.DurationVar(&o.churnInterval, "churn", time.Second, "time between two rounds of management churn")
	fs.IntVar(&o.churnKeep, "churn-keys", 20, "churned keys alive at once; the oldest is deleted past it")
	fs.DurationVar(&o.mcpInterval, "mcp", 500*time.Millisecond, "time between two MCP sessions")
	fs.IntVar(&o.mcpKeys, "mcp-keys", 20, "keys the MCP sessions are opened with")
	fs.IntVar(&o.abandonEvery, "abandon", 3, "one MCP session in this many is left open for the idle timeout to close")
	fs.DurationVar(&o.idle, "session-idle-timeout", 30*time.Second, "KEYGATE_MCP_SESSION_IDLE_TIMEOUT for the run, short so that abandoned sessions expire within it")
	fs.Float64Var(&o.limits.heapMiB, "max-heap-slope", 1, "most live-heap growth after warm-up, MiB a minute")
	fs.Float64Var(&o.limits.goroutines, "max-goroutine-slope", 10, "most growth of goroutines net of MCP sessions after warm-up, a minute")
	fs.Float64Var(&o.limits.fds, "max-fd-slope", 5, "most growth of open file descriptors after warm-up, a minute")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.duration <= 0 || o.sample <= 0 || o.churnInterval <= 0 || o.mcpInterval <= 0 || o.idle < time.Second:
		return nil, errors.New("-duration, -sample, -churn and -mcp must be positive, -session-idle-timeout at least 1s")
	case o.rate < 1 || o.workers < 1 || o.keys < 2 || o.idSpace < 1 || o.churnKeep < 1 || o.abandonEvery < 1:
		return nil, errors.New("-rate, -workers, -ids, -churn-keys and -abandon must be at least 1, -keys at least 2")
	case o.mcpKeys < 1 || o.mcpKeys > o.keys:
		return nil, errors.New("-mcp-keys must be between 1 and -keys")
	case o.badShare < 0 || o.batchShare < 0 || o.forward < 0 || o.badShare+o.batchShare+o.forward > 1:
		return nil, errors.New("-bad-keys, -batches and -forward-auth are shares: not negative, at most 1 together")
	}
	return o, nil
}

// commandLine is how this run was started, for the report; an argument
// the shell would split or expand is quoted.
func commandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?") {
			quoted[i] = strconv.Quote(a)
		}
	}
	return strings.TrimSpace("go run ./cmd/keygate-soak " + strings.Join(quoted, " "))
}

// keygateModule is the module the harness must run in.
const keygateModule = "github.com/keygate/keygate"

// repoRoot is the folder of the main module, the keygate checkout the
// harness runs in.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}} {{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w (run keygate-soak inside the keygate repository)", err)
	}
	module, dir, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if module != keygateModule {
		return "", fmt.Errorf("run keygate-soak inside the keygate repository, not in %s", module)
	}
	return dir, nil
}

// errFailed ends a run whose verdict is a failure; the report says why.
var errFailed = errors.New("the soak failed; see the report")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	repo, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	s := &soak{opts: o, repo: repo, stderr: stderr,
		rep: &report{date: time.Now(), command: commandLine(args), machine: readMachine(ctx, repo), opts: o,
			warmup: warmupFor(o.duration, o.idle)}}
	if err := s.run(ctx); err != nil {
		return err
	}
	md := s.rep.markdown()
	fmt.Fprintln(stdout, md)
	if o.out != "" {
		path := o.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(repo, path)
		}
		old, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(path, []byte(page(string(old), intro(), s.rep.db, md)), 0o644); err != nil {
			return err
		}
		s.logf("wrote %s", path)
	}
	if !s.rep.verdict.passed() {
		return errFailed
	}
	return nil
}
