package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// keygatePolicy runs `keygate policy args…` in this process.
func keygatePolicy(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"policy"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// initPolicies writes keygate's policies and Rego tests into a new folder.
func initPolicies(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policies")
	modules, _ := filepath.Glob("../../policies/*.rego")
	if out, _, err := keygatePolicy(t, "init", dir); err != nil || len(modules) < 4 || strings.Count(out, ".rego") != len(modules) {
		t.Fatalf("policy init: %v\n%s", err, out)
	}
	if _, _, err := keygatePolicy(t, "init", dir); err == nil {
		t.Fatal("policy init must not overwrite a folder's policies")
	}
	tests, err := filepath.Glob("../../opa-tests/*.rego")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no Rego tests: %v", err)
	}
	for _, f := range tests {
		copyFile(t, f, filepath.Join(dir, filepath.Base(f)))
	}
	return dir
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyTest(t *testing.T) {
	t.Parallel()
	dir := initPolicies(t)
	out, _, err := keygatePolicy(t, "test", dir, "--threshold", "90", "--coverage")
	if err != nil || !strings.Contains(out, " 0 failed") || !strings.Contains(out, "coverage: 100.00%") || !strings.Contains(out, "100.00%  authz.rego") {
		t.Fatalf("keygate's policies and tests: %v\n%s", err, out)
	}

	// A failing test: named, and the command fails.
	failing := "package acme_test\n\ntest_wrong if {\n\tprint(\"looked at\", 1)\n\tfalse\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "wrong_test.rego"), []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = keygatePolicy(t, "test", "--run", "wrong", dir)
	if err == nil || !strings.Contains(out, "FAIL: data.acme_test.test_wrong (wrong_test.rego:3)") || !strings.Contains(out, "looked at 1") ||
		!strings.Contains(out, "0 passed, 1 failed") {
		t.Fatalf("a failing test: %v\n%s", err, out)
	}

	// Coverage under the threshold fails too.
	partial := filepath.Join(t.TempDir(), "partial")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, "../../policies/log.rego", filepath.Join(partial, "log.rego"))
	if err := os.WriteFile(filepath.Join(partial, "log_test.rego"), []byte("package log_test\n\ntest_nothing if true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := keygatePolicy(t, "test", partial, "--threshold", "90"); err == nil || !strings.Contains(err.Error(), "below the threshold 90%") {
		t.Fatalf("coverage under the threshold: %v\n%s", err, out)
	}
	if _, _, err := keygatePolicy(t, "test", filepath.Join(dir, "authz.rego")); err == nil || !strings.Contains(err.Error(), "no tests") {
		t.Fatalf("a folder without tests: %v", err)
	}
}

func TestPolicyCheckAndFmt(t *testing.T) {
	t.Parallel()
	dir := initPolicies(t)
	tests, _ := filepath.Glob("../../opa-tests/*.rego")
	if out, _, err := keygatePolicy(t, "check", dir); err != nil ||
		!strings.HasPrefix(out, fmt.Sprintf("ok: 4 modules, %d test files, revision sha256:", len(tests))) {
		t.Fatalf("check: %v %s", err, out)
	}
	if out, _, err := keygatePolicy(t, "fmt", dir); err != nil || out != "" {
		t.Fatalf("fmt of formatted files: %v %q", err, out)
	}

	extra := filepath.Join(dir, "extra.rego")
	if err := os.WriteFile(extra, []byte("package acme\nx:=1\nf(y) := 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keygatePolicy(t, "check", dir); err == nil || !strings.Contains(err.Error(), "extra.rego:3: rego_compile_error: unused argument y") ||
		strings.Contains(err.Error(), "code=") {
		t.Fatalf("check is strict and says where: %v", err)
	}
	if out, _, err := keygatePolicy(t, "fmt", dir); err == nil || out != extra+"\n" {
		t.Fatalf("fmt lists what it would change: %v %q", err, out)
	}
	if _, _, err := keygatePolicy(t, "fmt", "--write", dir); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(extra); string(data) != "package acme\n\nx := 1\nf(y) := 2\n" {
		t.Errorf("fmt --write wrote %q", data)
	}
	if _, stderr, err := keygatePolicy(t, "lint"); err == nil || !strings.Contains(stderr, "Usage: keygate policy") {
		t.Errorf("an unknown command: %v %s", err, stderr)
	}
}

// decisionInput is an input of data.keygate.authz.decision.
const decisionInput = `{"principal": {"type": "api_key", "key_id": "k1", "tenant_id": "t1", "user_id": "u1",
  "scope": {"agent_ids": [], "flow_ids": ["f*"], "mcp_tool_ids": [], "vector_store_ids": []}},
 "resource": {"type": "flow", "id": "x1"}, "action": "read", "context": {"time": "2026-01-13T08:30:00Z"}}`

func TestPolicyEval(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	input := filepath.Join(tmp, "input.json")
	if err := os.WriteFile(input, []byte(decisionInput), 0o644); err != nil {
		t.Fatal(err)
	}
	// The embedded policies, explained.
	out, _, err := keygatePolicy(t, "eval", "--input", input, "--explain", "fails")
	if err != nil {
		t.Fatal(err)
	}
	result, explanation, _ := strings.Cut(out, "\nExplanation (fails) of data.keygate.authz.decision:")
	var d map[string]any
	if err := json.Unmarshal([]byte(result), &d); err != nil || d["allow"] != false {
		t.Fatalf("result %q: %v", result, err)
	}
	if !strings.Contains(explanation, "Fail data.keygate.authz.scope_match") || !strings.Contains(explanation, "authz.rego:") {
		t.Errorf("explanation:\n%s", explanation)
	}

	// A query of one's own.
	out, _, err = keygatePolicy(t, "eval", "--input", input, "--query", "data.keygate.authz.scope_match(input.principal.scope.flow_ids, \"f9\")")
	if err != nil || strings.TrimSpace(out) != `"f*"` {
		t.Errorf("a query: %v %q", err, out)
	}

	// A decision-log event is replayed and compared with what was logged.
	event := `{"decision_id": "d1", "path": "keygate/authz/decision", "input": ` + decisionInput + `,
		"result": {"allow": false, "reasons": ["flow \"x1\" is not in the key's flow_ids"]}}`
	if err := os.WriteFile(filepath.Join(tmp, "event.json"), []byte(event), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := keygatePolicy(t, "eval", "--input", filepath.Join(tmp, "event.json")); err != nil || !strings.Contains(stderr, "the result is the one logged") {
		t.Errorf("replay: %v %s", err, stderr)
	}
	// Against a policy that now decides otherwise: the replay says so.
	dir := filepath.Join(tmp, "p")
	if _, _, err := keygatePolicy(t, "init", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "all.rego"), []byte("package keygate.authz\n\ndeny contains \"closed\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keygatePolicy(t, "eval", dir, "--input", filepath.Join(tmp, "event.json")); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Errorf("replay against another policy: %v", err)
	}
	if _, _, err := keygatePolicy(t, "eval", "--explain", "fails"); err == nil || !strings.Contains(err.Error(), "--input") {
		t.Errorf("eval without input: %v", err)
	}
}

// TestPolicyExamples runs the Rego tests of every worked example of
// docs/policies.md with keygate's policies, as its readers would, and
// checks each covers its own rules.
func TestPolicyExamples(t *testing.T) {
	t.Parallel()
	examples, err := filepath.Glob("../../docs/examples/*")
	if err != nil || len(examples) < 3 {
		t.Fatalf("examples %v: %v", examples, err)
	}
	for _, ex := range examples {
		t.Run(filepath.Base(ex), func(t *testing.T) {
			t.Parallel()
			out, _, err := keygatePolicy(t, "test", "--coverage", "../../policies", ex)
			if err != nil || !strings.Contains(out, " 0 failed, 0 errors") {
				t.Fatalf("%v\n%s", err, out)
			}
			rules, _ := filepath.Glob(filepath.Join(ex, "*.rego"))
			for _, r := range rules {
				if name := filepath.Base(r); !strings.Contains(out, "100.00%  "+name) {
					t.Errorf("%s is not covered by its tests:\n%s", name, out)
				}
			}
			if out, _, err := keygatePolicy(t, "check", "../../policies", ex); err != nil {
				t.Errorf("check: %v %s", err, out)
			}
			if out, _, err := keygatePolicy(t, "fmt", ex); err != nil {
				t.Errorf("fmt: %v %s", err, out)
			}
		})
	}
}
