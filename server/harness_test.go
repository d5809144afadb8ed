package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

var testSecret = []byte("test-secret-of-at-least-32-bytes!!")

// loopback is where the tests' upstreams listen; keygate reaches it only
// because the harness allows it, as KEYGATE_MCP_ALLOWED_NETWORKS would.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// harness is keygate as internal/app builds it, on a test database and
// clock, driven through the real router without the network.
type harness struct {
	t      testing.TB
	db     *storage.DB
	app    *app.App
	srv    *server.Server
	svc    *authz.KeyService
	clock  *authztest.Clock
	audit  *authz.AuditWriter
	logs   *authztest.SyncBuffer
	jwtCfg server.JWTConfig
}

func newHarness(t testing.TB, db *storage.DB, opts ...func(*app.Config)) *harness {
	t.Helper()
	clk := authztest.NewClock(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	logs := &authztest.SyncBuffer{}
	cfg := app.Defaults()
	cfg.DB, cfg.Migrate = db, false
	cfg.DataDir = t.TempDir() // the audit spool's
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.JWTSecret, cfg.JWTIssuer, cfg.JWTAudience = string(testSecret), "https://idp.test", "keygate"
	cfg.FlushInterval = time.Hour // audit events are written when a test flushes them
	cfg.DecisionCacheSize = 0
	cfg.Version = "test"
	cfg.MCPAllowedNetworks = loopback
	cfg.EncryptionKey = storagetest.KeyringText
	for _, opt := range opts {
		opt(&cfg)
	}
	a, err := app.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Close(ctx)
	})
	return &harness{t: t, db: db, app: a, srv: a.Server, svc: a.Keys, clock: clk, audit: a.Audit, logs: logs, jwtCfg: a.JWT}
}

// jwt signs a management token valid for an hour of the harness clock.
func (h *harness) jwt(tenant, user string, roles ...string) string {
	h.t.Helper()
	tok, err := server.SignHS256(h.jwtCfg, tenant, user, roles, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request through the real router. body is sent as is when it is
// a string, else JSON-encoded; auth is a Bearer credential when non-empty.
func (h *harness) do(method, path, auth string, body any, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.srv.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	h.checkContract(req, body, res)
	return res
}

// checkContract holds every exchange of every handler test to the OpenAPI
// document (internal/openapitest has the rules).
func (h *harness) checkContract(req *http.Request, body any, res response) {
	h.t.Helper()
	contract, err := openapitest.Load()
	if err != nil { // Errorf: do may run on another goroutine
		h.t.Errorf("OpenAPI: %v", err)
		return
	}
	var sent []byte
	switch b := body.(type) {
	case nil:
	case string:
		sent = []byte(b)
	default:
		sent, _ = json.Marshal(b)
	}
	if _, err := contract.Check(openapitest.Exchange{Request: req, Body: sent, Status: res.status, Header: res.header, ResponseBody: res.body}); err != nil {
		h.t.Errorf("OpenAPI: %s %s → %d: %v\nanswer: %.600s", req.Method, req.URL.RequestURI(), res.status, err, res.body)
	}
}

// createKey creates a key as the given JWT and returns its id and token.
func (h *harness) createKey(jwt, name string, scope map[string]any, extra ...any) (string, string) {
	h.t.Helper()
	body := map[string]any{"name": name, "permission_scope": scope}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	res := h.do("POST", "/api/v1/api-keys", jwt, body)
	if res.status != http.StatusCreated {
		h.t.Fatalf("create key %q: status %d: %s", name, res.status, res.body)
	}
	m := res.json(h.t)
	return m["id"].(string), m["token"].(string)
}

// authorize asks /v1/authorize one question and returns the answer.
func (h *harness) authorize(token, rtype, id, action string) map[string]any {
	h.t.Helper()
	res := h.do("POST", "/v1/authorize", "", map[string]any{
		"api_key": token, "resource": map[string]any{"type": rtype, "id": id}, "action": action,
	})
	if res.status != http.StatusOK {
		h.t.Fatalf("authorize: status %d: %s", res.status, res.body)
	}
	return res.json(h.t)
}

// flushAudit writes every queued audit event, refused credentials being
// counted included.
func (h *harness) flushAudit() {
	h.t.Helper()
	if err := h.app.Refusals.Close(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	if err := h.audit.Close(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

func wantStatus(t testing.TB, note string, res response, status int) {
	t.Helper()
	if res.status != status {
		t.Fatalf("%s: status %d, want %d: %s", note, res.status, status, res.body)
	}
}

// wantProblem checks an RFC 9457 answer: status, code and, when given, the
// first invalid field.
func wantProblem(t testing.TB, note string, res response, status int, code, field string) {
	t.Helper()
	wantStatus(t, note, res, status)
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("%s: content type %q, want application/problem+json", note, ct)
	}
	var p server.Problem
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatalf("%s: %v", note, err)
	}
	if p.Status != status || p.Code != code || p.RequestID == "" || p.Title == "" || p.Type == "" {
		t.Fatalf("%s: problem %+v, want status %d code %q and a request id", note, p, status, code)
	}
	if field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != field) {
		t.Fatalf("%s: problem errors %+v, want field %q first", note, p.Errors, field)
	}
}

func signWith(cfg server.JWTConfig, tenant, user string, roles ...string) (string, error) {
	return server.SignHS256(cfg, tenant, user, roles, time.Hour)
}

func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	os.Exit(m.Run())
}
