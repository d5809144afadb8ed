package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/policies"
)

// floorAnswer is the floor's one answer, about the size of keygate's.
var floorAnswer = []byte(`{"allowed":true,"code":"ALLOWED","reasons":["floor"],"decision_id":"00000000-0000-7000-8000-000000000000"}`)

// floorRequest is the shape of keygate's /v1/authorize body, so the floor
// pays for decoding what keygate decodes.
type floorRequest struct {
	APIKey   string         `json:"api_key"`
	Resource *floorResource `json:"resource"`
	Action   string         `json:"action"`
	Checks   []struct {
		Resource floorResource `json:"resource"`
		Action   string        `json:"action"`
	} `json:"checks"`
}

type floorResource struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
}

// runFloor serves the floor: gin in release mode, no middleware, a handler
// that reads and decodes the body and answers a fixed JSON. No server of
// this shape can be faster on this machine, so keygate/floor says how much
// of the cost is keygate's own work.
//
// With --keys, it is the floor with the policy: the same handler also
// evaluates keygate's shipped policy for the key the body names, with
// keygate's engine and its decision cache as shipped, the key's scope held
// in memory. It is what evaluating the policy costs with nothing else
// around it (no key lookup, audit trail, middleware or logs): no server
// that evaluates this policy per request can be faster on this machine.
func runFloor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keygate-bench floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	keysFile := fs.String("keys", "", "a JSON array of keys (id, token, tenant_id, user_id, permission_scope): decide each request with the shipped policy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()

	handle := func(c *gin.Context, _ *floorRequest) {
		c.Data(http.StatusOK, "application/json; charset=utf-8", floorAnswer)
	}
	if *keysFile != "" {
		p, err := newPolicyFloor(ctx, *keysFile)
		if err != nil {
			return err
		}
		handle = p.handle
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.POST("/v1/authorize", func(c *gin.Context) {
		var req floorRequest
		if err := json.NewDecoder(c.Request.Body).Decode(&req); err != nil || req.APIKey == "" {
			c.Data(http.StatusBadRequest, "application/json", []byte(`{"code":"BAD_REQUEST"}`))
			return
		}
		handle(c, &req)
	})

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// policyFloor decides as keygate's engine does, for keys held in memory.
type policyFloor struct {
	engine *authz.Engine
	keys   map[string]*authz.Principal // by token; read only once serving
}

func newPolicyFloor(ctx context.Context, keysFile string) (*policyFloor, error) {
	data, err := os.ReadFile(keysFile)
	if err != nil {
		return nil, err
	}
	var keys []createdKey
	if err := json.Unmarshal(data, &keys); err != nil {
		return nil, fmt.Errorf("%s: %w", keysFile, err)
	}
	modules, err := authz.ReadPolicies(policies.FS())
	if err != nil {
		return nil, err
	}
	engine, err := authz.NewEngine(ctx, modules, authz.EngineOptions{DecisionCacheSize: app.Defaults().DecisionCacheSize})
	if err != nil {
		return nil, err
	}
	p := &policyFloor{engine: engine, keys: make(map[string]*authz.Principal, len(keys))}
	for _, k := range keys {
		// The principal as keygate makes it from the key it looks up.
		key := authz.APIKey{ID: k.ID, TenantID: k.TenantID, UserID: k.UserID, Scope: k.Scope, Enabled: true}
		p.keys[k.Token] = key.Principal()
	}
	return p, nil
}

// floorDecision is keygate's answer, less what only keygate knows (its
// code and decision id).
type floorDecision struct {
	Allowed bool     `json:"allowed"`
	Reasons []string `json:"reasons"`
}

func (p *policyFloor) handle(c *gin.Context, req *floorRequest) {
	principal, ok := p.keys[req.APIKey]
	if !ok || req.Resource == nil {
		c.Data(http.StatusUnauthorized, "application/json", []byte(`{"code":"UNAUTHENTICATED"}`))
		return
	}
	r := authz.Resource{Type: authz.ResourceType(req.Resource.Type), ID: req.Resource.ID, TenantID: req.Resource.TenantID}
	d, err := p.engine.Decide(c.Request.Context(), principal, r, req.Action, authz.DecisionContext{Time: time.Now()})
	if err != nil {
		c.Data(http.StatusInternalServerError, "application/json", []byte(`{"code":"INTERNAL"}`))
		return
	}
	c.JSON(http.StatusOK, floorDecision{Allowed: d.Allow, Reasons: d.Reasons})
}
