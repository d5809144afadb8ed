package client

import (
	"context"
	"errors"
	"net/http"
)

// Authorize asks whether a key may do an action on a resource. A refused
// key is a Decision whose Code says why, not an error. Deciding changes
// nothing, so the request is retried like a GET.
func (c *Client) Authorize(ctx context.Context, req AuthorizeRequest) (*Decision, error) {
	out := new(Decision)
	return out, c.do(ctx, call{method: http.MethodPost, path: "/v1/authorize", body: req, anonymous: true, idempotent: true, out: out})
}

// AuthorizeBatch asks up to 100 questions about one key in one policy
// evaluation; the results are in the order of checks.
func (c *Client) AuthorizeBatch(ctx context.Context, apiKey string, checks []Check) (*BatchDecision, error) {
	out := new(BatchDecision)
	body := struct {
		APIKey string  `json:"api_key"`
		Checks []Check `json:"checks"`
	}{apiKey, checks}
	return out, c.do(ctx, call{method: http.MethodPost, path: "/v1/authorize", body: body, anonymous: true, idempotent: true, out: out})
}

// ForwardAuth asks what forward auth answers a gateway about a request it
// forwards, as Traefik asks (X-Forwarded-Method and X-Forwarded-Uri), for
// testing a gateway's configuration or a policy's HTTP mapping
// (policies/http.rego) from Go. Allowed, it returns the headers a gateway
// passes upstream; refused, an *Error: 401 (CodeUnauthorized or a KEY_*
// code), 403 (CodeForbidden) or 429 (CodeRateLimited, or the key's own
// CodeKeyRateLimited and CodeUsageExceeded), with Reasons and DecisionID.
// It is sent once: each request counts against the key's limits.
func (c *Client) ForwardAuth(ctx context.Context, req ForwardAuthRequest) (*ForwardAuthResult, error) {
	if req.APIKey == "" {
		return nil, errors.New("keygate: an API key is required")
	}
	h := http.Header{}
	setHeader(h, "X-Forwarded-Method", req.Method)
	setHeader(h, "X-Forwarded-Uri", req.URI)
	var answer http.Header
	if err := c.do(ctx, call{method: http.MethodGet, path: "/v1/forward-auth", header: h, bearer: req.APIKey, outHeader: &answer}); err != nil {
		return nil, err
	}
	return &ForwardAuthResult{KeyID: answer.Get("X-Keygate-Key-Id"), TenantID: answer.Get("X-Keygate-Tenant-Id"),
		UserID: answer.Get("X-Keygate-User-Id"), DecisionID: answer.Get("X-Keygate-Decision-Id")}, nil
}

func setHeader(h http.Header, name, value string) {
	if value != "" {
		h.Set(name, value)
	}
}

// WhoAmI returns what an API key says of itself.
func (c *Client) WhoAmI(ctx context.Context, apiKey string) (*Identity, error) {
	if apiKey == "" {
		return nil, errors.New("keygate: an API key is required")
	}
	out := new(Identity)
	return out, c.do(ctx, call{method: http.MethodGet, path: "/v1/whoami", bearer: apiKey, idempotent: true, out: out})
}

// Health reports whether the process is alive.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	out := new(Health)
	return out, c.do(ctx, call{method: http.MethodGet, path: "/healthz", anonymous: true, idempotent: true, out: out})
}

// Ready reports whether the instance can serve. Not ready, it returns the
// Readiness and an *Error with CodeUnavailable whose Detail says why; it
// is asked once, as a probe should be.
func (c *Client) Ready(ctx context.Context) (*Readiness, error) {
	out := new(Readiness)
	err := c.do(ctx, call{method: http.MethodGet, path: "/readyz", anonymous: true, out: out, errOut: out})
	if e := (*Error)(nil); errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && out.Status != "" {
		e.Code, e.Detail = CodeUnavailable, out.Detail
		return out, e
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OpenAPI returns the OpenAPI 3.1 document keygate serves.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	var raw []byte
	return raw, c.do(ctx, call{method: http.MethodGet, path: "/openapi.json", anonymous: true, idempotent: true, out: &raw})
}
