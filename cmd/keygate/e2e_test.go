package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/client"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// binary is the keygate binary built once for every end-to-end test.
var binary string

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode) // for the in-process tests
	dir, err := os.MkdirTemp("", "keygate-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "keygate")
	// KEYGATE_E2E_RACE=false builds without the race detector, to measure
	// resident memory as it is in production.
	flags := []string{"build", "-race", "-o", binary, "."}
	if os.Getenv("KEYGATE_E2E_RACE") == "false" {
		flags = []string{"build", "-o", binary, "."}
	}
	build := exec.Command("go", flags...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build keygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one running `keygate serve`.
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	base    string
	dataDir string
	dbURL   string
	stdout  *authztest.SyncBuffer
	stderr  *authztest.SyncBuffer
	exited  chan error
	http    *http.Client // checks every exchange against the OpenAPI document
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs keygate serve on a free port with dbURL ("" for the embedded
// SQLite default) and waits until it is ready. settings are KEYGATE_*
// environment entries, which override the test defaults.
func start(t *testing.T, dataDir, dbURL string, settings ...string) *instance {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(binary, "serve", "--addr", addr, "--data-dir", dataDir)
	cmd.Env = append(os.Environ(), "KEYGATE_DATABASE_URL="+dbURL, "KEYGATE_JWT_SECRET=", "KEYGATE_LOG_FORMAT=json", "KEYGATE_FLUSH_INTERVAL=50ms",
		"KEYGATE_MCP_ALLOWED_NETWORKS=127.0.0.0/8")
	if strings.HasPrefix(dbURL, "postgres") {
		// Instances sharing a database share the key secrets are sealed with.
		cmd.Env = append(cmd.Env, "KEYGATE_ENCRYPTION_KEY="+storagetest.KeyringText)
	}
	cmd.Env = append(cmd.Env, settings...)
	inst := &instance{t: t, cmd: cmd, base: "http://" + addr, dataDir: dataDir, dbURL: dbURL,
		stdout: &authztest.SyncBuffer{}, stderr: &authztest.SyncBuffer{}, exited: make(chan error, 1),
		http: openapitest.Client(t)}
	cmd.Stdout, cmd.Stderr = inst.stdout, inst.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { inst.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			if err := <-inst.exited; err != nil {
				t.Logf("keygate killed at cleanup: %v", err)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := inst.http.Get(inst.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return inst
			}
		}
		select {
		case err := <-inst.exited:
			t.Fatalf("keygate exited before it was ready: %v\nstderr:\n%s", err, inst.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate not ready after 30s\nstderr:\n%s", inst.stderr.String())
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (i *instance) stop() {
	i.t.Helper()
	if err := i.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		i.t.Fatal(err)
	}
	select {
	case err := <-i.exited:
		if err != nil {
			i.t.Fatalf("keygate exited with %v after SIGTERM\nstderr:\n%s", err, i.stderr.String())
		}
	case <-time.After(30 * time.Second):
		i.t.Fatal("keygate did not stop within 30s of SIGTERM")
	}
}

// devToken reads the admin JWT the embedded default prints.
// The line may still be on its way through the pipe when /readyz answers.
func (i *instance) devToken() string {
	i.t.Helper()
	re := regexp.MustCompile(`export KEYGATE_TOKEN=(\S+)\n`)
	waitFor(i.t, "the admin JWT on stdout", 10*time.Second, func() bool { return re.MatchString(i.stdout.String()) })
	return re.FindStringSubmatch(i.stdout.String())[1]
}

// cli runs a keygate command against the instance's data folder and
// database and returns its standard output.
func (i *instance) cli(args ...string) string {
	i.t.Helper()
	cmd := exec.Command(binary, append(args, "--data-dir", i.dataDir)...)
	cmd.Env = append(os.Environ(), "KEYGATE_DATABASE_URL="+i.dbURL, "KEYGATE_JWT_SECRET=", "KEYGATE_ENCRYPTION_KEY="+storagetest.KeyringText)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		i.t.Fatalf("keygate %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

type answer struct {
	status int
	body   map[string]any
	raw    string
	header http.Header
}

func (i *instance) call(method, path, bearer string, body any) answer {
	i.t.Helper()
	return i.send(method, path, bearer, body, nil)
}

// send is call with more request headers.
func (i *instance) send(method, path, bearer string, body any, header http.Header) answer {
	i.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			i.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, i.base+path, rd)
	if err != nil {
		i.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	res, err := i.http.Do(req)
	if err != nil {
		i.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		i.t.Fatal(err)
	}
	a := answer{status: res.StatusCode, raw: string(raw), header: res.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			i.t.Fatalf("%s %s: not JSON: %s", method, path, raw)
		}
	}
	return a
}

func (i *instance) check(token, rtype, id, action string) answer {
	i.t.Helper()
	a := i.call("POST", "/v1/authorize", "", map[string]any{
		"api_key": token, "resource": map[string]any{"type": rtype, "id": id}, "action": action})
	if a.status != 200 {
		i.t.Fatalf("authorize: %d %s", a.status, a.raw)
	}
	return a
}

func want(t *testing.T, note string, a answer, status int, code string) {
	t.Helper()
	if a.status != status {
		t.Fatalf("%s: status %d, want %d: %s", note, a.status, status, a.raw)
	}
	if code != "" && a.body["code"] != code {
		t.Fatalf("%s: code %v, want %s: %s", note, a.body["code"], code, a.raw)
	}
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note  string
		dbURL func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return storagetest.PostgresURL(t) }},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			dataDir := t.TempDir()
			dbURL := tc.dbURL(t)
			inst := start(t, dataDir, dbURL)
			scenario(t, inst)
			inst.stop()
			verifyAfterShutdown(t, inst)
		})
	}
}

// scenario walks the README's session, through the Go client, and then the
// harder cases.
func scenario(t *testing.T, k *instance) {
	admin := k.devToken()
	if strings.Count(admin, ".") != 2 {
		t.Fatalf("printed token %q is not a JWT", admin)
	}
	ctx := context.Background()
	c := k.client(admin)

	// The README: create a key, an allowed check, a denied check, disable,
	// check again, delete.
	created, err := c.CreateKey(ctx, client.CreateKeyRequest{Name: "support-bot", PermissionScope: client.Scope{
		AgentIDs: []string{"support-agent"}, FlowIDs: []string{"triage-*"}, MCPToolIDs: []string{"github__*"}}})
	noError(t, "create", err)
	id, token := created.ID, created.Token
	wantDecision(t, "allowed", k.decide(token, "flow", "triage-daily", "execute"), client.DecisionAllowed)
	denied := k.decide(token, "flow", "billing-export", "execute")
	wantDecision(t, "denied", denied, client.DecisionDenied)
	if !strings.Contains(strings.Join(denied.Reasons, " "), `billing-export`) {
		t.Fatalf("a denial must say why: %+v", denied)
	}
	_, err = c.DisableKey(ctx, id)
	noError(t, "disable", err)
	wantDecision(t, "disabled key", k.decide(token, "flow", "triage-daily", "execute"), client.DecisionKeyDisabled)
	_, err = c.EnableKey(ctx, id)
	noError(t, "enable", err)
	wantDecision(t, "enabled again", k.decide(token, "flow", "triage-daily", "execute"), client.DecisionAllowed)
	want(t, "no profiler on the public listener", k.call("GET", "/debug/pprof/", admin, nil), 404, "not_found")
	noError(t, "delete", c.DeleteKey(ctx, id))
	wantDecision(t, "deleted key", k.decide(token, "flow", "triage-daily", "execute"), client.DecisionKeyInvalid)

	// An expiring key works until its expiry and not after.
	exp := time.Now().Add(1500 * time.Millisecond).UTC()
	expiring, err := c.CreateKey(ctx, client.CreateKeyRequest{Name: "short-lived",
		PermissionScope: client.Scope{FlowIDs: []string{"*"}}, ExpiresAt: &exp})
	noError(t, "create expiring", err)
	wantDecision(t, "before expiry", k.decide(expiring.Token, "flow", "f", "read"), client.DecisionAllowed)
	waitFor(t, "the key to expire", 10*time.Second, func() bool {
		return k.decide(expiring.Token, "flow", "f", "read").Code == client.DecisionKeyExpired
	})

	// Another tenant's key is invisible and its scope does not reach here.
	other := k.client(strings.TrimSpace(k.cli("token", "--tenant", "acme", "--user", "eve", "--role", "admin")))
	theirs, err := other.CreateKey(ctx, client.CreateKeyRequest{Name: "theirs", PermissionScope: client.Scope{FlowIDs: []string{"*"}}})
	noError(t, "other tenant creates", err)
	_, err = c.GetKey(ctx, theirs.ID)
	wantProblem(t, "GET another tenant's key", err, 404, client.CodeNotFound)
	_, err = c.DisableKey(ctx, theirs.ID)
	wantProblem(t, "PATCH another tenant's key", err, 404, client.CodeNotFound)
	wantProblem(t, "DELETE another tenant's key", c.DeleteKey(ctx, theirs.ID), 404, client.CodeNotFound)
	cross, err := c.Authorize(ctx, client.AuthorizeRequest{APIKey: theirs.Token,
		Resource: client.Resource{Type: "flow", ID: "f1", TenantID: "default"}, Action: "read"})
	noError(t, "cross-tenant resource", err)
	wantDecision(t, "cross-tenant resource", cross, client.DecisionDenied)

	// Mistyped and random tokens are refused.
	random, err := authz.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := theirs.Token
	mistyped := good[:10] + swapCase(good[10]) + good[11:]
	for note, tok := range map[string]string{"random": random, "mistyped": mistyped, "garbage": "pk_123"} {
		wantDecision(t, note+" token", k.decide(tok, "flow", "f1", "read"), client.DecisionKeyInvalid)
	}

	// 50 concurrent creates of one name: exactly one wins.
	var wg sync.WaitGroup
	statuses := make(chan int, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CreateKey(ctx, client.CreateKeyRequest{Name: "race"})
			var e *client.Error
			switch {
			case err == nil:
				statuses <- 201
			case errors.As(err, &e):
				statuses <- e.Status
			default:
				statuses <- 0
			}
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[201] != 1 || counts[409] != 49 {
		t.Fatalf("50 concurrent creates: %v, want one 201 and 49 409", counts)
	}

	who, err := c.WhoAmI(ctx, good)
	noError(t, "whoami", err)
	if who.TenantID != "acme" || who.Name != "theirs" {
		t.Fatalf("whoami: %+v", who)
	}
}

// client is a Go client of the instance, every exchange checked against
// the OpenAPI document.
func (i *instance) client(token string) *client.Client {
	i.t.Helper()
	c, err := client.New(i.base, client.WithToken(token), client.WithHTTPClient(i.http))
	if err != nil {
		i.t.Fatal(err)
	}
	return c
}

// decide asks one question through the client.
func (i *instance) decide(token, rtype, id, action string) *client.Decision {
	i.t.Helper()
	d, err := i.client("").Authorize(context.Background(), client.AuthorizeRequest{APIKey: token,
		Resource: client.Resource{Type: rtype, ID: id}, Action: action})
	if err != nil {
		i.t.Fatalf("authorize: %v", err)
	}
	return d
}

func noError(t *testing.T, note string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", note, err)
	}
}

func wantDecision(t *testing.T, note string, d *client.Decision, code string) {
	t.Helper()
	if d.Code != code || d.Allowed != (code == client.DecisionAllowed) {
		t.Fatalf("%s: %+v, want %s", note, d, code)
	}
}

func wantProblem(t *testing.T, note string, err error, status int, code string) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) || e.Status != status || e.Code != code {
		t.Fatalf("%s: %v, want a %d %s problem", note, err, status, code)
	}
}

// verifyAfterShutdown checks what a graceful stop must leave behind: every
// audit event flushed, and no token in the logs.
func verifyAfterShutdown(t *testing.T, k *instance) {
	dbURL := k.dbURL
	if dbURL == "" {
		dbURL = "sqlite:" + filepath.Join(k.dataDir, "keygate.db")
	}
	ctx := context.Background()
	db, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	counts := map[string]int{}
	for _, tenant := range []string{"default", "acme", ""} {
		page, err := storage.NewAuditStore(db).FindAuditEvents(ctx, authz.AuditFilter{TenantID: tenant, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range page.Events {
			counts[ev.Action]++
		}
	}
	// Refusals are one event per key, address and reason a minute: the
	// disabled key, the expired key, the unknown tokens (deleted, random,
	// mistyped) and the malformed one.
	if counts[authz.AuditKeyCreated] != 4 || counts[authz.AuditKeyDeleted] != 1 || counts[authz.AuditKeyUpdated] != 2 ||
		counts[authz.AuditAuthzDenied] < 2 || counts[authz.AuditAuthFailed] < 4 {
		t.Fatalf("audit trail after shutdown: %v", counts)
	}
	if strings.Contains(k.stderr.String(), "pk_") {
		t.Fatal("the logs contain something that looks like a token")
	}
	status := k.cli("migrate", "status")
	if !strings.Contains(status, "20261125000001_core") || !strings.Contains(status, "true") {
		t.Fatalf("migrate status: %s", status)
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "KEYGATE_DATA_DIR="+dataDir, "KEYGATE_JWT_SECRET=", "KEYGATE_DATABASE_URL=", "KEYGATE_TOKEN=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	out, _, err := run("version")
	if err != nil || !strings.HasPrefix(out, "keygate ") {
		t.Fatalf("version: %q %v", out, err)
	}
	out, _, err = run("token", "--tenant", "t", "--user", "u", "--role", "admin")
	if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || strings.Count(out, ".") != 2 {
		t.Fatalf("token must print only a JWT: %q %v", out, err)
	}
	again, _, _ := run("token", "--tenant", "t", "--user", "u")
	if again == out {
		t.Fatal("tokens with different roles must differ")
	}
	for _, tc := range []struct {
		note string
		args []string
		text string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"launch"}, "unknown command"},
		{"token without user", []string{"token", "--tenant", "t"}, "--tenant and --user are required"},
		{"bad flag", []string{"serve", "--nope"}, "flag provided but not defined"},
		{"migrate without verb", []string{"migrate"}, "exactly one"},
		{"keys without a token", []string{"keys", "list"}, "KEYGATE_TOKEN"},
		{"authorize without a question", []string{"authorize"}, "not set"},
	} {
		_, stderr, err := run(tc.args...)
		var exit *exec.ExitError
		if err == nil || !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(stderr, tc.text) {
			t.Errorf("%s: err %v, stderr %q: want exit 2 saying %q", tc.note, err, stderr, tc.text)
		}
	}
	doc, _, err := run("openapi")
	if err != nil || !strings.HasPrefix(doc, "{\n  \"openapi\": \"3.1.0\"") {
		t.Fatalf("openapi prints the document: %.60q %v", doc, err)
	}
	_, stderr, err := run("serve", "--addr", "127.0.0.1:0", "--database-url", "mysql://x")
	if err == nil || !strings.Contains(stderr, "sqlite") {
		t.Errorf("an unsupported database URL must stop start-up naming the accepted forms: %v %q", err, stderr)
	}
	_, stderr, err = run("serve", "--addr", "127.0.0.1:0", "--jwt-secret", "short")
	if err == nil || !strings.Contains(stderr, "32 bytes") {
		t.Errorf("a short JWT secret must stop start-up: %v %q", err, stderr)
	}
	_, stderr, err = run("serve", "--addr", "127.0.0.1:0", "--jwks-url", "https://idp.invalid/jwks", "--jwt-audience", "keygate")
	if err == nil || !strings.Contains(stderr, "KEYGATE_JWT_ISSUER") {
		t.Errorf("a JWKS without an issuer must stop start-up naming the setting: %v %q", err, stderr)
	}
	_, stderr, err = run("serve", "--addr", "127.0.0.1:0", "--database-url", "postgres://db.invalid/keygate")
	if err == nil || !strings.Contains(stderr, "KEYGATE_ENCRYPTION_KEY") {
		t.Errorf("Postgres without an encryption key must stop start-up naming the setting: %v %q", err, stderr)
	}

	// Secrets: a new key, and every stored secret sealed with the first key.
	entry, _, err := run("secrets", "generate-key", "--id", "k2")
	if err != nil || !strings.HasPrefix(entry, "k2:") {
		t.Fatalf("generate-key: %q %v", entry, err)
	}
	out, stderr, err = run("secrets", "rotate", "--encryption-key", strings.TrimSpace(entry)+","+storagetest.KeyringText)
	if err != nil || !strings.Contains(out, `sealed with key "k2"`) {
		t.Fatalf("rotate: %q %q %v", out, stderr, err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(entry), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr, err = run("secrets", "rotate", "--encryption-key-file", keyFile); err != nil || !strings.Contains(out, "0 MCP servers") {
		t.Fatalf("rotate with a key file: %q %q %v", out, stderr, err)
	}
}

func TestPolicyDir(t *testing.T) {
	t.Parallel()
	policyDir := t.TempDir()
	src, err := os.ReadDir("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range src {
		if strings.HasSuffix(e.Name(), ".rego") {
			data, err := os.ReadFile(filepath.Join("../../policies", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(policyDir, e.Name()), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A policy that does not compile stops start-up with the compiler's words.
	broken := filepath.Join(policyDir, "broken.rego")
	if err := os.WriteFile(broken, []byte("package keygate.extra\n\nx := y +\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--policy-dir", policyDir)
	cmd.Env = append(os.Environ(), "KEYGATE_DATABASE_URL=", "KEYGATE_JWT_SECRET=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "broken.rego") {
		t.Fatalf("a broken policy must stop start-up naming the file: %v\n%s", err, out)
	}

	// A working policy folder is served, and SIGHUP reloads it.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	k := start(t, t.TempDir(), "", "KEYGATE_POLICY_DIR="+policyDir)
	admin := k.devToken()
	key := k.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "k", "permission_scope": map[string]any{"flow_ids": []string{"f1"}}})
	want(t, "create", key, 201, "")
	token := key.body["token"].(string)
	want(t, "before reload", k.check(token, "flow", "f1", "execute"), 200, "ALLOWED")

	// Remove "execute" from what flows support, then reload.
	authzFile := filepath.Join(policyDir, "authz.rego")
	data, err := os.ReadFile(authzFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := regexp.MustCompile(`"flow":\s*\{[^}]*\}`).ReplaceAllString(string(data), `"flow": {"read"}`)
	if changed == string(data) {
		t.Fatal("could not find the flow action table in authz.rego")
	}
	if err := os.WriteFile(authzFile, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reloaded policy", 10*time.Second, func() bool {
		return k.check(token, "flow", "f1", "execute").body["code"] == "DENIED"
	})
	want(t, "read still allowed", k.check(token, "flow", "f1", "read"), 200, "ALLOWED")
	k.stop()
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func swapCase(c byte) string {
	switch {
	case 'a' <= c && c <= 'z':
		return string(c - 32)
	case 'A' <= c && c <= 'Z':
		return string(c + 32)
	case c == '0':
		return "1"
	}
	return "0"
}
