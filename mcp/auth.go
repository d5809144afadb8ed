package mcp

import (
	"context"
	"errors"
	"net/http"

	"github.com/keygate/keygate/authz"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"
)

// extraKey names keygate's entry in auth.TokenInfo.Extra.
const extraKey = "keygate"

// requestAuth is what authentication learned about one HTTP request. Method
// handlers read it from that request's TokenInfo; their context belongs to
// the session (it outlives the request that opened it), so the request's id,
// address and span must come from here, not from the context.
type requestAuth struct {
	principal *authz.Principal
	info      authz.RequestInfo
	span      trace.SpanContext
}

// authState carries how authentication failed out of the SDK's middleware
// to challengeWriter.
type authState struct {
	unavailable bool
	limited     error // the address is over its failed-authentication budget
	requestID   string
}

type authStateKey struct{}

// tokenError is a refused key; it unwraps to auth.ErrInvalidToken so the
// SDK answers 401, with keygate's reason as the body.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return e.msg }

func (e *tokenError) Unwrap() error { return auth.ErrInvalidToken }

func (g *Gateway) newHandler() http.Handler {
	streamable := sdk.NewStreamableHTTPHandler(g.serverFor, &sdk.StreamableHTTPOptions{
		Logger:         g.sdkLogger(),
		SessionTimeout: g.opts.SessionTimeout,
		// The SDK refuses a loopback connection whose Host is not loopback,
		// against DNS rebinding of unauthenticated local servers. Every
		// request here needs an API key a browser never attaches on its own,
		// and keygate commonly sits behind a proxy on the same host, so the
		// check would refuse real clients and protect nothing.
		DisableLocalhostProtection: true,
	})
	// No ResourceMetadataURL and no scopes: the 401 names no OAuth metadata,
	// so clients do not start an OAuth flow keygate does not offer.
	bearer := auth.RequireBearerToken(g.verify, &auth.RequireBearerTokenOptions{
		// A key's expiry is checked by the key service on keygate's clock;
		// TokenInfo carries none.
		AllowMissingExpiration: true,
	})
	limited := g.sessions.limit(streamable)
	inner := bearer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cw, ok := w.(*challengeWriter); ok {
			w = cw.ResponseWriter // authenticated: streams need no wrapper
		}
		limited.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &authState{}
		ctx := context.WithValue(r.Context(), authStateKey{}, st)
		if info := authz.RequestInfoFromContext(ctx); info.IP == "" {
			// Served without keygate's router: the failed-authentication
			// budget needs the peer's address.
			info.IP = peerIP(r)
			ctx = authz.NewContextWithRequestInfo(ctx, info)
		}
		r = r.WithContext(ctx)
		inner.ServeHTTP(&challengeWriter{ResponseWriter: w, state: st}, r)
	})
}

// verify is the SDK's TokenVerifier: it runs on every HTTP request.
func (g *Gateway) verify(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
	p, err := g.opts.Keys.Authenticate(ctx, token)
	if err != nil {
		switch code := authz.ErrorCode(err); code {
		case authz.KeyInvalid, authz.KeyDisabled, authz.KeyExpired, authz.EUNAUTHORIZED:
			return nil, &tokenError{msg: authz.ErrorMessage(err)}
		case authz.EUNAVAILABLE:
			if st, ok := ctx.Value(authStateKey{}).(*authState); ok {
				st.unavailable = true
			}
		case authz.ERATELIMIT:
			if st, ok := ctx.Value(authStateKey{}).(*authState); ok {
				st.limited, st.requestID = err, authz.RequestInfoFromContext(ctx).RequestID
			}
		default:
			g.requestLogger(authz.RequestInfoFromContext(ctx)).Error("MCP authentication failed", "err", err)
		}
		return nil, errors.New(authz.ErrorMessage(err))
	}
	return &auth.TokenInfo{
		// The SDK binds a session to the UserID that opened it, so another
		// key cannot ride on a session it did not start.
		UserID: p.KeyID,
		Extra: map[string]any{extraKey: &requestAuth{
			principal: p,
			info:      authz.RequestInfoFromContext(ctx),
			span:      trace.SpanContextFromContext(ctx),
		}},
	}, nil
}

// challengeWriter completes the SDK's authentication answers: a 401 names
// keygate's realm, as RFC 6750 asks, keys that cannot be looked up are a
// 503 the client may retry rather than a 500, and an address over its
// failed-authentication budget is a 429 problem, as on keygate's other
// surfaces.
type challengeWriter struct {
	http.ResponseWriter
	state   *authState
	wrote   bool
	replace bool // the SDK's body is dropped; the answer was written here
}

func (w *challengeWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	switch {
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="keygate"`)
	case status == http.StatusInternalServerError && w.state.limited != nil:
		w.replace = true
		writeRateLimited(w.ResponseWriter, w.state.limited, w.state.requestID)
		return
	case status == http.StatusInternalServerError && w.state.unavailable:
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *challengeWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.replace {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *challengeWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *challengeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func authFrom(ti *auth.TokenInfo) *requestAuth {
	if ti == nil {
		return nil
	}
	ra, _ := ti.Extra[extraKey].(*requestAuth)
	return ra
}

// requestContext returns the request's authentication and ctx carrying the
// request's facts (id, address, span) in place of the session's.
func (g *Gateway) requestContext(ctx context.Context, t *tenant, req sdk.Request) (*requestAuth, context.Context, error) {
	var ra *requestAuth
	if extra := req.GetExtra(); extra != nil {
		ra = authFrom(extra.TokenInfo)
	}
	if ra == nil || ra.principal == nil || ra.principal.TenantID != t.id {
		// Unreachable behind the bearer middleware; refuse rather than guess.
		return nil, ctx, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "the request carries no API key"}
	}
	ctx = authz.NewContextWithRequestInfo(ctx, ra.info)
	ctx = authz.NewContextWithPrincipal(ctx, ra.principal)
	if ra.span.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, ra.span)
	}
	return ra, ctx, nil
}
