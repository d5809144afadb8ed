package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// Forward auth: a gateway (nginx auth_request, Traefik ForwardAuth, Envoy's
// ext_authz over HTTP or gRPC) asks keygate about each request before it
// passes it on. The policy's HTTP mapping (policies/http.rego) says which
// check the request means, and authz.KeyService.Decide decides it.

// ForwardAuthPath is the forward auth endpoint; any method, and any path
// below it (Envoy appends the request's path to it).
const ForwardAuthPath = "/v1/forward-auth"

// Headers an allowed request is answered with, for the gateway to pass to
// the upstream.
const (
	HeaderKeyID      = "X-Keygate-Key-Id"
	HeaderTenantID   = "X-Keygate-Tenant-Id"
	HeaderUserID     = "X-Keygate-User-Id"
	HeaderDecisionID = "X-Keygate-Decision-Id"
)

// The headers that name the request a gateway forwards: Traefik's, then
// nginx's by the configuration keygate documents.
var (
	methodHeaders = [2]string{"X-Forwarded-Method", "X-Original-Method"}
	uriHeaders    = [2]string{"X-Forwarded-Uri", "X-Original-Uri"}
)

// gatewayAnswer is what a gateway is told about a request it forwards:
// allowed, with the headers for the upstream; or refused, with a status,
// the headers of the refusal and a problem for the client.
type gatewayAnswer struct {
	status   int
	upstream [][2]string // allowed: the X-Keygate-* headers
	header   [][2]string // refused: WWW-Authenticate, Retry-After
	problem  *Problem
}

// decideForwarded decides a forwarded request with the key presented and
// says what to answer the gateway.
func (s *Server) decideForwarded(ctx context.Context, logger *slog.Logger, token string, r authz.HTTPRequest, source, requestID string) gatewayAnswer {
	refuse := func(status int, code, detail string) gatewayAnswer {
		p := makeProblem(requestID, status, code, detail, nil)
		a := gatewayAnswer{status: status, problem: &p}
		if status == http.StatusUnauthorized {
			a.header = append(a.header, [2]string{"WWW-Authenticate", `Bearer realm="keygate"`})
		}
		return a
	}
	if token == "" {
		return refuse(http.StatusUnauthorized, authz.EUNAUTHORIZED,
			"an API key is required (Authorization: Bearer pk_… or "+APIKeyHeader+")")
	}
	res, err := s.keys.Decide(ctx, authz.DecisionRequest{Token: token, HTTP: &r, Source: source})
	if err == nil && res.Allowed() {
		p := res.Principal
		return gatewayAnswer{status: http.StatusOK, upstream: [][2]string{
			{HeaderKeyID, p.KeyID}, {HeaderTenantID, p.TenantID}, {HeaderUserID, p.UserID}, {HeaderDecisionID, res.DecisionID},
		}}
	}
	if err == nil {
		err = decisionRefusal(res)
	} else if authz.ErrorCode(err) == authz.EINTERNAL {
		logger.LogAttrs(ctx, slog.LevelError, "forward auth failed", slog.String("err", err.Error()))
	}
	code := authz.ErrorCode(err)
	a := refuse(ErrorStatus(code), code, authz.ErrorMessage(err))
	if wait := authz.ErrorRetryAfter(err); wait > 0 {
		a.header = append(a.header, [2]string{"Retry-After", RetryAfterSeconds(wait)})
	}
	if res != nil {
		a.problem.Reasons, a.problem.DecisionID = res.Decisions[0].Reasons, res.DecisionID
	}
	return a
}

// decisionRefusal is the error a decision that is not an allow answers
// with: a denial is EFORBIDDEN with the policy's reasons; a refused key its
// code; a per-key limit its code, which says 429, and when to try again.
func decisionRefusal(res *authz.DecisionResult) error {
	code := res.Code
	if code == authz.CodeDenied {
		code = authz.EFORBIDDEN
	}
	err := &authz.Error{Code: code, Message: strings.Join(res.Decisions[0].Reasons, "; ")}
	if ErrorStatus(code) == http.StatusTooManyRequests {
		return &authz.RetryLater{Err: err, After: res.RetryAfter}
	}
	return err
}

// forwardAuth answers /v1/forward-auth: 200 with the X-Keygate-* headers
// when the key may make the forwarded request; otherwise 401, 403 or 429
// with a problem, which gateways pass on to the client.
func (s *Server) forwardAuth(c *gin.Context) {
	token, from := apiKeyFrom(c.Request.Header)
	a := s.decideForwarded(c.Request.Context(), loggerFrom(c), token, forwardedRequest(c.Request),
		authz.SourceForwardAuth, requestID(c))
	if a.status == http.StatusOK {
		for _, h := range a.upstream {
			c.Header(h[0], h[1])
		}
		// Envoy's HTTP ext_authz removes the key from the request it
		// forwards; nginx and Traefik are configured to (README.md).
		c.Header(envoyHeadersToRemove, from)
		c.Status(http.StatusOK)
		return
	}
	for _, h := range a.header {
		c.Header(h[0], h[1])
	}
	c.Abort()
	c.Render(a.status, problemRender{*a.problem})
}

// envoyHeadersToRemove names, in an answer to Envoy's HTTP ext_authz, the
// request headers Envoy drops before forwarding the request.
const envoyHeadersToRemove = "X-Envoy-Auth-Headers-To-Remove"

// apiKey is the credential of `Authorization: Bearer` or, without one,
// X-API-Key.
func apiKey(h http.Header) string {
	token, _ := apiKeyFrom(h)
	return token
}

// apiKeyFrom is apiKey and the header it came in.
func apiKeyFrom(h http.Header) (token, header string) {
	if token := bearerCredential(h.Get("Authorization")); token != "" {
		return token, "authorization"
	}
	return strings.TrimSpace(h.Get(APIKeyHeader)), "x-api-key"
}

// forwardedRequest is the request a gateway asks about: its method and URI
// from Traefik's or nginx's headers, else the request itself (Envoy sends
// the method as is and the path after ForwardAuthPath). Traefik's and
// nginx's headers naming different requests, or one header given twice,
// are refused: a client may have sent the one its gateway does not set.
func forwardedRequest(r *http.Request) authz.HTTPRequest {
	method, okMethod := forwardedHeader(r.Header, methodHeaders)
	uri, okURI := forwardedHeader(r.Header, uriHeaders)
	if !okMethod || !okURI {
		return authz.HTTPRequest{Refused: "the request names the forwarded method or URI twice, differently (X-Forwarded-* and X-Original-*)"}
	}
	if method == "" {
		method = r.Method
	}
	if uri == "" {
		uri = strings.TrimPrefix(r.URL.EscapedPath(), ForwardAuthPath)
		if uri == "" {
			uri = "/"
		}
	}
	return authz.HTTPRequest{Method: method, URI: uri}
}

// forwardedHeader is the value of whichever of names is present; false when
// they disagree or one is given twice.
func forwardedHeader(h http.Header, names [2]string) (string, bool) {
	value := ""
	for _, name := range names {
		switch vs := h.Values(name); {
		case len(vs) > 1:
			return "", false
		case len(vs) == 1 && value != "" && vs[0] != value:
			return "", false
		case len(vs) == 1:
			value = vs[0]
		}
	}
	return value, true
}
