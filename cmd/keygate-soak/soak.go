package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// soakJWTSecret signs the soak tenant's admin JWT.
const soakJWTSecret = "keygate-soak-jwt-secret-not-for-production-abcdefghij"

// soakEncryptionKey seals the upstream's header at rest (Postgres needs a
// key; SQLite gets the same).
const soakEncryptionKey = "soak:a2V5Z2F0ZS1zb2FrLWVuY3J5cHRpb24ta2V5LTMyYnk="

// soakTenant is the tenant every key and the upstream belong to.
const soakTenant = "soak"

// soak is one run.
type soak struct {
	opts   *options
	repo   string
	stderr io.Writer
	rep    *report

	// Found by setUp.
	admin   *admin
	forward bool // keygate answers /v1/forward-auth
	rotate  bool // keygate rotates keys
}

func (s *soak) logf(format string, args ...any) { fmt.Fprintf(s.stderr, format+"\n", args...) }

// run sets keygate up, drives the traffic, samples and judges; the report
// is filled in as it goes. An error means the run could not be made; a
// failed verdict is not an error here.
func (s *soak) run(ctx context.Context) (err error) {
	o := s.opts
	tmp, err := os.MkdirTemp("", "keygate-soak-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(tmp)) }()
	bin := o.binary
	if bin == "" {
		s.logf("building keygate")
		if bin, err = buildKeygate(ctx, s.repo, tmp); err != nil {
			return err
		}
	}
	dataDir := filepath.Join(tmp, "data")
	env := []string{
		"KEYGATE_DATA_DIR=" + dataDir,
		"KEYGATE_JWT_SECRET=" + soakJWTSecret,
		"KEYGATE_ENCRYPTION_KEY=" + soakEncryptionKey,
		"KEYGATE_LOG_LEVEL=warn",
		"KEYGATE_MCP_ALLOWED_NETWORKS=127.0.0.0/8",
		"KEYGATE_TRUSTED_PROXIES=127.0.0.1",
		"KEYGATE_MCP_SESSION_IDLE_TIMEOUT=" + o.idle.String(),
	}
	var dbSize func(context.Context) (int64, error)
	if o.postgres {
		s.rep.db = "Postgres"
		db, err := createDatabase(ctx, o.postgresURL)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, db.drop(ctx)) }()
		env = append(env, "KEYGATE_DATABASE_URL="+db.url)
		size, handle := postgresSize(db.url)
		defer func() { _ = handle.Close() }()
		dbSize = size
		s.rep.dbInfo = postgresVersion(ctx, handle)
	} else {
		s.rep.db = "SQLite"
		s.rep.dbInfo = "SQLite, the default, in a data folder of the run's own"
		dbSize = func(context.Context) (int64, error) { return sqliteSize(filepath.Join(dataDir, "keygate.db")) }
	}

	up, err := startUpstream(ctx)
	if err != nil {
		return err
	}
	defer up.close()
	s.logf("starting keygate (%s)", s.rep.db)
	kg, err := startKeygate(ctx, bin, env)
	if err != nil {
		return err
	}
	defer func() {
		if kg.exited() == "" {
			_, _ = kg.stop(10 * time.Second)
		}
	}()
	x, keys, err := s.setUp(ctx, bin, env, kg, up)
	if err != nil {
		return err
	}
	samples, ran, err := s.drive(ctx, x, kg, keys, dbSize)
	if err != nil {
		return err
	}

	out := outcome{exited: kg.exited()}
	if out.exited == "" {
		took, err := kg.stop(time.Minute)
		s.rep.stopTook = took
		if err != nil {
			out.stopFailure = err.Error()
		}
	}
	s.rep.machine.loadEnd = loadAverage()
	out.totals, _, _ = x.tally.take()
	s.rep.panics = kg.output.panicLines()
	out.panics = len(s.rep.panics)
	s.rep.samples, s.rep.ran, s.rep.outcome = samples, ran, out
	s.rep.problems, s.rep.messages = x.tally.examples(), kg.output.messages()
	s.rep.verdict = judge(samples, s.rep.warmup, withLimits(o.limits), out)
	return nil
}

// setUp registers the upstream, creates the decision keys and finds out
// whether keygate rotates keys and answers forward auth.
func (s *soak) setUp(ctx context.Context, bin string, env []string, kg *keygateProc, up *upstream) (*exchanger, []soakKey, error) {
	o := s.opts
	jwt, err := token(ctx, bin, env, soakTenant, o.duration+time.Hour)
	if err != nil {
		return nil, nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = o.workers + 16
	x := &exchanger{client: &http.Client{Transport: transport, Timeout: 30 * time.Second}, tally: newTally()}
	a := &admin{client: x.client, base: kg.base, jwt: jwt}
	if err := up.register(ctx, a); err != nil {
		return nil, nil, err
	}
	s.logf("creating %d keys", o.keys)
	keys := make([]soakKey, o.keys)
	errs := make([]error, o.keys)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				keys[i], errs[i] = a.createKey(ctx, fmt.Sprintf("soak-%03d", i), i)
			}
		})
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	rotate, err := probeRotation(ctx, a)
	if err != nil {
		return nil, nil, err
	}
	s.rep.rotation = "not in this build (POST /api/v1/api-keys/{id}/rotate answers 404); skipped"
	if rotate {
		s.rep.rotation = "one key rotated every churn round"
	}
	forward, err := probeForwardAuth(ctx, x, kg.base, keys[0])
	if err != nil {
		return nil, nil, err
	}
	s.rep.forward = "not in this build (/v1/forward-auth answers 404); skipped"
	if forward {
		s.rep.forward = fmt.Sprintf("%.0f%% of the decision requests", o.forward*100)
	}
	s.logf("keygate (pid %d) serves %s, its profiler %s/debug/pprof/; key rotation: %v, forward auth: %v", kg.pid(), kg.base, kg.debug, rotate, forward)
	s.forward, s.rotate, s.admin = forward, rotate, a
	return x, keys, nil
}

// drive runs the traffic for the duration, sampling keygate, and returns
// the samples and how long the traffic ran. It ends early when keygate
// exits or ctx ends (then with ctx's error).
func (s *soak) drive(ctx context.Context, x *exchanger, kg *keygateProc, keys []soakKey, dbSize func(context.Context) (int64, error)) ([]sample, time.Duration, error) {
	o := s.opts
	load, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() {
		(&decisionLoad{x: x, base: kg.base, keys: keys, forward: s.forward,
			mix: decisionMix{rate: o.rate, workers: o.workers, badShare: o.badShare, batchShare: o.batchShare, forwardAuth: o.forward, idSpace: o.idSpace}}).run(load, ctx)
	})
	wg.Go(func() {
		(&churn{x: x, admin: s.admin, rotate: s.rotate, interval: o.churnInterval, keep: o.churnKeep, owner: o.keys,
			rng: mrand.New(mrand.NewPCG(7, uint64(time.Now().UnixNano())))}).run(load, ctx)
	})
	sessions := &sessionLoad{x: x, endpoint: kg.base + "/mcp", keys: keys[:o.mcpKeys], interval: o.mcpInterval, abandonEvery: o.abandonEvery, idle: o.idle, now: time.Now}
	wg.Go(func() { sessions.run(load, ctx) })
	p := &prober{pid: kg.pid(), debugBase: kg.debug, client: &http.Client{Timeout: 30 * time.Second}, dbSize: dbSize}
	s.logf("soaking for %s (warm-up %s), a sample every %s", o.duration, s.rep.warmup, o.sample)

	began := time.Now()
	tick := time.NewTicker(o.sample)
	defer tick.Stop()
	var samples []sample
	var prev counts
	var prevAt time.Duration
	failures := 0
	for time.Since(began) < o.duration && kg.exited() == "" {
		select {
		case <-ctx.Done():
			stopLoad()
			wg.Wait()
			return nil, 0, ctx.Err()
		case <-tick.C:
		}
		smp, err := p.read(ctx)
		if err != nil {
			if kg.exited() != "" {
				break
			}
			if failures++; failures >= 3 {
				stopLoad()
				wg.Wait()
				return nil, 0, fmt.Errorf("reading keygate failed 3 times in a row: %w", err)
			}
			s.logf("  sample skipped: %v", err)
			continue
		}
		failures = 0
		total, p50, p99 := x.tally.take()
		smp.at, smp.counts, smp.p50, smp.p99 = time.Since(began), total.minus(prev), p50, p99
		smp.span, prevAt = smp.at-prevAt, smp.at
		smp.expected = sessions.expected(time.Now())
		prev = total
		samples = append(samples, smp)
		s.logf("  %s  rss %.1f MiB  live heap %.1f MiB  goroutines %d (%d of %d sessions, %d expected)  fds %d  db %.1f MiB  %d req  %d 5xx  %d unexpected  %d transport",
			clock(smp.at), float64(smp.rss)/mib, float64(smp.heapLive)/mib, smp.goroutines, smp.sessionGs, smp.sessions, smp.expected, smp.fds,
			float64(smp.dbSize)/mib, smp.requests, smp.status5xx, smp.unexpected, smp.transport)
	}
	ran := time.Since(began)
	stopLoad()
	wg.Wait()
	return samples, ran, nil
}
