package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// binaries are the programs the harness builds once per run, so that no
// server is measured through `go run` or `go tool` and each runs the code
// go.mod pins.
type binaries struct {
	keygate string
	opa     string
	floor   string // this harness itself, in its floor mode
}

// buildBinaries builds keygate and the OPA CLI into dir, with the same
// toolchain and module graph as the rest of the repository.
func buildBinaries(ctx context.Context, repo, dir string) (binaries, error) {
	self, err := os.Executable()
	if err != nil {
		return binaries{}, fmt.Errorf("find the harness binary: %w", err)
	}
	b := binaries{keygate: filepath.Join(dir, "keygate"), opa: filepath.Join(dir, "opa"), floor: self}
	for _, build := range [][]string{
		{"build", "-o", b.keygate, "./cmd/keygate"},
		{"build", "-o", b.opa, "github.com/open-policy-agent/opa"},
	} {
		cmd := exec.CommandContext(ctx, "go", build...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return binaries{}, fmt.Errorf("go %s: %w\n%s", strings.Join(build, " "), err, out)
		}
	}
	return b, nil
}

// server is one process the harness started, listening on a loopback port.
type server struct {
	name   string
	base   string // http://127.0.0.1:PORT
	cmd    *exec.Cmd
	cancel context.CancelFunc
	done   chan struct{}
	err    error       // what Wait returned, once done is closed
	output *tailWriter // the end of its stdout and stderr, for error messages
}

// serverSpec says how to start a server; args receives the listen address.
type serverSpec struct {
	name      string
	path      string
	args      func(addr string) []string
	env       []string  // added to a copy of the harness's environment without KEYGATE_* and OTEL_*
	readyPath string    // answers 200 once the server serves
	watch     io.Writer // when set, also receives the process's output
}

// startServer runs spec on a free loopback port and waits until it is
// ready. The process gets SIGTERM when stopped, SIGKILL 10s later, and
// SIGKILL from the kernel should the harness itself die first.
func startServer(ctx context.Context, spec serverSpec) (*server, error) {
	addr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cmd := exec.CommandContext(pctx, spec.path, spec.args(addr)...)
	cmd.Env = append(cleanEnv(), spec.env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s := &server{name: spec.name, base: "http://" + addr, cmd: cmd, cancel: cancel,
		done: make(chan struct{}), output: &tailWriter{max: 16 << 10}}
	var out io.Writer = s.output
	if spec.watch != nil {
		out = io.MultiWriter(s.output, spec.watch)
	}
	cmd.Stdout, cmd.Stderr = out, out // one writer: exec writes it from one goroutine
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(ctx, spec.readyPath, time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls path until it answers 200, the process exits or the
// timeout passes.
func (s *server) waitReady(ctx context.Context, path string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
		if err != nil {
			return err
		}
		if res, err := client.Do(req); err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			exit := cmp.Or(s.err, errors.New("exit status 0"))
			return fmt.Errorf("%s exited before it was ready: %w; its output ends:\n%s", s.name, exit, s.output)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; its output ends:\n%s", s.name, timeout, s.output)
		}
	}
}

// pid is the server's process id, for reading its memory from /proc.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server and waits for it; stopping twice is harmless.
func (s *server) stop() {
	s.cancel()
	<-s.done
}

// servers remembers every server started, so that each is stopped when the
// run ends, however it ends.
type servers struct {
	mu   sync.Mutex
	list []*server
}

func (ss *servers) start(ctx context.Context, spec serverSpec) (*server, error) {
	s, err := startServer(ctx, spec)
	if err != nil {
		return nil, err
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.list = append(ss.list, s)
	return s, nil
}

func (ss *servers) stopAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, s := range ss.list {
		s.stop()
	}
	ss.list = nil
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(ctx context.Context) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// cleanEnv is the harness's environment without settings that would change
// how keygate or OPA run: the servers get only what the harness sets.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// runCommand runs a short command (keygate token, keygate migrate) and
// returns its standard output.
func runCommand(ctx context.Context, path string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(cleanEnv(), env...)
	var stderr tailWriter
	stderr.max = 4 << 10
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", fmt.Errorf("%s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, &stderr)
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
