package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// policyManager keeps the live policy of one instance and replaces it when
// its source changes (the folder is saved, the bundle server has a new
// bundle, SIGHUP), never with a policy that does not compile strictly or
// whose tests fail: then the running policy stays, and the failure is
// logged, counted and shown by GET /api/v1/policy.
type policyManager struct {
	engine  *authz.Engine
	source  string // PolicyStatus.Source
	dir     string // KEYGATE_POLICY_DIR; "" otherwise
	bundle  *bundlePoller
	logger  *slog.Logger
	now     func() time.Time
	reloads metric.Int64Counter

	reload sync.Mutex // one reload at a time

	mu     sync.Mutex
	status authz.PolicyStatus
	digest string // of the live policy and its tests
}

// Outcomes of a reload, the attribute of keygate.policy.reloads.
const (
	reloadSuccess   = "success"   // a new policy went live
	reloadFailure   = "failure"   // refused; the running policy stays
	reloadUnchanged = "unchanged" // the source holds the live policy
)

func newPolicyManager(cfg Config, logger *slog.Logger, mp metric.MeterProvider) (*policyManager, error) {
	m := &policyManager{dir: cfg.PolicyDir, logger: logger, now: cfg.Now, source: "embedded"}
	if m.now == nil {
		m.now = time.Now
	}
	var err error
	m.reloads, err = mp.Meter("github.com/keygate/keygate").Int64Counter("keygate.policy.reloads",
		metric.WithDescription("Policy reloads by outcome: success (a new policy is live), failure (refused; the running policy stays), unchanged"),
		metric.WithUnit("{reload}"))
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.PolicyDir != "":
		m.source = "folder:" + cfg.PolicyDir
	case cfg.PolicyBundleURL != "":
		m.source = "bundle:" + RedactURL(cfg.PolicyBundleURL)
		if m.bundle, err = newBundlePoller(cfg, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// initial reads the policy to start with: the embedded one, the folder's,
// or the bundle's first download. Start-up fails when it cannot be read.
func (m *policyManager) initial(ctx context.Context) (authz.PolicySet, error) {
	switch {
	case m.dir != "":
		set, err := readPolicyDir(m.dir)
		if err != nil {
			return authz.PolicySet{}, err
		}
		return set, nil
	case m.bundle != nil:
		return m.bundle.first(ctx)
	}
	return authz.ReadPolicyFS(policies.FS())
}

// readPolicyDir reads a policy folder; the error names the setting.
func readPolicyDir(dir string) (authz.PolicySet, error) {
	if _, err := os.Stat(dir); err != nil {
		return authz.PolicySet{}, fmt.Errorf("read policies from %s (KEYGATE_POLICY_DIR): %w", dir, err)
	}
	set, err := authz.ReadPolicyFS(os.DirFS(dir))
	if err != nil {
		return authz.PolicySet{}, fmt.Errorf("read policies from %s (KEYGATE_POLICY_DIR): %w", dir, err)
	}
	return set, nil
}

// started records the policy the engine was built with.
func (m *policyManager) started(engine *authz.Engine, set authz.PolicySet) {
	m.engine = engine
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = authz.PolicyStatus{Revision: engine.Revision(), Source: m.source, BundleRevision: set.ManifestRevision, LoadedAt: m.now().UTC()}
	m.digest = digestOf(set)
}

// Status is the live policy's status.
func (m *policyManager) Status() authz.PolicyStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Reload reads the source again and serves it if it passes (see
// policyManager). A bundle is polled now. Returns why a policy was refused.
func (m *policyManager) Reload(ctx context.Context) error {
	switch {
	case m.dir != "":
		set, err := readPolicyDir(m.dir)
		if err != nil {
			m.refused(err)
			return err
		}
		return m.apply(ctx, set)
	case m.bundle != nil:
		return m.bundle.poll(ctx)
	}
	return nil
}

// apply serves set when it is new and passes; the outcome is logged,
// counted and kept for Status.
func (m *policyManager) apply(ctx context.Context, set authz.PolicySet) error {
	m.reload.Lock()
	defer m.reload.Unlock()
	digest := digestOf(set)
	m.mu.Lock()
	same := digest == m.digest
	m.mu.Unlock()
	if same {
		m.count(ctx, reloadUnchanged)
		m.sourceIsLive()
		return nil
	}
	if err := m.engine.LoadSet(ctx, set); err != nil {
		m.refused(err)
		return err
	}
	m.mu.Lock()
	m.status.Revision, m.status.BundleRevision, m.status.LoadedAt = m.engine.Revision(), set.ManifestRevision, m.now().UTC()
	m.status.LastError, m.status.LastErrorAt = "", time.Time{}
	m.digest = digest
	m.mu.Unlock()
	m.count(ctx, reloadSuccess)
	m.logger.Info("policy reloaded", "source", m.source, "revision", set.Revision(),
		"modules", len(set.Modules), "tests", len(set.Tests))
	logDecisionCaching(m.engine, m.logger)
	return nil
}

// sourceIsLive clears the last error: the source holds the live policy
// again (a broken file was reverted, the bundle server is back to it).
func (m *policyManager) sourceIsLive() {
	m.mu.Lock()
	had := m.status.LastError != ""
	m.status.LastError, m.status.LastErrorAt = "", time.Time{}
	revision := m.status.Revision
	m.mu.Unlock()
	if had {
		m.logger.Info("the policy source holds the live policy again", "source", m.source, "revision", revision)
	}
}

// refused records a reload that did not go live. The same cause is logged
// once; the metric counts every attempt.
func (m *policyManager) refused(err error) {
	msg := authz.Describe(err)
	m.mu.Lock()
	repeat := m.status.LastError == msg
	m.status.LastError, m.status.LastErrorAt = msg, m.now().UTC()
	m.mu.Unlock()
	m.count(context.Background(), reloadFailure)
	level := slog.LevelError
	if repeat {
		level = slog.LevelDebug
	}
	m.logger.Log(context.Background(), level, "policy reload refused; the running policy keeps serving",
		"source", m.source, "err", msg)
}

func (m *policyManager) count(ctx context.Context, outcome string) {
	m.reloads.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// digestOf tells one policy and its tests from another.
func digestOf(set authz.PolicySet) string {
	h := sha256.New()
	h.Write([]byte(set.Revision()))
	for _, name := range slices.Sorted(maps.Keys(set.Tests)) {
		fmt.Fprintf(h, "\n%d %s %d\n", len(name), name, len(set.Tests[name]))
		h.Write([]byte(set.Tests[name]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PolicySource names where the policies come from, for logs.
func (a *App) PolicySource() string { return a.policy.source }

// PolicyStatus is the live policy's status (GET /api/v1/policy).
func (a *App) PolicyStatus() authz.PolicyStatus { return a.policy.Status() }

// ReloadPolicies reads the policy folder again, or polls the bundle, and
// serves what it finds if it compiles strictly and its tests pass;
// otherwise the running policy stays and the error says why.
func (a *App) ReloadPolicies(ctx context.Context) error { return a.policy.Reload(ctx) }

// logDecisionCaching says whether policy answers are cached, and if not why,
// so a policy author sees the price of reading the request's time.
func logDecisionCaching(engine *authz.Engine, logger *slog.Logger) {
	if on, why := engine.DecisionCaching(); on {
		logger.Info("policy answers are cached: the policy depends only on principal, resource and action")
	} else {
		logger.Info("policy answers are not cached", "why", why)
	}
}

// watch starts watching the policy folder, or readies the bundle's polls,
// and returns what runs them until ctx ends; nil for the embedded policy.
func (m *policyManager) watch() func(ctx context.Context) {
	switch {
	case m.dir != "":
		run, err := m.watchPolicyDir()
		if err != nil {
			m.logger.Error("cannot watch the policy folder; SIGHUP still reloads it", "dir", m.dir, "err", err)
			return nil
		}
		return run
	case m.bundle != nil:
		return m.bundle.run
	}
	return nil
}
