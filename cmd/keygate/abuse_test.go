package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/mcp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestAbuse attacks a real keygate on loopback as the issue describes, each
// flood bounded in count: bad keys and bad management JWTs from one address
// (429 after the burst, a live key still answered, a few audit rows), an
// upstream answering 100 MB (the call fails, resident memory stays near the
// bound), and a flood of MCP sessions (refused past the caps).
func TestAbuse(t *testing.T) {
	t.Parallel()
	const perKey, total = 4, 10
	k := start(t, t.TempDir(), "",
		// Clients are told apart by X-Forwarded-For, believed from loopback.
		"KEYGATE_TRUSTED_PROXIES=127.0.0.1",
		fmt.Sprintf("KEYGATE_MCP_MAX_SESSIONS_PER_KEY=%d", perKey), fmt.Sprintf("KEYGATE_MCP_MAX_SESSIONS=%d", total),
		"KEYGATE_MCP_ALLOWED_NETWORKS=127.0.0.0/8")
	admin := k.devToken()
	key := k.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "service",
		"permission_scope": map[string]any{"flow_ids": []string{"f1"}, "mcp_tool_ids": []string{"huge__*"}}})
	want(t, "create a key", key, 201, "")
	live := key.body["token"].(string)

	t.Run("bad keys and JWTs from one address", func(t *testing.T) {
		const flood = 1000
		addr := "203.0.113.10"
		// The service's key is in use, so keygate holds it as live.
		want(t, "live key", k.from(addr, "POST", "/v1/authorize", "", authorizeBody(live)), 200, "ALLOWED")
		start := time.Now()
		statuses := map[int]int{}
		for i := range flood {
			random, _ := authz.NewToken(nil)
			a := k.from(addr, "POST", "/v1/authorize", "", authorizeBody(random))
			statuses[a.status]++
			if i < 20 && a.body["code"] != authz.KeyInvalid {
				t.Fatalf("bad key %d within the burst: %d %s", i, a.status, a.raw)
			}
			if a.status == http.StatusTooManyRequests && (a.body["code"] != "rate_limited" || a.header.Get("Retry-After") == "") {
				t.Fatalf("a 429 must be a rate_limited problem with Retry-After: %v %s", a.header, a.raw)
			}
		}
		// 20 in the burst, and one a second earned back.
		earned := int(time.Since(start)/time.Second) + 1
		if statuses[http.StatusTooManyRequests] < flood-20-earned {
			t.Fatalf("statuses %v for %d bad keys in %s", statuses, flood, time.Since(start))
		}
		want(t, "the live key from the same address", k.from(addr, "POST", "/v1/authorize", "", authorizeBody(live)), 200, "ALLOWED")
		want(t, "another address", k.from("203.0.113.99", "POST", "/v1/authorize", "", authorizeBody("pk_x")), 200, authz.KeyInvalid)

		jwtAddr := "203.0.113.11"
		forged := admin[:len(admin)-4] + "AAAA"
		jwts := map[int]int{}
		for range 300 {
			jwts[k.from(jwtAddr, "GET", "/api/v1/api-keys", forged, nil).status]++
		}
		if jwts[http.StatusUnauthorized] < 20 || jwts[http.StatusTooManyRequests] < 300-20-earned-int(time.Since(start)/time.Second) {
			t.Fatalf("statuses %v for 300 bad JWTs", jwts)
		}
		want(t, "a good JWT from the same address", k.from(jwtAddr, "GET", "/api/v1/api-keys", admin, nil), 200, "")
		t.Logf("%d bad keys: %v; 300 bad JWTs: %v; in %s", flood, statuses, jwts, time.Since(start).Round(time.Millisecond))
	})

	t.Run("an upstream answering 100 MB", func(t *testing.T) {
		up := newHugeUpstream(t, 100<<20)
		want(t, "register", k.call("POST", "/api/v1/mcp-servers", admin, map[string]any{"name": "huge", "url": up.URL}), 201, "")
		cs := mcpClient(t, k, live)
		baseline := k.memory(t, "VmRSS")
		k.resetPeakMemory(t)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "huge__answer"})
		var rpcErr *jsonrpc.Error
		if !errors.As(err, &rpcErr) || rpcErr.Code != mcp.CodeUpstreamTooLarge {
			t.Fatalf("a 100 MB answer: %v, want JSON-RPC error %d", err, mcp.CodeUpstreamTooLarge)
		}
		peak := k.memory(t, "VmHWM")
		const limit = 10 << 20 // KEYGATE_MCP_MAX_RESPONSE_BYTES's default
		t.Logf("keygate's resident memory: %d MiB before the call, %d MiB at its peak during it (+%d MiB for a 100 MiB answer, bound %d MiB)",
			baseline>>20, peak>>20, (peak-baseline)>>20, limit>>20)
		if peak-baseline > 5*limit {
			t.Fatalf("resident memory grew by %d MiB for one call; the bound is a small multiple of %d MiB", (peak-baseline)>>20, limit>>20)
		}
		_ = cs.Close()
	})

	t.Run("a session flood", func(t *testing.T) {
		opened := map[string]int{}
		for _, name := range []string{"a", "b", "c"} {
			kk := k.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "flood-" + name, "permission_scope": map[string]any{}})
			want(t, "create "+name, kk, 201, "")
			for range 3 * perKey {
				switch status := k.initialize(t, kk.body["token"].(string)); status {
				case http.StatusOK:
					opened[name]++
				case http.StatusTooManyRequests:
				default:
					t.Fatalf("initialize: %d", status)
				}
			}
		}
		// a and b stop at their own bound, c at what is left of the
		// instance's (the last test's session may not have ended yet).
		if opened["a"] != perKey || opened["b"] != perKey || opened["c"] < total-2*perKey-1 || opened["c"] > total-2*perKey {
			t.Fatalf("sessions opened %v with %d per key and %d in all", opened, perKey, total)
		}
	})

	k.stop()
	db := openInstanceDB(t, k)
	var rows, failed, size int
	if err := db.Bun().NewRaw(`SELECT COUNT(*), COALESCE(SUM(CASE WHEN action = ? THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(LENGTH(id) + LENGTH(tenant_id) + LENGTH(actor_type) + LENGTH(actor_id) + LENGTH(action) + LENGTH(target_type) +
		LENGTH(target_id) + LENGTH(outcome) + LENGTH(reason) + LENGTH(ip) + LENGTH(user_agent) + LENGTH(request_id) +
		LENGTH(trace_id) + LENGTH(details)), 0) FROM audit_events`, authz.AuditAuthFailed).Scan(context.Background(), &rows, &failed, &size); err != nil {
		t.Fatal(err)
	}
	t.Logf("audit trail after the floods: %d rows (%d of refused credentials), %d bytes", rows, failed, size)
	if failed > 4 || rows > 20 {
		t.Fatalf("%d audit rows (%d of refused credentials) after the floods; they must be a handful", rows, failed)
	}
}

func authorizeBody(token string) map[string]any {
	return map[string]any{"api_key": token, "resource": map[string]any{"type": "flow", "id": "f1"}, "action": "read"}
}

// from sends a request as the client at addr, behind the trusted proxy.
func (i *instance) from(addr, method, path, bearer string, body any) answer {
	i.t.Helper()
	return i.send(method, path, bearer, body, http.Header{"X-Forwarded-For": {addr}})
}

// initialize opens an MCP session with a raw initialize and returns the
// status.
func (i *instance) initialize(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", i.base+"/mcp", strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"flood","version":"1"}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	res, err := i.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// memory reads one of the process's /proc status lines (VmRSS, VmHWM), in
// bytes.
func (i *instance) memory(t *testing.T, field string) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", i.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc to read resident memory from: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, i.cmd.Process.Pid)
	return 0
}

// resetPeakMemory starts VmHWM again from the current resident memory.
func (i *instance) resetPeakMemory(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", i.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak resident memory: %v", err)
	}
}

func mcpClient(t *testing.T, k *instance, token string) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "abuse", Version: "1"}, nil).Connect(ctx, &sdk.StreamableClientTransport{
		Endpoint: k.base + "/mcp", HTTPClient: &http.Client{Transport: bearerTransport{token, k.http.Transport}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect to /mcp: %v", err)
	}
	return cs
}

// newHugeUpstream is an MCP server whose tool "answer" answers size bytes:
// the SDK serves the handshake and the catalog, and the call's answer is
// streamed here, never held in memory.
func newHugeUpstream(t *testing.T, size int) *httptest.Server {
	t.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "huge", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "answer"}, func(context.Context, *sdk.CallToolRequest, struct{}) (*sdk.CallToolResult, any, error) {
		return nil, nil, errors.New("unreachable: answered by the handler")
	})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{JSONResponse: true})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if r.Method != http.MethodPost || json.Unmarshal(body, &msg) != nil || msg.Method != "tools/call" {
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"`, msg.ID)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return // keygate stopped reading
			}
		}
		_, _ = io.WriteString(w, `"}]}}`)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}
