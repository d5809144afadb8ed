package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
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
func runFloor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("keygate-bench floor", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.Status(http.StatusOK) })
	r.POST("/v1/authorize", func(c *gin.Context) {
		var req floorRequest
		if err := json.NewDecoder(c.Request.Body).Decode(&req); err != nil || req.APIKey == "" {
			c.Data(http.StatusBadRequest, "application/json", []byte(`{"code":"BAD_REQUEST"}`))
			return
		}
		c.Data(http.StatusOK, "application/json; charset=utf-8", floorAnswer)
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
