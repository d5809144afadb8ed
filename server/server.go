// Package server is keygate's HTTP face: the management API under /api/v1
// (JWT), the decision API under /v1 (API keys), health endpoints, and the
// gin middleware other Go services can reuse to authenticate keys and
// require permissions.
package server

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
	"go.opentelemetry.io/contrib/instrumentation/github.com/gin-gonic/gin/otelgin"
	"go.opentelemetry.io/otel/trace"
)

// Config wires a Server.
type Config struct {
	Keys           *authz.KeyService
	JWT            *JWTVerifier
	AuthLimiter    *authz.FailureLimiter           // failed management JWTs per address, with Keys.Limiter; nil: none
	Ready          func(ctx context.Context) error // nil: always ready
	Logger         *slog.Logger
	MaxBodyBytes   int64                // default DefaultMaxBodyBytes
	TrustedProxies []string             // whose X-Forwarded-For is believed; none by default
	TracerProvider trace.TracerProvider // nil: no HTTP spans
	Version        string
	// Mounts are extra handlers on the same port, keyed by path, served
	// for GET, POST and DELETE (the methods of MCP's streamable HTTP
	// transport): the MCP gateway at /mcp.
	Mounts map[string]http.Handler
	// MCP is the upstream MCP server registry under /api/v1/mcp-servers and
	// /api/v1/mcp-tools; nil leaves those routes out.
	MCP *authz.MCPServerService
	// ReadyDetails adds members to /readyz's body, ready or not: the state
	// of what the instance depends on beyond the database.
	ReadyDetails func(ctx context.Context) map[string]any
	// PolicyStatus answers GET /api/v1/policy; nil leaves the route out.
	PolicyStatus *authz.PolicyStatusService
	// Metrics serves GET /metrics; nil leaves the route out (metrics are
	// then on a listener of their own, or off).
	Metrics http.Handler
}

// Server holds the router and what the handlers need.
type Server struct {
	logger *slog.Logger
	keys   *authz.KeyService
	mcp    *authz.MCPServerService
	policy *authz.PolicyStatusService
	jwt    *JWTVerifier
	ready  func(ctx context.Context) error
	detail func(ctx context.Context) map[string]any
	router *gin.Engine
}

// New builds the router.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{logger: cfg.Logger, keys: cfg.Keys, mcp: cfg.MCP, policy: cfg.PolicyStatus, jwt: cfg.JWT, ready: cfg.Ready, detail: cfg.ReadyDetails}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.ContextWithFallback = true
	if err := r.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		return nil, authz.Errorf(authz.EINVALID, "trusted proxies: %v", err)
	}
	// Tracing costs a few microseconds a request even with nothing to
	// export, so it is on only when a tracer provider is given.
	if cfg.TracerProvider != nil {
		r.Use(otelgin.Middleware("keygate", otelgin.WithTracerProvider(cfg.TracerProvider)))
	}
	r.Use(securityHeaders(), requestContext(cfg.Logger, cfg.MaxBodyBytes), recovery())
	r.NoRoute(func(c *gin.Context) { writeError(c, authz.Errorf(authz.ENOTFOUND, "no such endpoint")) })
	r.NoMethod(func(c *gin.Context) {
		writeProblem(c, http.StatusMethodNotAllowed, "method_not_allowed", "this endpoint does not take "+c.Request.Method)
	})

	r.GET("/healthz", func(c *gin.Context) { writeJSON(c, http.StatusOK, gin.H{"status": "ok", "version": cfg.Version}) })
	r.GET("/readyz", s.readyz)
	r.GET("/openapi.json", s.openAPI)

	v1 := r.Group("/v1")
	v1.POST("/authorize", s.authorize)
	v1.GET("/whoami", RequireAPIKey(cfg.Keys), s.whoami)
	r.Any(ForwardAuthPath, s.forwardAuth)
	r.Any(ForwardAuthPath+"/*path", s.forwardAuth)
	if cfg.Metrics != nil {
		r.GET("/metrics", gin.WrapH(cfg.Metrics))
	}

	api := r.Group("/api/v1", requireJWT(cfg.JWT, cfg.AuthLimiter))
	api.POST("/api-keys", s.createKey)
	api.GET("/api-keys", s.listKeys)
	api.GET("/api-keys/:id", s.getKey)
	api.PATCH("/api-keys/:id", s.updateKey)
	api.DELETE("/api-keys/:id", s.deleteKey)
	api.POST("/api-keys/:id/rotate", s.rotateKey)
	api.GET("/api-keys/:id/usage", s.keyUsage)
	api.GET("/audit-events", s.listAuditEvents)
	api.DELETE("/users/:id", s.deleteUser)
	api.DELETE("/tenants/:id", s.deleteTenant)
	s.ceilingRoutes(api)
	if cfg.MCP != nil {
		s.mcpRoutes(api)
	}
	if cfg.PolicyStatus != nil {
		s.policyRoutes(api)
	}

	for path, h := range cfg.Mounts {
		for _, m := range mountMethods {
			r.Handle(m, path, gin.WrapH(h))
		}
	}
	s.router = r
	return s, nil
}

// mountMethods are the methods a mount is served for; any other is a 405
// problem, as everywhere else.
var mountMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete}

// Router returns the gin engine, for tests and for mounting more routes.
func (s *Server) Router() *gin.Engine { return s.router }

// ServeHTTP serves a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

func (s *Server) readyz(c *gin.Context) {
	body := gin.H{}
	if s.detail != nil {
		for k, v := range s.detail(c.Request.Context()) {
			body[k] = v
		}
	}
	if s.ready != nil {
		if err := s.ready(c.Request.Context()); err != nil {
			loggerFrom(c).Warn("not ready", "err", err)
			body["status"], body["detail"] = "unavailable", authz.ErrorMessage(err)
			writeJSON(c, http.StatusServiceUnavailable, body)
			return
		}
	}
	body["status"] = "ready"
	writeJSON(c, http.StatusOK, body)
}
