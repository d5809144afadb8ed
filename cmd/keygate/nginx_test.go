package main_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
)

// nginxConf wraps the nginx configuration README.md shows (readmeNginx)
// for a test's own folder: %[1]s the folder, %[2]s the backend's address,
// %[3]s README's server block, listening on a free loopback port.
const nginxConf = `daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    upstream backend { server %[2]s; }
%[3]s
}
`

// readmeNginx is README.md's nginx configuration, pointed at keygate's
// address and listening on port: the test runs what the README shows.
func readmeNginx(t *testing.T, keygateAddr string, port int) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, found := strings.Cut(string(readme), "```nginx\n")
	block, _, closed := strings.Cut(block, "\n```")
	if !found || !closed || !strings.Contains(block, "keygate.internal:8080") || !strings.Contains(block, "server {\n") {
		t.Fatal("README.md has no nginx configuration pointing at keygate.internal:8080")
	}
	block = strings.Replace(block, "keygate.internal:8080", keygateAddr, 1)
	return strings.Replace(block, "server {\n", fmt.Sprintf("server {\n    listen 127.0.0.1:%d;\n", port), 1)
}

// nginxBinary finds Debian's nginx; without it the test is skipped, except
// under CI=true (.ci/run installs it).
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed: .ci/run installs it (apt-get install nginx)")
	}
	t.Skip("nginx is not installed (apt-get install nginx): skipping the forward auth end-to-end test")
	return ""
}

// seenRequest is what the backend behind nginx was sent.
type seenRequest struct {
	method, path string
	header       http.Header
}

// startNginx runs nginx as a test process in front of backend, asking
// keygate at keygateAddr, and returns its base URL.
func startNginx(t *testing.T, keygateAddr, backendAddr string) string {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, backendAddr, readmeNginx(t, keygateAddr, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := &authztest.SyncBuffer{}
	cmd := exec.Command(bin, "-e", "stderr", "-p", dir, "-c", conf)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // a graceful stop
		select {
		case err := <-exited:
			if err != nil && !t.Failed() {
				t.Logf("nginx exited: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Logf("nginx killed after 10s: %v", <-exited)
		}
		if t.Failed() {
			t.Logf("nginx said:\n%s", stderr.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return "http://" + addr
		}
		select {
		case err := <-exited:
			t.Fatalf("nginx exited: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening after 10s\n%s", stderr.String())
		}
	}
}

// TestNginxForwardAuth puts Debian's nginx, configured as README.md shows
// (the test reads its configuration there),
// in front of a backend, asking keygate with auth_request: allowed requests
// reach the backend with the key's identity and without the key; denied,
// unmapped, keyless and spoofed ones do not; over the failed-authentication
// budget the client gets 429 with Retry-After.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	nginxBinary(t)
	k := start(t, t.TempDir(), "", "KEYGATE_AUTH_FAILURE_BURST=3", "KEYGATE_TRUSTED_PROXIES=127.0.0.1")
	admin := k.devToken()
	created := k.call("POST", "/api/v1/api-keys", admin, map[string]any{"name": "behind-nginx",
		"permission_scope": map[string]any{"agent_ids": []string{"a1"}, "vector_store_ids": []string{"docs"}}})
	want(t, "create key", created, http.StatusCreated, "")
	keyID, token := created.body["id"].(string), created.body["token"].(string)

	var mu sync.Mutex
	var seen []seenRequest
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, seenRequest{r.Method, r.URL.RequestURI(), r.Header.Clone()})
		mu.Unlock()
		_, _ = w.Write([]byte("backend"))
	}))
	defer backend.Close()
	base := startNginx(t, strings.TrimPrefix(k.base, "http://"), strings.TrimPrefix(backend.URL, "http://"))

	client := &http.Client{Timeout: 10 * time.Second}
	send := func(method, path string, headers ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res
	}
	reached := func() []seenRequest {
		mu.Lock()
		defer mu.Unlock()
		out := seen
		seen = nil
		return out
	}

	for _, tc := range []struct {
		note, method, path string
		headers            []string
	}{
		{"read with X-API-Key", "GET", "/agents/a1", []string{"X-API-Key", token}},
		{"execute with a bearer key", "POST", "/agents/a1/run?verbose=1", []string{"Authorization", "Bearer " + token}},
		{"write a vector store, a forged identity overwritten", "PUT", "/vector-stores/docs/items/7", []string{"X-API-Key", token, "X-Keygate-Key-Id", "forged", "X-Keygate-Tenant-Id", "other"}},
	} {
		if res := send(tc.method, tc.path, tc.headers...); res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", tc.note, res.Status)
		}
		got := reached()
		if len(got) != 1 || got[0].method != tc.method || got[0].path != tc.path {
			t.Fatalf("%s: the backend saw %+v", tc.note, got)
		}
		h := got[0].header
		if h.Get("X-Keygate-Key-Id") != keyID || h.Get("X-Keygate-Tenant-Id") != "default" || h.Get("X-Keygate-User-Id") != "admin" ||
			!authz.ValidID(h.Get("X-Keygate-Decision-Id")) || len(h.Values("X-Keygate-Key-Id")) != 1 {
			t.Fatalf("%s: identity headers %v", tc.note, h)
		}
		if h.Get("X-API-Key") != "" || h.Get("Authorization") != "" {
			t.Fatalf("%s: the key reached the backend", tc.note)
		}
	}

	bad, _ := authz.NewToken(nil)
	for _, tc := range []struct {
		note, method, path string
		headers            []string
		status             int
	}{
		{"denied by the scope", "GET", "/agents/a2", []string{"X-API-Key", token}, http.StatusForbidden},
		{"not mapped", "DELETE", "/agents/a1", []string{"X-API-Key", token}, http.StatusForbidden},
		{"a dot segment nginx would resolve", "GET", "/agents/a1/../a2", []string{"X-API-Key", token}, http.StatusForbidden},
		{"an encoded slash", "GET", "/agents/a1%2F..%2Fa2", []string{"X-API-Key", token}, http.StatusForbidden},
		{"a spoofed forwarded URI", "GET", "/agents/a2", []string{"X-API-Key", token, "X-Forwarded-Uri", "/agents/a1"}, http.StatusForbidden},
		{"no key", "GET", "/agents/a1", nil, http.StatusUnauthorized},
		{"an unknown key", "GET", "/agents/a1", []string{"X-API-Key", bad}, http.StatusUnauthorized},
	} {
		res := send(tc.method, tc.path, tc.headers...)
		if res.StatusCode != tc.status {
			t.Fatalf("%s: %s, want %d", tc.note, res.Status, tc.status)
		}
		if tc.status == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") != `Bearer realm="keygate"` {
			t.Fatalf("%s: WWW-Authenticate %q", tc.note, res.Header.Get("WWW-Authenticate"))
		}
		if got := reached(); len(got) != 0 {
			t.Fatalf("%s: the backend was reached: %+v", tc.note, got)
		}
	}

	// The unknown key spent one of the client's three failures.
	var res *http.Response
	for range 3 {
		bad, _ := authz.NewToken(nil)
		res = send("GET", "/agents/a1", "X-API-Key", bad)
	}
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("over the failed-authentication budget: %s, Retry-After %q", res.Status, res.Header.Get("Retry-After"))
	}
	if res := send("GET", "/agents/a1", "X-API-Key", token); res.StatusCode != http.StatusOK {
		t.Fatalf("the live key from a client over budget: %s", res.Status)
	}
	if got := reached(); len(got) != 1 {
		t.Fatalf("the backend saw %d requests, want the live key's one", len(got))
	}
	k.stop()
}
