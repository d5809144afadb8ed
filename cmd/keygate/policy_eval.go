package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

// maxEvalInputBytes bounds the input file of policy eval.
const maxEvalInputBytes = 16 << 20

func runPolicyEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("policy eval", stderr)
	inputFile := flags.String("input", "", "the input document, a JSON file (- for standard input), or a decision-log event to replay (required)")
	query := flags.String("query", "", "a Rego query; default: the decision the input asks for (data.keygate.authz.decision, .decisions with checks, data.keygate.management.decision with an actor)")
	explain := flags.String("explain", "", "explain the evaluation: full, notes (trace() notes), fails (what failed) or debug")
	paths, err := parseInterspersed(flags, args)
	if err != nil {
		return err
	}
	if *inputFile == "" {
		return usageError{"policy eval needs --input FILE"}
	}
	set, source, err := evalPolicySet(paths)
	if err != nil {
		return err
	}
	input, err := readEvalInput(*inputFile)
	if err != nil {
		return err
	}
	event, replay := asDecisionEvent(input)
	if replay {
		if event.Path == "" {
			return errors.New("the event has no path: keygate refused the key before any policy evaluation, so there is nothing to replay")
		}
		if *query == "" {
			*query = "data." + strings.ReplaceAll(event.Path, "/", ".")
		}
		input = event.Input
		fmt.Fprintf(stderr, "replaying decision %s (%s) against %s\n", event.DecisionID, *query, source)
		if len(event.Erased) > 0 || len(event.Masked) > 0 {
			fmt.Fprintf(stderr, "note: the event was masked (erased %v, masked %v): the replay sees the masked input\n", event.Erased, event.Masked)
		}
	}
	out, err := authz.EvalPolicy(ctx, set, authz.EvalOptions{Query: *query, Input: input, Explain: *explain, Print: stderr})
	if err != nil {
		return err
	}
	value, single := singleValue(out)
	var result any = out.Results
	if single {
		result = value
	}
	if len(out.Results) == 0 {
		fmt.Fprintln(stdout, "undefined")
	} else if err := writeIndented(stdout, result); err != nil {
		return err
	}
	if out.Trace != "" {
		fmt.Fprintf(stdout, "\nExplanation (%s) of %s:\n\n%s", *explain, out.Query, out.Trace)
	}
	if replay {
		if single && sameJSON(value, event.Result) {
			fmt.Fprintln(stderr, "the result is the one logged")
			return nil
		}
		return errors.New("the result differs from the one logged")
	}
	return nil
}

// evalPolicySet reads the policies to evaluate: the paths given, else
// KEYGATE_POLICY_DIR, else the embedded ones.
func evalPolicySet(paths []string) (authz.PolicySet, string, error) {
	if len(paths) > 0 {
		set, err := readPolicyPaths(paths)
		return set, strings.Join(paths, ", "), err
	}
	if dir := os.Getenv("KEYGATE_POLICY_DIR"); dir != "" {
		set, err := readPolicyPaths([]string{dir})
		return set, dir + " (KEYGATE_POLICY_DIR)", err
	}
	set, err := authz.ReadPolicyFS(policies.FS())
	return set, "the embedded policies", err
}

func readEvalInput(name string) (any, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer func() { _ = f.Close() }()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxEvalInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxEvalInputBytes {
		return nil, fmt.Errorf("--input: larger than %d bytes", maxEvalInputBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var input any
	if err := dec.Decode(&input); err != nil {
		return nil, fmt.Errorf("--input %s is not JSON: %w", name, err)
	}
	return input, nil
}

// decisionEvent is what a replay needs of a decision-log event.
type decisionEvent struct {
	DecisionID string   `json:"decision_id"`
	Path       string   `json:"path"`
	Input      any      `json:"input"`
	Result     any      `json:"result"`
	Erased     []string `json:"erased"`
	Masked     []string `json:"masked"`
}

// asDecisionEvent reads input as a decision-log event: an object with a
// decision_id and an input.
func asDecisionEvent(input any) (decisionEvent, bool) {
	obj, ok := input.(map[string]any)
	if !ok {
		return decisionEvent{}, false
	}
	_, hasID := obj["decision_id"]
	_, hasInput := obj["input"]
	if !hasID || !hasInput {
		return decisionEvent{}, false
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return decisionEvent{}, false
	}
	var ev decisionEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return decisionEvent{}, false
	}
	return ev, true
}

// singleValue is the value of a query of one expression without
// bindings, the usual case.
func singleValue(out *authz.EvalOutcome) (any, bool) {
	if len(out.Results) != 1 || len(out.Results[0].Expressions) != 1 || len(out.Results[0].Bindings) > 0 {
		return nil, len(out.Results) == 0
	}
	return out.Results[0].Expressions[0].Value, true
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sameJSON compares two values as JSON.
func sameJSON(a, b any) bool {
	norm := func(v any) any {
		data, err := json.Marshal(v)
		if err != nil {
			return nil
		}
		var out any
		if json.Unmarshal(data, &out) != nil {
			return nil
		}
		return out
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
