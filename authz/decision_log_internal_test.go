package authz

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestAppendJSON: inputs are encoded straight from their terms, to what
// encoding/json makes of the same values.
func TestAppendJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note string
		term string
	}{
		{"scalars", `[null, true, false, 0, -1.5, 1e3, ""]`},
		{"strings that need escaping", `["a\"b", "back\\slash", "<tag> & co", "tab\there", "line\u2028sep", "ünïcödé", "emoji 🙂", "nul\u0000"]`},
		{"nested objects and arrays", `{"principal": {"scope": {"flow_ids": ["f1", "f*"], "agent_ids": []}}, "context": {}, "checks": [{"action": "read"}]}`},
		{"a set", `{"x": {"b", "a"}}`},
	} {
		term := ast.MustParseTerm(tc.term)
		got, err := appendJSON(nil, term.Value)
		if err != nil {
			t.Fatalf("%s: %v", tc.note, err)
		}
		want, err := ast.JSON(term.Value)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s: %s is not JSON: %v", tc.note, got, err)
		}
		wantJSON, _ := json.Marshal(want)
		var wantBack any
		_ = json.Unmarshal(wantJSON, &wantBack)
		if !reflect.DeepEqual(back, wantBack) {
			t.Errorf("%s: %s, want %s", tc.note, got, wantJSON)
		}
	}
	if _, err := appendJSON(nil, ast.MustParseTerm(`{1: "x"}`).Value); err == nil {
		t.Error("an object with a number key is not JSON")
	}
	if got := appendJSONString(nil, "a\xffb"); string(got) != `"a\ufffdb"` {
		t.Errorf("invalid UTF-8: %s", got)
	}
}

// TestEventMarshalJSON: the hand-written encoding says what encoding/json
// says of the same event.
func TestEventMarshalJSON(t *testing.T) {
	t.Parallel()
	input := any(json.RawMessage(`{"action":"read","principal":{"key_id":"k1"}}`))
	result := any([]any{map[string]any{"allow": false, "reasons": []any{"a \"b\" <c>"}}, json.Number("1.5"), nil, true})
	ev := &DecisionLogEvent{
		Labels: map[string]string{"id": "i1", "version": "v", "app": "keygate"}, DecisionID: "d1", TraceID: "t1",
		Bundles: map[string]BundleRevision{"keygate": {Revision: "sha256:x"}}, Path: DecisionLogBatchPath,
		Input: &input, Result: &result, Erased: []string{"/input/a"}, Masked: []string{"/input/b"},
		Error: &DecisionLogError{Code: EINTERNAL, Message: "policy evaluation failed"}, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		Metrics: map[string]any{"timer_rego_query_eval_ns": int64(42)}, Custom: map[string]any{"source": "mcp", "listing": true},
	}
	got, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	type plain DecisionLogEvent // without the method
	want, err := json.Marshal((*plain)(ev))
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	_ = json.Unmarshal(want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("hand-written:\n%s\nencoding/json:\n%s", got, want)
	}
}
