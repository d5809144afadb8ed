package authz

import (
	"encoding/json"
	"reflect"
	"testing"

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
