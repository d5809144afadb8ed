package authz_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

// FuzzTokenFormat: the format check never panics, accepts only tokens of
// the right length, prefix and alphabet, and a token it accepts stops being
// accepted when any one character changes.
func FuzzTokenFormat(f *testing.F) {
	tok, err := authz.NewToken(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("pk_")
	f.Add(strings.Repeat("z", authz.TokenLen))
	f.Fuzz(func(t *testing.T, s string) {
		if !authz.ValidTokenFormat(s) {
			return
		}
		if len(s) != authz.TokenLen || !strings.HasPrefix(s, authz.TokenPrefix) {
			t.Fatalf("accepted %q", s)
		}
		b := []byte(s)
		i := len(authz.TokenPrefix) + int(b[len(b)-1])%(len(b)-len(authz.TokenPrefix))
		b[i] = map[bool]byte{true: 'A', false: 'B'}[b[i] != 'A']
		if authz.ValidTokenFormat(string(b)) {
			t.Fatalf("accepted both %q and %q", s, b)
		}
	})
}

// FuzzParseScope: scope parsing never panics, and a scope it accepts holds
// only valid entries, within the bounds, and survives a round trip.
func FuzzParseScope(f *testing.F) {
	f.Add([]byte(`{"agent_ids": ["a"], "mcp_tool_ids": ["github__*"]}`))
	f.Add([]byte(`{"FLOW_IDS": []}`))
	f.Add([]byte(`{"flow_ids": ["a b"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := authz.ParseScope(data)
		if err != nil {
			if code := authz.ErrorCode(err); code != authz.EINVALID {
				t.Fatalf("error code %s: %v", code, err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted an invalid scope: %v", err)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, err := authz.ParseScope(b)
		if err != nil || !slices.Equal(again.MCPToolIDs, s.MCPToolIDs) || !slices.Equal(again.AgentIDs, s.AgentIDs) {
			t.Fatalf("round trip of %s: %+v %v", b, again, err)
		}
	})
}

// FuzzScopeCeiling checks the management policy's ceiling rule against its
// definition on any entry and ceiling entry: an entry equal to a ceiling
// entry is within; "*" is within only "*"; a ceiling entry without "*"
// admits only itself; and the answer never errs.
func FuzzScopeCeiling(f *testing.F) {
	e := newEngine(f, embeddedModules(f))
	f.Add("github__issue*", "github__*")
	f.Add("*", "github__*")
	f.Add("a", "a")
	f.Add("ab", "a")
	f.Fuzz(func(t *testing.T, entry, ceiling string) {
		if authz.ErrorFields((authz.Scope{FlowIDs: []string{entry, ceiling}}).Validate()) != nil {
			return // keygate refuses such entries before the policy sees them
		}
		scope := authz.Scope{FlowIDs: []string{entry}}
		d, err := e.DecideManagement(context.Background(), authz.ManagementInput{
			Actor:   authz.Actor{TenantID: "t1", UserID: "u1"},
			Action:  authz.ActionCreate,
			Target:  authz.ManagementTarget{Type: authz.TargetAPIKey, TenantID: "t1", UserID: "u1"},
			Change:  &authz.APIKeyUpdate{Scope: &scope},
			Ceiling: &authz.Scope{FlowIDs: []string{ceiling}},
		})
		if err != nil {
			t.Fatal(err)
		}
		within := d.Allow
		if !within && (len(d.Fields) != 1 || d.Fields[0].Field != "permission_scope.flow_ids[0]") {
			t.Fatalf("refusal %+v names no field", d)
		}
		switch {
		case entry == ceiling && !within:
			t.Fatalf("%q is not within itself", entry)
		case entry == "*" && strings.Trim(ceiling, "*") != "" && within:
			t.Fatalf("* is within %q", ceiling)
		case !strings.Contains(ceiling, "*") && entry != ceiling && within:
			t.Fatalf("%q is within the exact entry %q", entry, ceiling)
		case strings.HasSuffix(ceiling, "*") && strings.HasPrefix(entry, strings.TrimSuffix(ceiling, "*")) &&
			!strings.Contains(strings.TrimSuffix(ceiling, "*"), "*") && !within:
			t.Fatalf("%q is not within the prefix glob %q", entry, ceiling)
		}
	})
}
