package authz

import (
	"bytes"
	"context"
	"io"
	"slices"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// EvalOptions say what EvalPolicy evaluates.
type EvalOptions struct {
	// Query is a Rego query; "" picks the decision the input asks for
	// (DefaultQuery).
	Query string
	// Input is the input document, as decoded from JSON.
	Input any
	// Explain traces the evaluation, as `opa eval --explain` does:
	// "full" (every step), "notes" (trace() notes and how they were
	// reached), "fails" (every failed expression and how it was reached),
	// "debug" (everything); "" traces nothing.
	Explain string
	// Print receives what print() writes; nil drops it.
	Print io.Writer
}

// ExplainModes are the values of EvalOptions.Explain.
var ExplainModes = []string{"full", "notes", "fails", "debug"}

// EvalOutcome is what a query answered.
type EvalOutcome struct {
	Query string
	// Results are the query's results, each with its expressions' values
	// and its bindings; none when it is undefined.
	Results rego.ResultSet
	// Trace is the explanation, when one was asked for.
	Trace string
}

// DefaultQuery is the rule an input is for: data.keygate.authz.decisions
// for one with checks, data.keygate.management.decision for one with an
// actor, else data.keygate.authz.decision.
func DefaultQuery(input any) string {
	if obj, ok := input.(map[string]any); ok {
		if _, ok := obj["checks"]; ok {
			return QueryDecisions
		}
		if _, ok := obj["actor"]; ok {
			return QueryManagementDecision
		}
	}
	return QueryDecision
}

// EvalPolicy evaluates a query over set and its data as keygate's engine
// does: the policy's scope_match is replaced by keygate.scope_match (when
// it has one) in every expression of the query, so the answer is the one
// keygate would give. It is `keygate policy eval`; tracing costs, so it is
// never on a request's path. Returns EINVALID when the set or the query
// does not compile or the explain mode is unknown.
func EvalPolicy(ctx context.Context, set PolicySet, opts EvalOptions) (*EvalOutcome, error) {
	var tracer *topdown.BufferTracer
	if opts.Explain != "" {
		if !validExplain(opts.Explain) {
			return nil, Errorf(EINVALID, "explain must be full, notes, fails or debug, got %q", opts.Explain)
		}
		tracer = topdown.NewBufferTracer()
	}
	c, err := compilePolicy(ctx, set, compileOptions{print: true})
	if err != nil {
		return nil, err
	}
	out := &EvalOutcome{Query: opts.Query}
	if out.Query == "" {
		out.Query = DefaultQuery(opts.Input)
	}
	printTo := opts.Print
	if printTo == nil {
		printTo = io.Discard
	}
	// Mocked rather than rewritten: a trace names the policy's scope_match.
	c.mocked = definesScopeMatch(c.compiler)
	pq, err := c.prepare(ctx, out.Query, rego.PrintHook(topdown.NewPrintHook(printTo)))
	if err != nil {
		return nil, err
	}
	evalOpts := []rego.EvalOption{rego.EvalInput(opts.Input)}
	if tracer != nil {
		evalOpts = append(evalOpts, rego.EvalQueryTracer(tracer))
	}
	if out.Results, err = pq.Eval(ctx, evalOpts...); err != nil {
		return nil, Errorf(EINVALID, "evaluation failed: %s", err)
	}
	if tracer != nil {
		events := []*topdown.Event(*tracer)
		switch opts.Explain {
		case "full":
			events = lineage.Full(events)
		case "notes":
			events = lineage.Notes(events)
		case "fails":
			events = lineage.Fails(events)
		}
		var buf bytes.Buffer
		topdown.PrettyTraceWithOpts(&buf, events, topdown.PrettyTraceOptions{Locations: true, ExprVariables: true})
		out.Trace = buf.String()
	}
	return out, nil
}

func validExplain(mode string) bool { return slices.Contains(ExplainModes, mode) }
