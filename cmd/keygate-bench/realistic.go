package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	_ "modernc.org/sqlite" // the SQLite driver, to count keygate's audit rows
)

// verifyConns are the connections verification asks every question over.
const verifyConns = 8

// realisticResult is what the realistic workload measured.
type realisticResult struct {
	keys, questions int
	seed            uint64
	kinds           []kindCount
	scopeBytes      int         // mean size of a key's scope, JSON
	example         authz.Scope // the first key's scope, to show its ids
	cacheSize       int         // keygate's decision cache as shipped
	hitRate         float64     // modelled share of requests it answers
	conns           int
	warmup          time.Duration
	duration        time.Duration
	load, loadEnd   string // load averages when the phase started and ended
	profiled        bool   // keygate (SQLite) ran under the CPU profiler

	floor, opa *result
	policy     *result       // the floor with the policy (runFloor --keys)
	keygates   []*keygateRun // SQLite, then Postgres
}

// keygateRun is one keygate measured on the realistic workload.
type keygateRun struct {
	res   *result
	usage *procUsage
	// denials counts the denials keygate answered, verification and
	// warm-up included; unsure the requests it may or may not have
	// audited (no answer, or not a 200); rows the authorization.denied
	// events in its database once it stopped and flushed its writer.
	denials, unsure uint64
	rows            int64
}

// audited reports whether every denial answered is in the audit trail,
// and nothing else is.
func (k *keygateRun) audited() bool {
	rows := uint64(max(k.rows, 0))
	return rows >= k.denials && rows <= k.denials+k.unsure
}

// liveKeygate is a keygate serving the realistic workload: its keys, its
// profiler listener and GC trace, and the denials it has answered.
type liveKeygate struct {
	*server
	debugAddr       string
	gc              *gcTrace
	keys            []*createdKey
	denials, unsure atomic.Uint64
}

// counted wraps check to count the denials keygate answers: each is an
// audit event it owes.
func (kg *liveKeygate) counted(check func(i, status int, body []byte) error) func(i, status int, body []byte) error {
	return func(i, status int, body []byte) error {
		switch {
		case status != http.StatusOK:
			kg.unsure.Add(1)
		case !bytes.Contains(body, keygateAllowed):
			kg.denials.Add(1)
		}
		return check(i, status, body)
	}
}

// runRealistic measures the floor, OPA and keygate on SQLite and on
// Postgres over the realistic workload, every answer verified first.
func (b *bench) runRealistic(ctx context.Context, machine *machineInfo) (rr *realisticResult, err error) {
	o := b.opts
	rr = &realisticResult{keys: o.realKeys, questions: o.realQuestions, seed: o.realSeed, cacheSize: app.Defaults().DecisionCacheSize,
		conns: o.conns, warmup: o.warmup, duration: o.duration, load: loadAverage(), profiled: o.realCPUProfile != "" || o.realContention != ""}
	scopes := realisticScopes(o.realKeys, o.realSeed)
	table, err := questionTable(scopes, benchTenant, o.realQuestions, o.realSeed)
	if err != nil {
		return nil, err
	}
	rr.kinds, rr.example = kindCounts(table), scopes[0]
	for _, s := range scopes {
		rr.scopeBytes += len(mustJSON(s))
	}
	rr.scopeBytes /= len(scopes)
	rr.hitRate = modelHitRate(len(table), rr.cacheSize, o.realSeed)
	b.logf("realistic workload: %d keys, %s distinct questions; modelled decision cache hit rate %.0f%%",
		o.realKeys, thousands(float64(len(table))), 100*rr.hitRate)

	floor, err := b.procs.start(ctx, serverSpec{name: "floor", path: b.bins.floor, readyPath: "/healthz",
		args: func(addr string) []string { return []string{"floor", "--addr", addr} }})
	if err != nil {
		return nil, err
	}
	defer floor.stop()
	opa, err := b.startOPA(ctx)
	if err != nil {
		return nil, err
	}
	defer opa.stop()

	var env []string
	if o.realContention != "" {
		env = []string{"KEYGATE_DEBUG_MUTEX_FRACTION=5", "KEYGATE_DEBUG_BLOCK_RATE=10us"}
	}
	kg, err := b.startRealisticKeygate(ctx, "realistic-sqlite", env, scopes)
	if err != nil {
		return nil, err
	}
	defer kg.stop()
	opaURL := opa.base + "/v1/data/keygate/authz/decision"
	opaReq := realisticOPABodies(kg.keys, table, time.Now())
	b.logf("asking OPA every question")
	opaAnswers, err := b.askAll(ctx, "OPA", opaURL, opaReq, decodeOPAAnswer)
	if err != nil {
		return nil, err
	}
	if err := b.verifyRealistic(ctx, kg, table, opaAnswers); err != nil {
		return nil, fmt.Errorf("keygate (SQLite): %w", err)
	}

	policy, err := b.startPolicyFloor(ctx, kg.keys)
	if err != nil {
		return nil, err
	}
	defer policy.stop()
	b.logf("asking the floor with the policy every question")
	policyAnswers, err := b.askAll(ctx, "floor with the policy", policy.base+"/v1/authorize", realisticKeygateBodies(kg.keys, table), decodeKeygateAnswer)
	if err != nil {
		return nil, err
	}
	if err := compareAnswers(table, policyAnswers, opaAnswers); err != nil {
		return nil, fmt.Errorf("the floor with the policy: %w", err)
	}

	bodies := realisticKeygateBodies(kg.keys, table)
	if rr.floor, err = b.measure(ctx, workload{name: "floor (gin)", url: floor.base + "/v1/authorize",
		bodies: bodies, check: statusCheck}); err != nil {
		return nil, err
	}
	floor.stop()
	if rr.policy, err = b.measure(ctx, workload{name: policyFloorName, url: policy.base + "/v1/authorize",
		bodies: bodies, check: allowCheck(keygateAllowed, tableAllow(table))}); err != nil {
		return nil, err
	}
	policy.stop()
	if rr.opa, err = b.measure(ctx, workload{name: "OPA server", url: opaURL,
		bodies: opaReq, check: allowCheck(opaAllowed, tableAllow(table))}); err != nil {
		return nil, err
	}
	opa.stop()
	run, err := b.measureKeygate(ctx, kg, "keygate (SQLite)", bodies, table, windowProfile{"profile", o.realCPUProfile},
		windowProfile{"mutex", suffixed(o.realContention, ".mutex")}, windowProfile{"block", suffixed(o.realContention, ".block")})
	if err != nil {
		return nil, err
	}
	if run.rows, err = b.stopAndCountSQLite(ctx, kg, "realistic-sqlite"); err != nil {
		return nil, err
	}
	rr.keygates = append(rr.keygates, run)

	if o.postgres {
		run, err := b.realisticPostgres(ctx, machine, scopes, table, opaAnswers)
		if err != nil {
			return nil, err
		}
		rr.keygates = append(rr.keygates, run)
	}
	rr.loadEnd = loadAverage()
	return rr, nil
}

// realisticPostgres measures keygate on a Postgres database of its own,
// dropped at the end whatever happens.
func (b *bench) realisticPostgres(ctx context.Context, machine *machineInfo, scopes []authz.Scope, table []question, opaAnswers []answer) (run *keygateRun, err error) {
	db, env, err := b.migratedDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer dropDatabase(ctx, db, &err)
	if machine.postgres == "" {
		if machine.postgres, err = postgresInfo(ctx, db.url); err != nil {
			return nil, err
		}
	}
	kg, err := b.startRealisticKeygate(ctx, "realistic-postgres", env, scopes)
	if err != nil {
		return nil, err
	}
	defer kg.stop()
	if err := b.verifyRealistic(ctx, kg, table, opaAnswers); err != nil {
		return nil, fmt.Errorf("keygate (Postgres): %w", err)
	}
	if run, err = b.measureKeygate(ctx, kg, "keygate (Postgres)", realisticKeygateBodies(kg.keys, table), table); err != nil {
		return nil, err
	}
	if err := stopKeygate(kg.server); err != nil {
		return nil, err
	}
	pg := openPG(db.url)
	defer func() { _ = pg.Close() }()
	if run.rows, err = countDenials(ctx, pg); err != nil {
		return nil, err
	}
	return run, nil
}

// policyFloorName names the floor with the policy in the tables.
const policyFloorName = "floor + policy"

// startPolicyFloor runs the floor with the policy (runFloor --keys) over
// keys, written to a file for it.
func (b *bench) startPolicyFloor(ctx context.Context, keys []*createdKey) (*server, error) {
	path := filepath.Join(b.tmp, "realistic-keys.json")
	data, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	return b.procs.start(ctx, serverSpec{name: "floor with the policy", path: b.bins.floor, readyPath: "/healthz",
		args: func(addr string) []string { return []string{"floor", "--addr", addr, "--keys", path} }})
}

// suffixed is path with suffix added; "" (no profile) stays "".
func suffixed(path, suffix string) string {
	if path == "" {
		return ""
	}
	return path + suffix
}

// startRealisticKeygate runs a keygate with a profiler listener and a GC
// trace, and creates one key per scope over the API.
func (b *bench) startRealisticKeygate(ctx context.Context, name string, env []string, scopes []authz.Scope) (*liveKeygate, error) {
	debugAddr, env, err := withProfiler(ctx, env)
	if err != nil {
		return nil, err
	}
	kg := &liveKeygate{debugAddr: debugAddr, gc: newGCTrace()}
	env = append(env, "GODEBUG=gctrace=1")
	var jwt string
	if kg.server, jwt, err = b.launchKeygate(ctx, name, env, kg.gc); err != nil {
		return nil, err
	}
	b.logf("creating %d keys on keygate (%s)", len(scopes), name)
	if kg.keys, err = createKeys(ctx, kg.base, jwt, scopes); err != nil {
		kg.stop()
		return nil, err
	}
	return kg, nil
}

// createKeys creates a key per scope over the API, a few at a time.
func createKeys(ctx context.Context, base, jwt string, scopes []authz.Scope) ([]*createdKey, error) {
	keys := make([]*createdKey, len(scopes))
	errs := make([]error, len(scopes))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(scopes) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				keys[i], errs[i] = createKey(ctx, base, jwt, fmt.Sprintf("realistic-%05d", i), scopes[i])
			}
		})
	}
	wg.Wait()
	return keys, errors.Join(append(errs, ctx.Err())...)
}

// answer is a decision as keygate or OPA gave it.
type answer struct {
	allow   bool
	reasons []string
}

func decodeKeygateAnswer(body []byte) (answer, error) {
	var k struct {
		Allowed *bool    `json:"allowed"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal(body, &k); err != nil || k.Allowed == nil {
		return answer{}, fmt.Errorf("not a decision: %.200s", body)
	}
	return answer{*k.Allowed, k.Reasons}, nil
}

func decodeOPAAnswer(body []byte) (answer, error) {
	var o struct {
		Result *struct {
			Allow   bool     `json:"allow"`
			Reasons []string `json:"reasons"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return answer{}, fmt.Errorf("not a decision: %.200s", body)
	}
	if o.Result == nil {
		return answer{}, errors.New("the decision is undefined")
	}
	return answer{o.Result.Allow, o.Result.Reasons}, nil
}

// askAll sends every body once, verifyConns at a time, and decodes every
// answer; any failure fails it.
func (b *bench) askAll(ctx context.Context, name, url string, bodies [][]byte, decode func([]byte) (answer, error)) ([]answer, error) {
	return b.askAllChecked(ctx, name, url, bodies, decode, nil)
}

func (b *bench) askAllChecked(ctx context.Context, name, url string, bodies [][]byte, decode func([]byte) (answer, error),
	wrap func(func(i, status int, body []byte) error) func(i, status int, body []byte) error) ([]answer, error) {
	answers := make([]answer, len(bodies)) // each index written by one worker, read after they end
	check := func(i, status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", status, body)
		}
		a, err := decode(body)
		answers[i] = a
		return err
	}
	if wrap != nil {
		check = wrap(check)
	}
	gen := loadGen{conns: verifyConns, timeout: b.opts.timeout}
	res, err := gen.runOnce(ctx, workload{name: name, url: url, bodies: bodies, check: check})
	if err != nil {
		return nil, err
	}
	if res.errors > 0 {
		return nil, fmt.Errorf("%s: %d of %d questions failed; the first: %s", name, res.errors, len(bodies), res.firstErr)
	}
	return answers, nil
}

// verifyRealistic asks keygate every question of the table and compares its
// answers with OPA's and with the expected ones.
func (b *bench) verifyRealistic(ctx context.Context, kg *liveKeygate, table []question, opaAnswers []answer) error {
	b.logf("asking %s every question", kg.name)
	answers, err := b.askAllChecked(ctx, kg.name, kg.base+"/v1/authorize", realisticKeygateBodies(kg.keys, table), decodeKeygateAnswer, kg.counted)
	if err != nil {
		return err
	}
	if err := compareAnswers(table, answers, opaAnswers); err != nil {
		return err
	}
	b.logf("  %s and OPA give the expected answer to each of the %s questions, with the same reasons", kg.name, thousands(float64(len(table))))
	return nil
}

// compareAnswers fails unless keygate and OPA gave every question its
// expected allow or deny, with the same reasons.
func compareAnswers(table []question, kg, opa []answer) error {
	if len(kg) != len(table) || len(opa) != len(table) {
		return fmt.Errorf("%d questions, %d answers from keygate, %d from OPA", len(table), len(kg), len(opa))
	}
	for i, q := range table {
		r := q.check.Resource
		what := fmt.Sprintf("question %d (%s: key %d, %s %q, tenant %q, %s)", i, q.kind, q.key, r.Type, r.ID, r.TenantID, q.check.Action)
		switch {
		case kg[i].allow != q.allow || opa[i].allow != q.allow:
			return fmt.Errorf("%s: keygate allowed=%v, OPA allow=%v, want %v", what, kg[i].allow, opa[i].allow, q.allow)
		case !slices.Equal(kg[i].reasons, opa[i].reasons):
			return fmt.Errorf("%s: keygate's reasons %q differ from OPA's %q", what, kg[i].reasons, opa[i].reasons)
		}
	}
	return nil
}

// measureKeygate measures keygate over the table, reading its counters
// before and after, and taking the profiles of the window that have a path.
func (b *bench) measureKeygate(ctx context.Context, kg *liveKeygate, name string, bodies [][]byte, table []question, profiles ...windowProfile) (*keygateRun, error) {
	before, err := takeSnapshot(ctx, kg.pid(), kg.debugAddr)
	if err != nil {
		return nil, err
	}
	profiled := b.profileWindow(ctx, kg.debugAddr, profiles...)
	res, err := b.measure(ctx, workload{name: name, url: kg.base + "/v1/authorize",
		bodies: bodies, check: kg.counted(allowCheck(keygateAllowed, tableAllow(table)))})
	if err != nil {
		return nil, err
	}
	if err := profiled(); err != nil {
		return nil, err
	}
	after, err := takeSnapshot(ctx, kg.pid(), kg.debugAddr)
	if err != nil {
		return nil, err
	}
	// The load has ended: what keygate answered is what it owes the
	// audit trail.
	run := &keygateRun{res: res, usage: usage(before, after, kg.gc.between(before.at, after.at), res.answered),
		denials: kg.denials.Load(), unsure: kg.unsure.Load() + res.lost}
	u := run.usage
	b.logf("  p99.9 %s; %.0f allocations, %s bytes per request; %d GCs, longest pause %s",
		fmtLatency(res.hist.quantile(0.999)), u.perRequest(float64(u.mallocs)), thousands(u.perRequest(float64(u.bytes))), u.gcs, fmtLatency(u.gcMaxPause))
	return run, nil
}

// stopAndCountSQLite stops a keygate on SQLite, which writes what its audit
// writer holds, and counts the denials in its database.
func (b *bench) stopAndCountSQLite(ctx context.Context, kg *liveKeygate, name string) (int64, error) {
	if err := stopKeygate(kg.server); err != nil {
		return 0, err
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(b.dataDir(name), "keygate.db")+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer func() { _ = db.Close() }()
	return countDenials(ctx, db)
}

// rowQuerier is a database handle; bun's and database/sql's both take "?".
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// countDenials counts the authorization.denied events of the audit trail.
func countDenials(ctx context.Context, db rowQuerier) (int64, error) {
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM audit_events WHERE action = ?", authz.AuditAuthzDenied).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the audit trail's denials: %w", err)
	}
	return n, nil
}

// realisticKeygateBodies are the /v1/authorize bodies of the table.
func realisticKeygateBodies(keys []*createdKey, table []question) [][]byte {
	out := make([][]byte, len(table))
	for i, q := range table {
		out[i] = keygateBody(keys[q.key].Token, q.check)
	}
	return out
}

// realisticOPABodies are OPA's inputs for the table, each with its key's
// scope.
func realisticOPABodies(keys []*createdKey, table []question, at time.Time) [][]byte {
	out := make([][]byte, len(table))
	for i, q := range table {
		out[i] = opaBody(keys[q.key], q.check, at)
	}
	return out
}

// tableAllow says what the policy answers request i of a workload cycling
// through the table.
func tableAllow(table []question) func(i int) bool {
	return func(i int) bool { return table[i%len(table)].allow }
}
