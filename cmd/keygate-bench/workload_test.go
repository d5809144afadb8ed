package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestScopesAreValid(t *testing.T) {
	for name, s := range map[string]authz.Scope{"bench": benchScope(), "seed": seedScope(5, 7)} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s scope: %v", name, err)
		}
	}
	s := benchScope()
	for _, list := range [][]string{s.AgentIDs, s.FlowIDs, s.MCPToolIDs, s.VectorStoreIDs} {
		globs := 0
		for _, id := range list {
			if strings.Contains(id, "*") {
				globs++
			}
		}
		if len(list) != 20 || globs != 3 {
			t.Errorf("a list of %d entries, %d globs; want 20 and 3: %v", len(list), globs, list)
		}
	}
}

func TestSeedTokens(t *testing.T) {
	a, b := seedToken(7), seedToken(8)
	if !authz.ValidTokenFormat(a) || !authz.ValidTokenFormat(b) {
		t.Fatalf("seed tokens %q and %q are not valid keygate tokens", a, b)
	}
	if a == b || a != seedToken(7) {
		t.Errorf("seed tokens must be distinct per key and the same every time")
	}
}

func TestSeedRows(t *testing.T) {
	var out strings.Builder
	if err := writeRows(&out, 120, 122, 3); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	f := strings.Split(lines[0], "\t")
	if len(f) != 12 || !authz.ValidID(f[0]) || f[1] != "seed-t20" || f[2] != "u1" || f[3] != "seed-key-120" ||
		f[4] != authz.HashToken(seedToken(120)) || f[8] != `\N` || !strings.Contains(f[6], `"flow-of-key-120"`) {
		t.Errorf("row %q", f)
	}
	if g := strings.Split(lines[1], "\t"); g[6] == f[6] {
		t.Error("two seeded keys hold the same scope")
	}
}

func TestChecks(t *testing.T) {
	mix := requestMix(1, true)
	check := allowCheck(keygateAllowed, mixAllow(mix))
	if err := check(0, 200, []byte(`{"allowed":true,"code":"ALLOWED"}`)); err != nil {
		t.Errorf("a right allow: %v", err)
	}
	if err := check(4, 200, []byte(`{"allowed":false,"code":"DENIED"}`)); err == nil {
		t.Errorf("request 4 is the mix's first again, an allow; a deny passed")
	}
	if err := check(2, 200, []byte(`{"allowed":false}`)); err != nil {
		t.Errorf("a right deny: %v", err)
	}
	if err := check(2, 422, []byte(`{}`)); err == nil {
		t.Errorf("a 422 passed")
	}
	batch := batchCheck(mix)
	ok := `{"results":[` + strings.Repeat(`{"allowed":true},{"allowed":true},{"allowed":false},{"allowed":false},`, batchSize/4) + `]}`
	if err := batch(0, 200, []byte(ok)); err != nil {
		t.Errorf("a right batch: %v", err)
	}
	if err := batch(0, 200, []byte(strings.Replace(ok, "false", "true", 1))); err == nil {
		t.Errorf("a batch with one allow too many passed")
	}
}

func TestBodies(t *testing.T) {
	mix := requestMix(1, true)
	key := &createdKey{ID: "k", Token: "pk_x", TenantID: "t", UserID: "u", Scope: benchScope()}
	var kg map[string]any
	if err := json.Unmarshal(keygateBodies(key.Token, mix)[1], &kg); err != nil {
		t.Fatal(err)
	}
	if kg["api_key"] != "pk_x" || kg["action"] != "call" {
		t.Errorf("keygate body %v", kg)
	}
	var opa struct {
		Input struct {
			Principal map[string]any `json:"principal"`
			Resource  resource       `json:"resource"`
			Context   map[string]any `json:"context"`
		} `json:"input"`
	}
	if err := json.Unmarshal(opaBodies(key, mix, time.Unix(0, 0))[1], &opa); err != nil {
		t.Fatal(err)
	}
	in := opa.Input
	if in.Principal["type"] != "api_key" || in.Principal["key_id"] != "k" || in.Principal["scope"] == nil ||
		in.Resource.ID != "github__create_issue" || in.Context["time"] != "1970-01-01T00:00:00Z" {
		t.Errorf("OPA input %+v", in)
	}
	var batch struct {
		Checks []check `json:"checks"`
	}
	if err := json.Unmarshal(batchBody(key.Token, mix), &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Checks) != 100 || batch.Checks[5] != mix[1].check {
		t.Errorf("batch of %d checks", len(batch.Checks))
	}
}

func TestDistinctMix(t *testing.T) {
	one, many := requestMix(1, true), requestMix(30, true)
	if len(one) != 4 || len(many) != 120 {
		t.Fatalf("mix sizes %d and %d, want 4 and 120", len(one), len(many))
	}
	for i := range one {
		if one[i] != many[i] {
			t.Errorf("request %d of a distinct mix differs from the plain one: %v, %v", i, many[i], one[i])
		}
	}
	scope, seen := benchScope(), map[check]bool{}
	for _, m := range many {
		if seen[m.check] && m.check.Resource.Type != "agent" && m.check.Resource.Type != "vector_store" {
			t.Errorf("%v repeats", m.check)
		}
		seen[m.check] = true
		switch m.name {
		case "exact-id allow":
			if !slices.Contains(scope.AgentIDs, m.check.Resource.ID) {
				t.Errorf("%s is not an exact id of the scope", m.check.Resource.ID)
			}
		case "glob allow":
			if !strings.HasPrefix(m.check.Resource.ID, "github__") {
				t.Errorf("%s does not match github__*", m.check.Resource.ID)
			}
		}
	}
	var batch struct {
		Checks []check `json:"checks"`
	}
	if err := json.Unmarshal(batchBody("pk_x", many), &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Checks) != batchSize || batch.Checks[99] != many[99].check {
		t.Errorf("the batch is not the first %d requests of the mix", batchSize)
	}
	if !strings.Contains(describeMix(many), "120 requests before the sequence starts over") {
		t.Errorf("describeMix = %s", describeMix(many))
	}
}

func TestMixWithoutDenials(t *testing.T) {
	with, without := requestMix(3, true), requestMix(3, false)
	if len(with) != 12 || len(without) != 6 {
		t.Fatalf("%d and %d requests, want 12 and 6", len(with), len(without))
	}
	for _, m := range without {
		if !m.allow {
			t.Errorf("%s is a denial in a mix without denials", m.name)
		}
	}
	rep := &report{mix: without}
	if md := rep.markdown(); !strings.Contains(md, "holds no denial") || strings.Contains(md, "Half the checks") {
		t.Error("the report must say the mix holds no denial")
	}
}
