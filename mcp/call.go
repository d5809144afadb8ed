package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// middleware puts the policy in front of the SDK's tools/list and
// tools/call for one tenant's server.
func (g *Gateway) middleware(t *tenant) sdk.Middleware {
	return func(next sdk.MethodHandler) sdk.MethodHandler {
		return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
			switch method {
			case "tools/list":
				return g.listTools(ctx, t, next, method, req)
			case "tools/call":
				return g.callTool(ctx, t, next, method, req)
			}
			return next(ctx, method, req)
		}
	}
}

func internalError(msg string) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: msg}
}

func toolCheck(p *authz.Principal, name string) authz.Check {
	return authz.Check{
		Resource: authz.Resource{Type: authz.ResourceMCPTool, ID: name, TenantID: p.TenantID},
		Action:   authz.ActionMCPToolCall,
	}
}

// listTools answers tools/list with the page of the tenant's reachable tools
// the key may call, decided in one policy evaluation.
func (g *Gateway) listTools(ctx context.Context, t *tenant, next sdk.MethodHandler, method string, req sdk.Request) (sdk.Result, error) {
	ra, ctx, err := g.requestContext(ctx, t, req)
	if err != nil {
		return nil, err
	}
	ctx, span := g.tracer.Start(ctx, "mcp.tools/list")
	defer span.End()
	if _, err := g.catalog(ctx, t); err != nil {
		g.requestLogger(ra.info).Error("MCP catalog not read", "err", err)
		span.SetStatus(codes.Error, "catalog")
		return nil, internalError("the tool catalog cannot be read right now")
	}
	res, err := next(ctx, method, req)
	if err != nil {
		return nil, err
	}
	page, ok := res.(*sdk.ListToolsResult)
	if !ok || len(page.Tools) == 0 {
		return res, nil
	}
	p := ra.principal
	checks := make([]authz.Check, len(page.Tools))
	for i, tool := range page.Tools {
		checks[i] = toolCheck(p, tool.Name)
	}
	decided, err := g.opts.Keys.Decide(ctx, authz.DecisionRequest{Principal: p, Checks: checks, Listing: true, Source: authz.SourceMCP})
	if err != nil {
		g.requestLogger(ra.info).Error("MCP tool list not decided", "err", err)
		span.SetStatus(codes.Error, "decision")
		return nil, internalError("the tool list cannot be decided right now")
	}
	// A new result: the page's tools belong to the SDK server.
	out := &sdk.ListToolsResult{Meta: page.Meta, NextCursor: page.NextCursor, Tools: make([]*sdk.Tool, 0, len(page.Tools))}
	for i, tool := range page.Tools {
		if decided.Decisions[i].Allow {
			out.Tools = append(out.Tools, tool)
		}
	}
	span.SetAttributes(attribute.Int("mcp.tools.offered", len(page.Tools)), attribute.Int("mcp.tools.listed", len(out.Tools)),
		attribute.String("keygate.decision_id", decided.DecisionID))
	if g.logger.Enabled(ctx, slog.LevelDebug) {
		g.requestLogger(ra.info).Debug("MCP tools listed", "key_id", p.KeyID, "offered", len(page.Tools), "listed", len(out.Tools), "decision_id", decided.DecisionID)
	}
	return out, nil
}

// Results of a tool call, the "result" of its audit event and the outcome
// attribute of keygate.mcp.tool_calls.
const (
	resultOK            = "ok"             // proxied; the tool succeeded
	resultToolError     = "tool_error"     // proxied; the tool reported an error
	resultDenied        = "denied"         // the policy refused
	resultUnknown       = "unknown_tool"   // no such tool in the catalog
	resultUnavailable   = "unavailable"    // the upstream could not be reached
	resultTimeout       = "timeout"        // the upstream did not answer in time
	resultUpstreamError = "upstream_error" // the upstream refused the call
	resultTooLarge      = "too_large"      // the upstream's answer was over MaxResponseBytes
	resultError         = "error"          // keygate failed
	resultRateLimited   = "rate_limited"   // the key is over its rate limit
	resultNoCredits     = "usage_exceeded" // the key has no credits left
)

// callRecord follows one tools/call from the decision through the proxy to
// its audit event.
type callRecord struct {
	name       string // as the client sent it
	allowed    bool
	decisionID string
	reasons    []string
	tool       *authz.MCPTool
	server     *authz.MCPServer
	upstream   string // the name of the tool's server, when the catalog has the tool
	result     string
	reason     string // why it failed, scrubbed of secrets
}

type callRecordKey struct{}

// callTool decides tools/call first: a denied or unknown tool is a JSON-RPC
// error and the upstream is not contacted. An allowed call goes to the SDK,
// which routes it to proxy.
func (g *Gateway) callTool(ctx context.Context, t *tenant, next sdk.MethodHandler, method string, req sdk.Request) (res sdk.Result, err error) {
	start := time.Now()
	ra, ctx, err := g.requestContext(ctx, t, req)
	if err != nil {
		return nil, err
	}
	params, _ := req.GetParams().(*sdk.CallToolParamsRaw)
	if params == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "tools/call needs params"}
	}
	rec := &callRecord{name: params.Name}
	ctx, span := g.tracer.Start(ctx, "mcp.tools/call", trace.WithAttributes(attribute.String("mcp.tool.name", authz.Truncate(params.Name, authz.MaxResourceIDLen))))
	defer func() { g.finishCall(ctx, span, ra, rec, start, err) }()

	v, err := g.catalog(ctx, t)
	if err != nil {
		rec.result, rec.reason = resultError, "the catalog could not be read"
		g.requestLogger(ra.info).Error("MCP catalog not read", "err", err)
		return nil, internalError("the tool catalog cannot be read right now")
	}
	decided, err := g.opts.Keys.Decide(ctx, authz.DecisionRequest{
		Principal: ra.principal, Checks: []authz.Check{toolCheck(ra.principal, params.Name)}, Source: authz.SourceMCP})
	if err != nil {
		if authz.ErrorCode(err) == authz.EINVALID {
			rec.result, rec.reason = resultUnknown, "the tool name is not valid"
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %.200q: a tool name is 1 to %d characters", params.Name, authz.MaxResourceIDLen)}
		}
		rec.result, rec.reason = resultError, "the call could not be decided"
		g.requestLogger(ra.info).Error("MCP tool call not decided", "err", err)
		return nil, internalError("the call cannot be decided right now")
	}
	rec.decisionID, rec.reasons = decided.DecisionID, decided.Decisions[0].Reasons
	if tool := v.tools[params.Name]; tool != nil {
		rec.upstream = v.servers[tool.ServerID].Name
	}
	if err := limitedError(params.Name, decided); err != nil {
		rec.result, rec.reason = resultRateLimited, strings.Join(rec.reasons, "; ")
		if decided.Code == authz.CodeUsageExceeded {
			rec.result = resultNoCredits
		}
		return nil, err
	}
	if !decided.Allowed() {
		rec.result, rec.reason = resultDenied, strings.Join(rec.reasons, "; ")
		return nil, deniedError(params.Name, decided)
	}
	rec.allowed = true
	tool := v.tools[params.Name]
	if tool == nil {
		rec.result, rec.reason = resultUnknown, "no such tool in the tenant's catalog"
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q", params.Name)}
	}
	srv := v.servers[tool.ServerID]
	rec.tool, rec.server = tool, srv
	if !srv.Available() {
		// Hidden since its last sync failed: say so without contacting it,
		// and let a (rate-limited) health check bring it back.
		g.triggerResync(srv, resyncFailure)
		rec.result, rec.reason = resultUnavailable, "hidden since its last sync failed: "+srv.SyncError
		return errorResult(fmt.Sprintf("tool %q is unavailable: MCP server %q could not be reached at its last sync; try again later", params.Name, srv.Name)), nil
	}
	res, err = next(context.WithValue(ctx, callRecordKey{}, rec), method, req)
	if rec.result == "" {
		// The SDK answered without reaching proxy: the tool left its
		// registry between the decision and the call.
		rec.result, rec.reason = resultUnknown, "the tool left the catalog during the call"
	}
	return res, err
}

// deniedError is the JSON-RPC error of a refused call: which tool, why, and
// the decision id to find it in the audit trail.
func deniedError(name string, d *authz.DecisionResult) error {
	reasons := d.Decisions[0].Reasons
	why := strings.Join(reasons, "; ")
	if why == "" {
		why = "the policy gave no reason"
	}
	data, _ := json.Marshal(map[string]any{"tool": name, "reasons": reasons, "decision_id": d.DecisionID})
	return &jsonrpc.Error{
		Code:    CodeToolDenied,
		Message: fmt.Sprintf("tool %q is not allowed for this API key: %s", name, why),
		Data:    data,
	}
}

// limitedError is the JSON-RPC error of a call the key's own limits
// refused, nil for any other answer.
func limitedError(name string, d *authz.DecisionResult) error {
	code := CodeRateLimited
	switch d.Code {
	case authz.CodeRateLimited:
	case authz.CodeUsageExceeded:
		code = CodeUsageExceeded
	default:
		return nil
	}
	reasons := d.Decisions[0].Reasons
	body := map[string]any{"tool": name, "code": d.Code, "reasons": reasons, "decision_id": d.DecisionID}
	if d.RetryAfter > 0 {
		body["retry_after_ms"] = d.RetryAfter.Milliseconds()
	}
	data, _ := json.Marshal(body)
	return &jsonrpc.Error{Code: int64(code), Message: fmt.Sprintf("tool %q was not called: %s", name, strings.Join(reasons, "; ")), Data: data}
}

func errorResult(text string) *sdk.CallToolResult {
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}}
}

// proxy is the SDK tool handler of every exposed tool: it forwards the call
// callTool allowed to the tool's upstream, within the server's timeout, and
// hands back the upstream's result as it came. An upstream that is down or
// slow is an error result for this call alone.
func (g *Gateway) proxy(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	rec, _ := ctx.Value(callRecordKey{}).(*callRecord)
	if rec == nil || !rec.allowed || rec.server == nil {
		// Never forward a call that did not pass the decision.
		return nil, internalError("the call was not decided")
	}
	srv := rec.server
	cctx, cancel := context.WithTimeout(ctx, srv.Timeout())
	defer cancel()
	res, err := g.pool.call(cctx, srv, rec.tool.Name, req.Params.Arguments)
	rpcErr, answered := upstreamAnswer(err)
	switch {
	case err == nil:
		rec.result = resultOK
		if res.IsError {
			rec.result = resultToolError
		}
		return &sdk.CallToolResult{Meta: res.Meta, Content: res.Content, StructuredContent: res.StructuredContent, IsError: res.IsError}, nil
	case errors.Is(err, ErrResponseTooLarge):
		rec.result = resultTooLarge
		rec.reason, _ = tooLargeReason(err)
		return nil, &jsonrpc.Error{Code: CodeUpstreamTooLarge, Message: fmt.Sprintf(
			"tool %q: MCP server %q answered with more than %d bytes, keygate's bound (KEYGATE_MCP_MAX_RESPONSE_BYTES); the answer was dropped",
			rec.name, srv.Name, g.opts.MaxResponseBytes)}
	case callTimeout(cctx, err):
		rec.result, rec.reason = resultTimeout, upstreamError(context.DeadlineExceeded, srv)
		return errorResult(fmt.Sprintf("tool %q timed out: MCP server %q did not answer within %s", rec.name, srv.Name, srv.Timeout())), nil
	case answered:
		// The upstream's code goes back, its message and data do not: an
		// upstream may be an internal server, and its words an oracle.
		rec.result, rec.reason = resultUpstreamError, upstreamError(rpcErr, srv)
		return nil, &jsonrpc.Error{Code: rpcErr.Code, Message: fmt.Sprintf("tool %q: MCP server %q refused the call (JSON-RPC error %d)", rec.name, srv.Name, rpcErr.Code)}
	default:
		rec.result, rec.reason = resultUnavailable, upstreamError(err, srv)
		g.triggerResync(srv, resyncFailure)
		return errorResult(fmt.Sprintf("tool %q is unavailable: MCP server %q could not be reached; try again later", rec.name, srv.Name)), nil
	}
}

// finishCall records a call: its audit event, the counter, the span and a
// log line. Arguments and results are never recorded.
func (g *Gateway) finishCall(ctx context.Context, span trace.Span, ra *requestAuth, rec *callRecord, start time.Time, err error) {
	elapsed := time.Since(start)
	if rec.result == "" {
		rec.result = resultError
	}
	outcome := authz.OutcomeFailure
	switch rec.result {
	case resultOK, resultToolError:
		outcome = authz.OutcomeSuccess
	case resultDenied:
		outcome = authz.OutcomeDenied
	}
	name := authz.Truncate(rec.name, authz.MaxResourceIDLen)
	attrs := callAttrs(rec, ra.principal.TenantID)
	g.calls.Add(ctx, 1, attrs)
	g.latency.Record(ctx, elapsed.Seconds(), attrs)
	span.SetAttributes(attribute.String("mcp.call.result", rec.result), attribute.Bool("keygate.allowed", rec.allowed),
		attribute.String("keygate.decision_id", rec.decisionID))
	if outcome == authz.OutcomeFailure {
		span.SetStatus(codes.Error, rec.result)
	}
	span.End()

	details := map[string]any{
		"result":      rec.result,
		"allowed":     rec.allowed,
		"duration_ms": float64(elapsed.Microseconds()) / 1000,
		"decision_id": rec.decisionID,
	}
	if rec.server != nil {
		details["server"], details["server_id"], details["tool"] = rec.server.Name, rec.server.ID, rec.tool.Name
	}
	p := ra.principal
	// A denied call is in the trail once, as the decision's
	// authorization.denied event (tool, key and reasons); a call the key's
	// limits refused is counted in its usage history, not written one by
	// one; every other outcome is an mcp_tool.called event.
	if g.opts.Audit != nil && rec.result != resultDenied && rec.result != resultRateLimited && rec.result != resultNoCredits {
		g.opts.Audit.Record(authz.AuditEvent{
			OccurredAt: g.now(),
			TenantID:   p.TenantID,
			ActorType:  authz.ActorTypeAPIKey,
			ActorID:    p.KeyID,
			Action:     authz.AuditMCPToolCalled,
			TargetType: string(authz.ResourceMCPTool),
			TargetID:   name,
			Outcome:    outcome,
			Reason:     rec.reason,
			IP:         ra.info.IP,
			UserAgent:  ra.info.UserAgent,
			RequestID:  ra.info.RequestID,
			TraceID:    ra.info.TraceID,
			Details:    details,
		})
	}
	level := slog.LevelDebug
	switch rec.result {
	case resultDenied, resultUnknown:
		level = slog.LevelInfo
	case resultUnavailable, resultTimeout, resultError, resultTooLarge:
		level = slog.LevelWarn
	}
	if !g.logger.Enabled(ctx, level) {
		return
	}
	g.requestLogger(ra.info).LogAttrs(ctx, level, "MCP tool call",
		slog.String("key_id", p.KeyID), slog.String("tool", name), slog.String("result", rec.result),
		slog.Duration("duration", elapsed), slog.String("reason", rec.reason))
}
