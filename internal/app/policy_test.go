package app

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/policies"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// readerTest is a Rego test the policy folders of these tests carry: a key
// scoped to flow f1 may read it.
const readerTest = `package keygate.authz_test

import data.keygate.authz

test_reader if {
	authz.decision.allow with input as {"principal": {"type": "api_key", "tenant_id": "t1", "scope": {"flow_ids": ["f1"]}},
		"resource": {"type": "flow", "id": "f1"}, "action": "read"}
}
`

// closedRule denies every read.
const closedRule = `package keygate.authz

deny contains "reads are closed" if input.action == "read"
`

// closedTest expects closedRule.
const closedTest = `package keygate.authz_test

import data.keygate.authz

test_reader if {
	d := authz.decision with input as {"principal": {"type": "api_key", "tenant_id": "t1", "scope": {"flow_ids": ["f1"]}},
		"resource": {"type": "flow", "id": "f1"}, "action": "read"}
	d == {"allow": false, "reasons": ["reads are closed"]}
}
`

// policyFolder is a folder with the embedded policies and files.
func policyFolder(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	names, err := fs.Glob(policies.FS(), "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		src, _ := fs.ReadFile(policies.FS(), name)
		writeFile(t, filepath.Join(dir, name), string(src))
	}
	for name, src := range files {
		writeFile(t, filepath.Join(dir, name), src)
	}
	return dir
}

// writeFile saves as an editor does: a temporary file renamed over the old.
func writeFile(t testing.TB, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), ".~"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

var reader = &authz.Principal{KeyID: "k1", TenantID: "t1", UserID: "u1", Scope: authz.Scope{FlowIDs: []string{"f1"}}}

func readF1(t testing.TB, e *authz.Engine) authz.Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), reader, authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", authz.DecisionContext{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPolicyFolderReloadKeepsTheLastGoodPolicy: saving a file in the
// policy folder reloads it on its own; a policy whose tests fail, or that
// does not compile, is refused and shown while the running one serves on.
func TestPolicyFolderReloadKeepsTheLastGoodPolicy(t *testing.T) {
	t.Parallel()
	dir := policyFolder(t, map[string]string{"reader_test.rego": readerTest})
	logs := &authztest.SyncBuffer{}
	a := newOutageApp(t, "", func(c *Config) {
		c.PolicyDir = dir
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	a.Start(context.Background())
	first := a.PolicyStatus()
	if first.Source != "folder:"+dir || first.LastError != "" || first.Revision != a.Engine.Revision() || !readF1(t, a.Engine).Allow {
		t.Fatalf("at start: %+v", first)
	}

	// A rule the folder's tests contradict: refused.
	writeFile(t, filepath.Join(dir, "closed.rego"), closedRule)
	waitUntil(t, "the reload to be refused", func() bool { return a.PolicyStatus().LastError != "" })
	st := a.PolicyStatus()
	if !strings.Contains(st.LastError, "policy tests fail (1 of 1): data.keygate.authz_test.test_reader") || st.Revision != first.Revision || !readF1(t, a.Engine).Allow {
		t.Fatalf("after a change its tests refuse: %+v; the running policy must keep serving", st)
	}

	// The test updated with it: live, measured from the save.
	saved := time.Now()
	writeFile(t, filepath.Join(dir, "reader_test.rego"), closedTest)
	waitUntil(t, "the new policy to decide", func() bool { return !readF1(t, a.Engine).Allow })
	t.Logf("from the save to the first decision of the new policy: %s", time.Since(saved).Round(time.Millisecond))
	st = a.PolicyStatus()
	if st.LastError != "" || st.Revision == first.Revision || !st.LoadedAt.After(first.LoadedAt.Add(-time.Second)) {
		t.Fatalf("after a good change: %+v", st)
	}
	if d := readF1(t, a.Engine); d.Reasons[0] != "reads are closed" {
		t.Errorf("decision %+v", d)
	}

	// A file that does not parse: refused, the closed policy serves on.
	writeFile(t, filepath.Join(dir, "sub", "broken.rego"), "package keygate.authz\n\nx := {\n")
	waitUntil(t, "the broken file to be refused", func() bool { return a.PolicyStatus().LastError != "" })
	if st := a.PolicyStatus(); !strings.Contains(st.LastError, "broken.rego") || readF1(t, a.Engine).Allow {
		t.Fatalf("after a broken file: %+v", st)
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"policy reload refused"); n != 2 {
		t.Errorf("%d error lines for two refusals:\n%s", n, logs)
	}

	// Removed again: the folder holds the live policy, nothing to show.
	if err := os.RemoveAll(filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the error to clear", func() bool { return a.PolicyStatus().LastError == "" })
	if st := a.PolicyStatus(); st.Revision != a.Engine.Revision() || readF1(t, a.Engine).Allow {
		t.Errorf("after the revert: %+v", st)
	}
}

func TestPolicyReloadsAreCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := policyFolder(t, nil)
	reader := sdkmetric.NewManualReader()
	cfg := Defaults()
	cfg.PolicyDir = dir
	m, err := newPolicyManager(cfg, slog.New(slog.DiscardHandler), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	if err != nil {
		t.Fatal(err)
	}
	set, err := m.initial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := authz.NewEngineFromSet(ctx, set, authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.started(engine, set)
	_ = m.Reload(ctx) // unchanged
	writeFile(t, filepath.Join(dir, "closed.rego"), closedRule)
	_ = m.Reload(ctx) // success
	writeFile(t, filepath.Join(dir, "closed.rego"), "package")
	_ = m.Reload(ctx) // failure
	if err := os.Remove(dir + "/authz.rego"); err != nil {
		t.Fatal(err)
	}
	_ = m.Reload(ctx) // failure

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "keygate.policy.reloads" {
				continue
			}
			for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
				outcome, _ := dp.Attributes.Value("outcome")
				got[outcome.AsString()] = dp.Value
			}
		}
	}
	if got["unchanged"] != 1 || got["success"] != 1 || got["failure"] != 2 {
		t.Errorf("keygate.policy.reloads by outcome %v", got)
	}
}

func TestPolicySettingsAreChecked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note string
		set  func(*Config)
		want string
	}{
		{"folder and bundle", func(c *Config) { c.PolicyDir, c.PolicyBundleURL = "p", "https://b.example/b.tar.gz" }, "KEYGATE_POLICY_DIR and KEYGATE_POLICY_BUNDLE_URL"},
		{"interval", func(c *Config) { c.PolicyBundleInterval = time.Millisecond }, "KEYGATE_POLICY_BUNDLE_INTERVAL"},
		{"size", func(c *Config) { c.PolicyBundleMaxBytes = 10 }, "KEYGATE_POLICY_BUNDLE_MAX_BYTES"},
		{"a key without a bundle", func(c *Config) { c.PolicyBundlePublicKey = "-----BEGIN PUBLIC KEY-----" }, "need KEYGATE_POLICY_BUNDLE_URL"},
		{"algorithm", func(c *Config) { c.PolicyBundleSigningAlg = "HS256" }, "KEYGATE_POLICY_BUNDLE_SIGNING_ALG"},
		{"decision log", func(c *Config) { c.DecisionLog = "syslog" }, "KEYGATE_DECISION_LOG"},
		{"sample", func(c *Config) { c.DecisionLogSample = 0 }, "KEYGATE_DECISION_LOG_SAMPLE"},
		{"buffer", func(c *Config) { c.DecisionLogBuffer = 0 }, "KEYGATE_DECISION_LOG_BUFFER"},
	} {
		cfg := Defaults()
		tc.set(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.note, err, tc.want)
		}
	}
}

func TestDecisionLogMetrics(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "decisions.log")
	a := newOutageApp(t, "", func(c *Config) { c.DecisionLog = "file:" + path })
	a.DecisionLog.LogDecision(authz.DecisionLogEntry{DecisionID: "d1", Source: authz.SourceAuthorize})
	if err := a.DecisionLog.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	if err := a.registerDecisionLogMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))); err != nil {
		t.Fatal(err)
	}
	got := metricValues(t, reader)
	if got["keygate.decision_log.written"] != 1 || got["keygate.decision_log.queued"] != 0 || got["keygate.decision_log.dropped"] != 0 {
		t.Errorf("metrics %v", got)
	}
}

// TestPolicyFolderAsAConfigMap: Kubernetes mounts a ConfigMap as links to
// a ..data link to a dated folder, and updates it by swapping ..data; the
// swap reloads the policy.
func TestPolicyFolderAsAConfigMap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	version := func(name string, files map[string]string) {
		src := policyFolder(t, files)
		if err := os.Rename(src, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_01_01_a", nil)
	if err := os.Symlink("..2026_01_01_a", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"authz.rego", "management.rego", "log.rego", "closed.rego"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "..2026_01_01_a", "closed.rego"), []byte("package keygate.authz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := newOutageApp(t, "", func(c *Config) { c.PolicyDir = dir })
	a.Start(context.Background())
	if !readF1(t, a.Engine).Allow {
		t.Fatal("the first version allows")
	}
	version("..2026_01_02_b", map[string]string{"closed.rego": closedRule})
	if err := os.Symlink("..2026_01_02_b", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the swapped ConfigMap to be served", func() bool { return !readF1(t, a.Engine).Allow })
	if st := a.PolicyStatus(); st.LastError != "" {
		t.Errorf("status %+v", st)
	}
}
