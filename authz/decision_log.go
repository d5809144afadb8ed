package authz

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// DecisionLogger records decisions for the decision log. Decide asks
// Sampled first, so an unsampled decision costs nothing more, then hands
// the decision to LogDecision, which must never block.
type DecisionLogger interface {
	Sampled() bool
	LogDecision(DecisionLogEntry)
}

// DecisionLogEntry is one decision as Decide made it, before it becomes an
// event (DecisionLogEvent) off the request path. It holds the principal
// (its key's id, never its token or hash) and the checks, not the input
// document, which is built later from them.
type DecisionLogEntry struct {
	DecisionID string
	Time       time.Time // the decision's time, as the policy saw it
	Source     string    // Source*
	Listing    bool
	Batch      bool       // evaluated with data.keygate.authz.decisions
	Principal  *Principal // nil: the key was refused before any evaluation
	Checks     []Check
	// HTTP is the request a gateway forwarded (forward auth, ext_authz),
	// nil for other surfaces; without Checks, the http policy mapped it to
	// no check, or it was refused before the policy saw it.
	HTTP      *HTTPRequest
	Context   DecisionContext
	Decisions []Decision
	Code      string // DecisionResult.Code
	Err       error  // the evaluation failed (the request was denied)
	Revision  string // of the policy that decided
	Eval      time.Duration
	RequestID string
	TraceID   string
	// Labels are the instance's (OPA's id and version); the writer sets
	// them.
	Labels map[string]string
}

// Decision-log event paths: the rule that decided, as OPA names it.
const (
	DecisionLogPath      = "keygate/authz/decision"
	DecisionLogBatchPath = "keygate/authz/decisions"
	DecisionLogHTTPPath  = "keygate/http/decision" // a forwarded request mapped to no check
)

// DecisionLogEvent is one line of the decision log, in the shape of OPA's
// decision-log events (plugins/logs.EventV1), so the tools that read
// OPA's logs read keygate's.
type DecisionLogEvent struct {
	Labels     map[string]string         `json:"labels"`
	DecisionID string                    `json:"decision_id"`
	TraceID    string                    `json:"trace_id,omitempty"`
	Bundles    map[string]BundleRevision `json:"bundles,omitempty"`
	Path       string                    `json:"path,omitempty"`
	Input      *any                      `json:"input,omitempty"`
	Result     *any                      `json:"result,omitempty"`
	Erased     []string                  `json:"erased,omitempty"`
	Masked     []string                  `json:"masked,omitempty"`
	Error      *DecisionLogError         `json:"error,omitempty"`
	Timestamp  time.Time                 `json:"timestamp"`
	Metrics    map[string]any            `json:"metrics,omitempty"`
	Custom     map[string]any            `json:"custom,omitempty"`
}

// BundleRevision names the revision of the policy that decided.
type BundleRevision struct {
	Revision string `json:"revision"`
}

// DecisionLogError is a failed evaluation: keygate's code and message,
// never OPA's error, which may quote the policy.
type DecisionLogError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// decisionLogBundle is the name the policy's revision goes by in events.
const decisionLogBundle = "keygate"

// DecisionLogEvent turns an entry into its event: the input document the
// policy saw (the same the engine builds for it), the result, keygate's
// source and code in custom, then masked by the loaded policy's
// data.system.log.mask, if it has one. A key refused before any
// evaluation has no path and a null principal. A request a gateway
// forwarded names its method and path (never its query) in custom.http;
// one the http policy mapped to no check is logged as that policy's
// decision, with the input it saw.
func (e *Engine) DecisionLogEvent(ctx context.Context, en DecisionLogEntry) (*DecisionLogEvent, error) {
	var input ast.Value
	httpUnmapped := false
	switch {
	case en.Batch:
		input = e.batchInput(en.Principal, en.Checks, en.Context)
	case len(en.Checks) == 1:
		input = e.singleInput(en.Principal, en.Checks[0].Resource, en.Checks[0].Action, en.Context)
	case en.HTTP != nil:
		if in, refused := parseHTTPRequest(*en.HTTP); refused == "" && e.MapsHTTP() {
			input, httpUnmapped = e.terms.httpInputTerm(in), true
		}
	}
	ev := &DecisionLogEvent{Labels: en.Labels, DecisionID: en.DecisionID, TraceID: en.TraceID, Timestamp: en.Time.UTC(),
		Custom: map[string]any{"source": en.Source}}
	if en.HTTP != nil {
		ev.Custom["http"] = forwardedJSON(*en.HTTP)
	}
	if en.Code != "" {
		ev.Custom["code"] = en.Code
	}
	if en.RequestID != "" {
		ev.Custom["request_id"] = en.RequestID
	}
	if en.Listing {
		ev.Custom["listing"] = true
	}
	if en.Principal != nil && (len(en.Checks) > 0 || httpUnmapped) {
		ev.Path = DecisionLogPath
		switch {
		case en.Batch:
			ev.Path = DecisionLogBatchPath
		case httpUnmapped:
			ev.Path = DecisionLogHTTPPath
		}
		ev.Bundles = map[string]BundleRevision{decisionLogBundle: {Revision: en.Revision}}
		ev.Metrics = map[string]any{"timer_rego_query_eval_ns": en.Eval.Nanoseconds()}
	}
	if input != nil {
		raw, err := appendJSON(make([]byte, 0, 1024), input)
		if err != nil {
			return nil, err
		}
		v := any(json.RawMessage(raw))
		ev.Input = &v
	}
	if en.Err != nil {
		ev.Error = &DecisionLogError{Code: ErrorCode(en.Err), Message: ErrorMessage(en.Err)}
	} else {
		var result any
		if en.Batch {
			list := make([]any, len(en.Decisions))
			for i, d := range en.Decisions {
				list[i] = decisionJSON(d)
			}
			result = list
		} else if len(en.Decisions) == 1 {
			result = decisionJSON(en.Decisions[0])
		}
		ev.Result = &result
	}
	if mask := e.policy.Load().mask; mask != nil {
		if err := maskEvent(ctx, *mask, ev, input); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// forwardedJSON is a forwarded request as custom.http shows it: the method
// and the path, without the query (which may carry secrets), bounded.
func forwardedJSON(r HTTPRequest) map[string]any {
	path := r.URI
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	return map[string]any{"method": Truncate(r.Method, MaxHTTPMethodLen), "path": Truncate(path, MaxHTTPURILen)}
}

func decisionJSON(d Decision) map[string]any {
	reasons := make([]any, len(d.Reasons))
	for i, r := range d.Reasons {
		reasons[i] = r
	}
	return map[string]any{"allow": d.Allow, "reasons": reasons}
}

// maskEvent evaluates the mask rule with the event as input, as OPA does,
// and applies what it answers. input is the event's input as the policy
// saw it (nil: none), which saves converting it back.
func maskEvent(ctx context.Context, pq rego.PreparedEvalQuery, ev *DecisionLogEvent, input ast.Value) error {
	doc, err := maskInput(ev, input)
	if err != nil {
		return err
	}
	v, err := eval(ctx, pq, doc)
	if err != nil || v == nil {
		return err
	}
	rules, err := ast.JSON(v)
	if err != nil {
		return err
	}
	list, ok := rules.([]any)
	if !ok {
		return Errorf(EINTERNAL, "%s must be a set of JSON pointers or {op, path, value} objects", QueryLogMask)
	}
	return applyMask(ev, list)
}

// maskInput is the event as the mask rule sees it, as OPA gives it (the
// event's JSON), built as terms directly: input is the input as the policy
// saw it.
func maskInput(ev *DecisionLogEvent, input ast.Value) (ast.Value, error) {
	obj := ast.NewObject()
	put := func(k string, v ast.Value) { obj.Insert(ast.StringTerm(k), ast.NewTerm(v)) }
	strs := func(m map[string]string) ast.Value {
		o := ast.NewObject()
		for k, v := range m {
			o.Insert(ast.StringTerm(k), ast.StringTerm(v))
		}
		return o
	}
	put("labels", strs(ev.Labels))
	put("decision_id", ast.String(ev.DecisionID))
	if ev.TraceID != "" {
		put("trace_id", ast.String(ev.TraceID))
	}
	if ev.Path != "" {
		put("path", ast.String(ev.Path))
	}
	for name, b := range ev.Bundles {
		put("bundles", ast.NewObject([2]*ast.Term{ast.StringTerm(name), ast.ObjectTerm([2]*ast.Term{ast.StringTerm("revision"), ast.StringTerm(b.Revision)})}))
	}
	if input != nil {
		put("input", input)
	}
	if ev.Result != nil {
		val, err := termOf(*ev.Result)
		if err != nil {
			return nil, err
		}
		put("result", val)
	}
	if ev.Error != nil {
		put("error", ast.NewObject([2]*ast.Term{ast.StringTerm("code"), ast.StringTerm(ev.Error.Code)},
			[2]*ast.Term{ast.StringTerm("message"), ast.StringTerm(ev.Error.Message)}))
	}
	for name, m := range map[string]map[string]any{"metrics": ev.Metrics, "custom": ev.Custom} {
		if m == nil {
			continue
		}
		val, err := termOf(m)
		if err != nil {
			return nil, err
		}
		put(name, val)
	}
	put("timestamp", ast.String(ev.Timestamp.Format(time.RFC3339Nano)))
	return obj, nil
}
