package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uptrace/bun/driver/pgdriver"
)

// keygateProc is the keygate under soak: `keygate serve`, built from this
// checkout, with a data folder of its own.
type keygateProc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:PORT
	debug  string // http://127.0.0.1:PORT of the profiler listener
	output *logWatch
	done   chan struct{}
	err    error // what Wait returned, once done is closed
}

// buildKeygate builds keygate into dir with the checkout's toolchain and
// module graph.
func buildKeygate(ctx context.Context, repo, dir string) (string, error) {
	bin := dir + "/keygate"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/keygate")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w\n%s", err, out)
	}
	return bin, nil
}

// startKeygate runs bin serve with env added to the harness's environment
// (less its own KEYGATE_* and OTEL_* settings) and waits until /readyz
// answers 200. The kernel kills it should the harness die first.
func startKeygate(ctx context.Context, bin string, env []string) (*keygateProc, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	debug, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	p := &keygateProc{base: "http://" + addr, debug: "http://" + debug, output: newLogWatch(), done: make(chan struct{})}
	// The harness stops keygate itself (stop), whatever becomes of ctx.
	p.cmd = exec.CommandContext(context.WithoutCancel(ctx), bin, "serve", "--addr", addr)
	p.cmd.Env = append(ownEnv(), append(env, "KEYGATE_DEBUG_ADDR="+debug)...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output // one writer: exec copies both from one goroutine
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start keygate: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(2 * time.Minute); ; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/readyz", nil)
		if err != nil {
			return nil, err
		}
		if res, err := client.Do(req); err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("keygate exited before it was ready: %w; its output ends:\n%s", p.err, p.output.tail())
		case <-ctx.Done():
			_, _ = p.stop(10 * time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, _ = p.stop(10 * time.Second)
			return nil, fmt.Errorf("keygate not ready after 2 minutes; its output ends:\n%s", p.output.tail())
		}
	}
}

func (p *keygateProc) pid() int { return p.cmd.Process.Pid }

// exited says how keygate ended, "" while it runs.
func (p *keygateProc) exited() string {
	select {
	case <-p.done:
		if p.err == nil {
			return "exit status 0"
		}
		return p.err.Error()
	default:
		return ""
	}
}

// stop sends SIGTERM and waits for keygate to exit, SIGKILL after grace.
// It returns how long the exit took and, when it was not clean, why.
func (p *keygateProc) stop(grace time.Duration) (time.Duration, error) {
	began := time.Now()
	select {
	case <-p.done:
		return 0, fmt.Errorf("it had already exited: %s", p.exited())
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return time.Since(began), fmt.Errorf("still running %s after SIGTERM; killed", grace)
	}
	took := time.Since(began)
	if p.err != nil {
		return took, fmt.Errorf("after SIGTERM: %w", p.err)
	}
	return took, nil
}

// token signs an admin JWT of tenant with `keygate token`.
func token(ctx context.Context, bin string, env []string, tenant string, ttl time.Duration) (string, error) {
	cmd := exec.CommandContext(ctx, bin, "token", "--tenant", tenant, "--user", "admin", "--role", "admin", "--token-ttl", ttl.String())
	cmd.Env = append(ownEnv(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("keygate token: %w: %s", err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// ownEnv is the harness's environment without settings that would change
// how keygate runs: it gets only what the harness sets, and Go's default
// garbage collector (the live heap is read from its goal).
func ownEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		for _, prefix := range []string{"KEYGATE_", "OTEL_", "GOGC=", "GOMEMLIMIT=", "GODEBUG="} {
			if strings.HasPrefix(kv, prefix) {
				return true
			}
		}
		return false
	})
}

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(ctx context.Context) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// logWatch reads keygate's output as it comes: it keeps the end of it,
// counts the lines that report a panic and, per message, the warnings and
// errors.
type logWatch struct {
	mu      sync.Mutex
	partial []byte
	last    []byte // the end of the output
	panics  []string
	levels  *byKind // "WARN msg"
}

func newLogWatch() *logWatch { return &logWatch{levels: newByKind(maxMessages, "(other messages)")} }

const tailBytes = 16 << 10

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = append(w.last, p...)
	if over := len(w.last) - tailBytes; over > 0 {
		w.last = append(w.last[:0], w.last[over:]...)
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 1<<20 { // no log line is this long
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

var (
	levelField = regexp.MustCompile(`\blevel=(WARN|ERROR)\b`)
	msgField   = regexp.MustCompile(`\bmsg=("(?:[^"\\]|\\.)*"|\S+)`)
)

// maxMessages bounds the distinct warnings and errors remembered.
const maxMessages = 20

func (w *logWatch) line(s string) {
	if isPanicLine(s) {
		if len(w.panics) < maxMessages {
			w.panics = append(w.panics, s)
		}
		return
	}
	lv := levelField.FindStringSubmatch(s)
	if lv == nil {
		return
	}
	msg := ""
	if m := msgField.FindStringSubmatch(s); m != nil {
		msg = strings.Trim(m[1], `"`)
	}
	w.levels.add(lv[1] + " " + msg)
}

// isPanicLine reports a line of a crash ("panic: …", "fatal error: …") or
// of a panic recovered and logged ("panic serving request").
func isPanicLine(s string) bool {
	return strings.HasPrefix(s, "fatal error: ") || strings.Contains(strings.ToLower(s), "panic")
}

func (w *logWatch) panicLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.panics...)
}

// messages are the warnings and errors logged, each with how often.
func (w *logWatch) messages() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.levels.list()
}

func (w *logWatch) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.last)
}

// pgDatabase is the database a Postgres soak creates and drops.
type pgDatabase struct {
	admin string // URL of the database it is created beside
	name  string
	url   string
}

func openPostgres(dsn string) *sql.DB {
	return sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(dsn)))
}

// createDatabase creates a database named for the run on the server
// adminURL names.
func createDatabase(ctx context.Context, adminURL string) (*pgDatabase, error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, errors.New("the Postgres URL does not parse")
	}
	d := &pgDatabase{admin: adminURL, name: "keygate_soak_" + strings.ToLower(rand.Text()[:8])}
	u.Path = "/" + d.name
	d.url = u.String()
	if err := d.exec(ctx, "CREATE DATABASE "+d.name); err != nil {
		return nil, fmt.Errorf("%w (is Postgres running? set -postgres-url or KEYGATE_SOAK_POSTGRES_URL)", err)
	}
	return d, nil
}

// drop removes the database, ending any session still on it; it runs even
// when the run was interrupted.
func (d *pgDatabase) drop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return d.exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
}

// exec runs one statement on the server, connected to the admin database.
func (d *pgDatabase) exec(ctx context.Context, statement string) error {
	db := openPostgres(d.admin)
	defer func() { _ = db.Close() }()
	if _, err := db.ExecContext(ctx, statement); err != nil {
		return fmt.Errorf("%s: %w", statement, err)
	}
	return nil
}

// postgresSize returns a reader of the database's size, and the handle to
// close after.
func postgresSize(dsn string) (func(context.Context) (int64, error), *sql.DB) {
	db := openPostgres(dsn)
	db.SetMaxOpenConns(1)
	return func(ctx context.Context) (int64, error) {
		var n int64
		err := db.QueryRowContext(ctx, "SELECT pg_database_size(current_database())").Scan(&n)
		return n, err
	}, db
}

// postgresVersion is the server's version and shared_buffers, for the
// report.
func postgresVersion(ctx context.Context, db *sql.DB) string {
	var version, buffers string
	if err := db.QueryRowContext(ctx, "SELECT current_setting('server_version'), current_setting('shared_buffers')").Scan(&version, &buffers); err != nil {
		return "unknown"
	}
	return fmt.Sprintf("PostgreSQL %s, shared_buffers %s, on this machine", version, buffers)
}
