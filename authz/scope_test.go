package authz_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

var fixedTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestParseScope(t *testing.T) {
	t.Parallel()
	many := make([]string, authz.MaxScopeEntries+1)
	for i := range many {
		many[i] = fmt.Sprintf("a%d", i)
	}
	manyJSON, _ := json.Marshal(map[string]any{"agent_ids": many})
	maxJSON, _ := json.Marshal(map[string]any{"agent_ids": many[:authz.MaxScopeEntries]})
	globs := make([]string, authz.MaxScopeGlobs+1)
	for i := range globs {
		globs[i] = fmt.Sprintf("g%d*", i)
	}
	globs = append([]string{"exact"}, globs...)
	maxGlobsJSON, _ := json.Marshal(map[string]any{"flow_ids": globs[:authz.MaxScopeGlobs+1], "agent_ids": globs[:authz.MaxScopeGlobs+1]})
	tooManyGlobsJSON, _ := json.Marshal(map[string]any{"agent_ids": globs[:authz.MaxScopeGlobs+1], "flow_ids": globs})
	tests := []struct {
		note      string
		doc       string
		wantField string // "" means valid
	}{
		{"all four lists", `{"agent_ids":["a1"],"flow_ids":["f*"],"mcp_tool_ids":["github__*"],"vector_store_ids":["vs:1/x@y"]}`, ""},
		{"empty object", `{}`, ""},
		{"null list", `{"flow_ids":null}`, ""},
		{"exactly the maximum entries", string(maxJSON), ""},
		{"entry of 200 characters", `{"flow_ids":["` + strings.Repeat("f", 200) + `"]}`, ""},
		{"unknown field", `{"flow_ids":[],"tool_ids":[]}`, "permission_scope.tool_ids"},
		{"not an object", `["a"]`, "permission_scope"},
		{"a string", `"flow"`, "permission_scope"},
		{"list of numbers", `{"flow_ids":[1]}`, "permission_scope.flow_ids"},
		{"empty entry", `{"flow_ids":[""]}`, "permission_scope.flow_ids[0]"},
		{"entry too long", `{"flow_ids":["` + strings.Repeat("f", 201) + `"]}`, "permission_scope.flow_ids[0]"},
		{"space in entry", `{"agent_ids":["ok","a b"]}`, "permission_scope.agent_ids[1]"},
		{"glob class not allowed", `{"mcp_tool_ids":["a[bc]"]}`, "permission_scope.mcp_tool_ids[0]"},
		{"too many entries", string(manyJSON), "permission_scope.agent_ids"},
		{"the most globs in every list", string(maxGlobsJSON), ""},
		{"one glob too many", string(tooManyGlobsJSON), fmt.Sprintf("permission_scope.flow_ids[%d]", authz.MaxScopeGlobs+1)},
		{"the most stars in an entry", `{"flow_ids":["` + strings.Repeat("a*", authz.MaxScopeGlobStars) + `"]}`, ""},
		{"one star too many", `{"flow_ids":["x","` + strings.Repeat("*a", authz.MaxScopeGlobStars+1) + `"]}`, "permission_scope.flow_ids[1]"},
		{"trailing data", `{} {}`, "permission_scope"},
		{"broken JSON", `{"flow_ids":[`, "permission_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			s, err := authz.ParseScope([]byte(tc.doc))
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				out, _ := json.Marshal(s)
				if strings.Contains(string(out), "null") {
					t.Fatalf("marshalled scope has a null list: %s", out)
				}
				return
			}
			if authz.ErrorCode(err) != authz.EINVALID {
				t.Fatalf("got %v, want EINVALID", err)
			}
			fields := authz.ErrorFields(err)
			if len(fields) == 0 || fields[0].Field != tc.wantField {
				t.Fatalf("fields %+v, want first %q", fields, tc.wantField)
			}
		})
	}
}

func TestScopeIDs(t *testing.T) {
	t.Parallel()
	s := authz.Scope{AgentIDs: []string{"a"}, FlowIDs: []string{"f"}, MCPToolIDs: []string{"m"}, VectorStoreIDs: []string{"v"}}
	for _, rt := range authz.ResourceTypes() {
		ids := s.IDs(rt)
		if len(ids) != 1 || ids[0] != string(rt)[:1] {
			t.Errorf("%s: IDs = %v", rt, ids)
		}
		if !rt.Valid() {
			t.Errorf("%s: not Valid", rt)
		}
	}
	if authz.ResourceType("agents").Valid() || s.IDs("nope") != nil {
		t.Error("unknown resource type accepted")
	}
}
