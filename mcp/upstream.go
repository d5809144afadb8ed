package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/keygate/keygate/authz"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// upstreamProtocolVersion is what keygate speaks to upstreams: the newest
// version with the session handshake, which every current server supports,
// so a connect costs no failed server/discover round trip first.
const upstreamProtocolVersion = "2025-11-25"

// pool keeps one client session per upstream server and reuses it for every
// call and sync, reconnecting when the server's settings change or the
// session fails. Each session listens for notifications/tools/list_changed.
type pool struct {
	base          http.RoundTripper
	version       string
	logger        *slog.Logger
	onListChanged func(srv *authz.MCPServer)
	maxResponse   int64 // bounds one answer; base enforces it on POSTs

	mu    sync.Mutex
	conns map[string]*upstreamConn // by server id
}

// upstreamConn is the session of one server. mu serializes connecting, so
// callers racing a cold or broken session open one session, not several.
type upstreamConn struct {
	mu      sync.Mutex
	srv     *authz.MCPServer // the settings the session was opened with
	session *sdk.ClientSession
}

func newPool(base http.RoundTripper, version string, logger *slog.Logger, onListChanged func(*authz.MCPServer)) *pool {
	return &pool{base: base, version: version, logger: logger, onListChanged: onListChanged, conns: make(map[string]*upstreamConn)}
}

// defaultTransport is the connection pool every upstream shares. Go's
// default keeps two idle connections per host, too few for concurrent calls
// to one upstream, each of which would then pay for a new connection. Every
// dial is checked by the SSRF guard (ssrf.go), and no proxy from the
// environment is used: through a proxy the guard would only see the proxy.
func defaultTransport(allow []netip.Prefix) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = guardedDialer(allow).DialContext
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 64
	return t
}

func (p *pool) conn(id string) *upstreamConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[id]
	if c == nil {
		c = &upstreamConn{}
		p.conns[id] = c
	}
	return c
}

// session returns srv's open session, opening one when there is none or it
// was opened with other settings.
func (p *pool) session(ctx context.Context, srv *authz.MCPServer) (*sdk.ClientSession, error) {
	c := p.conn(srv.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil && c.srv.SameConfig(srv) {
		return c.session, nil
	}
	if c.session != nil {
		closeSession(c.session)
		c.session = nil
	}
	cs, err := p.connect(ctx, srv)
	if err != nil {
		return nil, err
	}
	c.srv, c.session = srv, cs
	return cs, nil
}

// drop closes srv's session if it is still cs (nil: whatever it is), so the
// next use reconnects.
func (p *pool) drop(id string, cs *sdk.ClientSession) {
	p.mu.Lock()
	c := p.conns[id]
	p.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil && (cs == nil || c.session == cs) {
		closeSession(c.session)
		c.session = nil
	}
}

// retain closes the sessions of tenantID's servers that are not in servers
// or were opened with settings servers no longer have.
func (p *pool) retain(tenantID string, servers map[string]*authz.MCPServer) {
	p.mu.Lock()
	var stale []string
	for id, c := range p.conns {
		c.mu.Lock()
		if c.srv != nil && c.srv.TenantID == tenantID {
			if cur, ok := servers[id]; !ok || !cur.SameConfig(c.srv) {
				stale = append(stale, id)
			}
		}
		c.mu.Unlock()
	}
	p.mu.Unlock()
	for _, id := range stale {
		p.drop(id, nil)
	}
}

// closeAll closes every session, telling each upstream the session ended,
// and returns when all are closed.
func (p *pool) closeAll() {
	p.mu.Lock()
	var sessions []*sdk.ClientSession
	for _, c := range p.conns {
		c.mu.Lock()
		if c.session != nil {
			sessions = append(sessions, c.session)
			c.session = nil
		}
		c.mu.Unlock()
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, cs := range sessions {
		wg.Go(func() { _ = cs.Close() })
	}
	wg.Wait()
}

// closeSession ends a session without waiting: Close sends the upstream a
// DELETE, which must not hold up a caller.
func closeSession(cs *sdk.ClientSession) {
	go func() { _ = cs.Close() }()
}

func (p *pool) connect(ctx context.Context, srv *authz.MCPServer) (*sdk.ClientSession, error) {
	client := sdk.NewClient(&sdk.Implementation{Name: "keygate", Version: p.version}, &sdk.ClientOptions{
		// keygate answers no sampling, elicitation or roots requests: an
		// upstream must not reach the gateway's clients through it.
		Capabilities: &sdk.ClientCapabilities{},
		ToolListChangedHandler: func(context.Context, *sdk.ToolListChangedRequest) {
			if p.onListChanged != nil {
				p.onListChanged(srv)
			}
		},
		Logger: p.logger,
	})
	transport := &sdk.StreamableClientTransport{
		Endpoint:   srv.URL,
		HTTPClient: upstreamHTTPClient(p.base, srv.Headers),
		// One event of the standalone stream is bounded like an answer,
		// and a cut stream is not replayed (no retry of a large answer).
		MaxEventSize: int(p.maxResponse),
		MaxRetries:   -1,
	}
	cs, err := client.Connect(ctx, transport, &sdk.ClientSessionOptions{ProtocolVersion: upstreamProtocolVersion})
	if err != nil {
		return nil, err
	}
	return cs, nil
}

// upstreamHTTPClient sends srv's configured headers, and nothing of the
// client's request, on every request to the upstream. It follows no
// redirect: the headers are the upstream's credentials, and a redirect
// would hand them to whatever host it names.
func upstreamHTTPClient(base http.RoundTripper, headers map[string]string) *http.Client {
	h := make(http.Header, len(headers))
	for name, value := range headers {
		h.Set(name, value)
	}
	return &http.Client{
		Transport:     &headerTransport{base: base, headers: h},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type headerTransport struct {
	base    http.RoundTripper
	headers http.Header
}

// RoundTrip adds the configured headers to a copy of r, since a
// RoundTripper must not change the request it is given.
func (t *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 {
		r = r.Clone(r.Context())
		for name, values := range t.headers {
			r.Header[name] = values
		}
	}
	return t.base.RoundTrip(r)
}

// retryable reports whether err says the request never reached a live
// session (it was closed, or the upstream forgot it), so trying once more on
// a new session cannot run a tool twice.
func retryable(err error) bool {
	return errors.Is(err, sdk.ErrConnectionClosed) || errors.Is(err, sdk.ErrSessionMissing)
}

// sdkTransportCodes are the JSON-RPC codes the go-sdk gives its own
// transport conditions (client closing, server closing, rejected by the
// transport, as for an HTTP error status); an error carrying one is a
// failure to reach the upstream, not its answer, even when it also wraps a
// JSON-RPC error from an HTTP error body.
var sdkTransportCodes = []int64{-32003, -32004, -32005}

// upstreamAnswer returns the JSON-RPC error the upstream answered a call
// with, if err is one.
func upstreamAnswer(err error) (*jsonrpc.Error, bool) {
	if err == nil || retryable(err) {
		return nil, false
	}
	for _, code := range sdkTransportCodes {
		if errors.Is(err, &jsonrpc.Error{Code: code}) {
			return nil, false
		}
	}
	var rpcErr *jsonrpc.Error
	if errors.As(err, &rpcErr) {
		return rpcErr, true
	}
	return nil, false
}

// listTools fetches srv's tools, every page, on its pooled session; a session
// that fails is replaced once, so a sync also repairs a broken session.
func (p *pool) listTools(ctx context.Context, srv *authz.MCPServer) ([]*authz.MCPTool, error) {
	var tools []*authz.MCPTool
	var err error
	ctx, probe := withSizeProbe(ctx)
	for attempt := range 2 {
		var cs *sdk.ClientSession
		if cs, err = p.session(ctx, srv); err != nil {
			if probe.Tripped() {
				return nil, p.tooLarge(err)
			}
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		tools = tools[:0]
		for t, lerr := range cs.Tools(ctx, nil) {
			if lerr != nil {
				err = lerr
				break
			}
			if len(tools) > authz.MaxMCPToolsPerServer {
				break // the service refuses the list; no need to read more
			}
			tools = append(tools, toolFromSDK(t))
		}
		if err == nil {
			return tools, nil
		}
		p.drop(srv.ID, cs)
		if probe.Tripped() {
			return nil, p.tooLarge(err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// tooLarge is the error of a request whose answer was cut at maxResponse,
// whatever the SDK made of the cut.
func (p *pool) tooLarge(err error) error {
	var tle *tooLargeError
	if errors.As(err, &tle) {
		return tle
	}
	return &tooLargeError{max: p.maxResponse}
}

func toolFromSDK(t *sdk.Tool) *authz.MCPTool {
	marshal := func(v any) json.RawMessage {
		if v == nil {
			return nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil
		}
		return b
	}
	out := &authz.MCPTool{
		Name:         t.Name,
		Title:        t.Title,
		Description:  t.Description,
		InputSchema:  marshal(t.InputSchema),
		OutputSchema: marshal(t.OutputSchema),
	}
	if t.Annotations != nil {
		out.Annotations = marshal(t.Annotations)
	}
	return out
}

// call runs one tool on srv's pooled session. A call that never reached a
// live session is retried once on a new one; a session that fails otherwise
// is dropped, so the next call reconnects.
func (p *pool) call(ctx context.Context, srv *authz.MCPServer, tool string, args json.RawMessage) (*sdk.CallToolResult, error) {
	params := &sdk.CallToolParams{Name: tool}
	if len(args) > 0 {
		params.Arguments = args
	}
	var err error
	ctx, probe := withSizeProbe(ctx)
	for attempt := range 2 {
		var cs *sdk.ClientSession
		if cs, err = p.session(ctx, srv); err != nil {
			if probe.Tripped() {
				return nil, p.tooLarge(err)
			}
			return nil, err
		}
		var res *sdk.CallToolResult
		res, err = cs.CallTool(ctx, params)
		if err == nil {
			return res, nil
		}
		if probe.Tripped() {
			// The tool ran; its answer is thrown away, never asked again.
			return nil, p.tooLarge(err)
		}
		if _, ok := upstreamAnswer(err); ok {
			return nil, err // the upstream's own answer to this call
		}
		p.drop(srv.ID, cs)
		if attempt > 0 || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

// upstreamError describes why srv could not be reached, for the sync_error
// an admin reads, the audit trail and logs: a short category (category.go),
// never the raw error, which could quote the URL, a header or what an
// internal address answered.
func upstreamError(err error, srv *authz.MCPServer) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("%s: no answer within %s", categoryTimeout, srv.Timeout())
	}
	return scrub(category(err), srv)
}

// scrub removes srv's URL, its query and its header values from msg and
// bounds its length.
func scrub(msg string, srv *authz.MCPServer) string {
	secrets := []string{srv.URL}
	if u, err := url.Parse(srv.URL); err == nil {
		secrets = append(secrets, u.RawQuery, u.Query().Encode(), u.Path+"?"+u.RawQuery)
	}
	for _, v := range srv.Headers {
		secrets = append(secrets, v)
		if _, after, ok := strings.Cut(v, " "); ok {
			secrets = append(secrets, after) // "Bearer abc": abc alone too
		}
	}
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	const maxLen = 300
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	return msg
}

// unavailable wraps a scrubbed reason as the EUNAVAILABLE error
// authz.MCPUpstreams promises.
func unavailable(err error, srv *authz.MCPServer) error {
	return authz.Errorf(authz.EUNAVAILABLE, "%s", upstreamError(err, srv))
}

// callTimeout reports whether err is the per-call deadline passing.
func callTimeout(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)
}
