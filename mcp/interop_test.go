package mcp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/mcp"
)

// interopDir holds the Node peers, pinned by package-lock.json.
const interopDir = "testdata/interop"

// requireNode returns the node binary, running `npm ci` first when the
// pinned packages are not installed. Without node or npm the test is
// skipped, except under CI=true, where it fails.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		msg := what + " is not installed; the MCP interop test needs Node.js 20+ and npm (https://nodejs.org)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	if _, err := os.Stat(filepath.Join(interopDir, "node_modules", "@modelcontextprotocol", "server-everything")); err == nil {
		return node
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		missing("npm")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = interopDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", interopDir, err, out)
	}
	return node
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

// startEverything runs @modelcontextprotocol/server-everything over
// streamable HTTP and returns its endpoint once it listens.
func startEverything(t *testing.T, node string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(node, filepath.Join("node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js"), "streamableHttp")
	cmd.Dir = interopDir
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// It says so on stderr once it listens.
	ready := make(chan struct{})
	var once sync.Once
	var lines []string
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on port") {
				once.Do(func() { close(ready) })
			}
			if len(lines) < 50 {
				lines = append(lines, sc.Text())
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("server-everything exited before listening:\n%s", strings.Join(lines, "\n"))
	case <-time.After(60 * time.Second):
		t.Fatal("server-everything did not listen within 60s")
	}
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// interopResult is what client.mjs prints.
type interopResult struct {
	ProtocolVersion string `json:"protocolVersion"`
	Session         bool   `json:"session"`
	Tools           []struct {
		Name            string `json:"name"`
		Description     string `json:"description"`
		HasOutputSchema bool   `json:"hasOutputSchema"`
	} `json:"tools"`
	Calls []struct {
		Name              string         `json:"name"`
		IsError           bool           `json:"isError"`
		Text              string         `json:"text"`
		StructuredContent map[string]any `json:"structuredContent"`
	} `json:"calls"`
	Denied struct {
		Refused bool   `json:"refused"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"denied"`
	WrongKey struct {
		Refused bool   `json:"refused"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"wrongKey"`
}

// TestInteropWithTheTypeScriptSDK puts keygate between real peers from
// npm: @modelcontextprotocol/server-everything upstream, and a client on
// @modelcontextprotocol/sdk that sees exactly the tools its key allows,
// calls allowed ones (one with structured content the client validates)
// and is refused a denied one.
func TestInteropWithTheTypeScriptSDK(t *testing.T) {
	node := requireNode(t)
	upstream := startEverything(t, node)
	k := newKeygate(t, nil)
	srv := k.register("everything", upstream)
	if srv["sync_error"] != "" {
		t.Fatalf("sync with server-everything failed: %v", srv["sync_error"])
	}
	catalog := k.api("GET", "/api/v1/mcp-tools?limit=100", nil, 200)["data"].([]any)
	var all []string
	for _, tool := range catalog {
		all = append(all, tool.(map[string]any)["exposed_name"].(string))
	}
	for _, want := range []string{"everything__echo", "everything__get-sum", "everything__get-env", "everything__get-structured-content"} {
		if !slices.Contains(all, want) {
			t.Fatalf("catalog %v lacks %s", all, want)
		}
	}

	allowed := []string{"everything__echo", "everything__get-sum", "everything__get-structured-content"}
	token := k.createKey("ts-client", allowed...)
	calls := `[{"name":"everything__echo","arguments":{"message":"hello through keygate"}},` +
		`{"name":"everything__get-sum","arguments":{"a":2,"b":40}},` +
		`{"name":"everything__get-structured-content","arguments":{"location":"Chicago"}}]`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs", k.mcpURL(), token, calls, "everything__get-env")
	cmd.Dir = interopDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.mjs: %v\nstderr:\n%s", err, stderr.String())
	}
	var got interopResult
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client.mjs printed %q: %v", out, err)
	}

	var names []string
	for _, tool := range got.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" {
			t.Errorf("%s lost its description", tool.Name)
		}
	}
	slices.Sort(names)
	if want := slices.Sorted(slices.Values(allowed)); !slices.Equal(names, want) {
		t.Fatalf("the TypeScript client sees %v, want exactly %v", names, want)
	}
	if !got.Session || got.ProtocolVersion == "" {
		t.Errorf("session %v, protocol version %q", got.Session, got.ProtocolVersion)
	}
	wantText := map[string]string{
		"everything__echo":                   "Echo: hello through keygate",
		"everything__get-sum":                "42",
		"everything__get-structured-content": "Light rain",
	}
	if len(got.Calls) != 3 {
		t.Fatalf("calls %+v", got.Calls)
	}
	for _, c := range got.Calls {
		if c.IsError || !strings.Contains(c.Text, wantText[c.Name]) {
			t.Errorf("%s: isError=%v text %q, want %q", c.Name, c.IsError, c.Text, wantText[c.Name])
		}
	}
	if sc := got.Calls[2].StructuredContent; sc["conditions"] != "Light rain / drizzle" || sc["humidity"] != 82.0 {
		t.Errorf("structured content %v", sc)
	}
	if !got.Denied.Refused || got.Denied.Code != mcp.CodeToolDenied || !strings.Contains(got.Denied.Message, `"everything__get-env" is not allowed`) {
		t.Errorf("the denied call: %+v", got.Denied)
	}
	if !got.WrongKey.Refused || got.WrongKey.Code != 401 || !strings.Contains(got.WrongKey.Message, "the API key is not valid") {
		t.Errorf("a wrong key: %+v", got.WrongKey)
	}

	// Every call is in the audit trail.
	if err := k.audit.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	trail := k.api("GET", "/api/v1/audit-events?action=mcp_tool.called&limit=100", nil, 200)["data"].([]any)
	trail = append(trail, k.api("GET", "/api/v1/audit-events?action=authorization.denied&limit=100", nil, 200)["data"].([]any)...)
	outcomes := map[string]int{}
	for _, ev := range trail {
		outcomes[ev.(map[string]any)["outcome"].(string)]++
	}
	if outcomes["success"] != 3 || outcomes["denied"] != 1 {
		t.Errorf("audited outcomes %v, want 3 successes and 1 denial", outcomes)
	}
}
