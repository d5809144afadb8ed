package server

import (
	"context"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// APIKeyHeader is the alternative to `Authorization: Bearer pk_…`.
const APIKeyHeader = "X-API-Key"

// Authenticator turns a token into a principal; *authz.KeyService is one.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*authz.Principal, error)
}

// Decider decides checks; *authz.KeyService is one.
type Decider interface {
	Decide(ctx context.Context, req authz.DecisionRequest) (*authz.DecisionResult, error)
}

// RequireAPIKey authenticates the request's API key (`Authorization: Bearer
// pk_…` or `X-API-Key`) and puts its principal into the request context
// (authz.PrincipalFromContext) and the gin context (PrincipalFrom). A missing
// or refused key is a 401 problem whose code says why; an address over its
// failed-authentication budget is a 429 with Retry-After. Go services built
// on gin can use it as is.
func RequireAPIKey(auth Authenticator) gin.HandlerFunc {
	return func(c *gin.Context) {
		token := apiKey(c.Request.Header)
		if token == "" {
			writeError(c, authz.Errorf(authz.EUNAUTHORIZED, "an API key is required (Authorization: Bearer pk_… or %s)", APIKeyHeader))
			return
		}
		if authz.RequestInfoFromContext(c.Request.Context()).IP == "" {
			// Mounted in another service's router: the failed
			// authentication budget needs the client's address.
			info := authz.RequestInfo{IP: c.ClientIP(), UserAgent: authz.Truncate(c.Request.UserAgent(), 256)}
			c.Request = c.Request.WithContext(authz.NewContextWithRequestInfo(c.Request.Context(), info))
		}
		p, err := auth.Authenticate(c.Request.Context(), token)
		if err != nil {
			writeError(c, err)
			return
		}
		c.Set(ctxPrincipal, p)
		c.Request = c.Request.WithContext(authz.NewContextWithPrincipal(c.Request.Context(), p))
		c.Next()
	}
}

// PrincipalFrom returns the principal RequireAPIKey stored, or nil.
func PrincipalFrom(c *gin.Context) *authz.Principal {
	if v, ok := c.Get(ctxPrincipal); ok {
		if p, ok := v.(*authz.Principal); ok {
			return p
		}
	}
	return authz.PrincipalFromContext(c.Request.Context())
}

// RequirePermission lets the request through only when the policy allows the
// authenticated key to do action on the resource of type rt whose id id
// returns (Param reads it from the route). It must follow RequireAPIKey. A
// denial is a 403 problem carrying the policy's reasons; a key over its
// rate limit or out of credits is a 429 problem (code RATE_LIMITED or
// USAGE_EXCEEDED) with Retry-After when it is known.
func RequirePermission(d Decider, rt authz.ResourceType, action string, id func(*gin.Context) string) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := PrincipalFrom(c)
		if p == nil {
			writeError(c, authz.Errorf(authz.EUNAUTHORIZED, "an API key is required"))
			return
		}
		check := authz.Check{Resource: authz.Resource{Type: rt, ID: id(c), TenantID: p.TenantID}, Action: action}
		res, err := d.Decide(c.Request.Context(), authz.DecisionRequest{
			Principal: p, Checks: []authz.Check{check}, Source: authz.SourceMiddleware})
		if err != nil {
			writeError(c, err)
			return
		}
		if !res.Allowed() {
			writeError(c, decisionRefusal(res))
			return
		}
		c.Next()
	}
}

// Param returns a function reading the named route parameter, for
// RequirePermission.
func Param(name string) func(*gin.Context) string {
	return func(c *gin.Context) string { return c.Param(name) }
}
