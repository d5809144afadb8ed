package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestRealisticScopes(t *testing.T) {
	t.Parallel()
	scopes := realisticScopes(50, 1)
	seen := map[string]bool{}
	for k, s := range scopes {
		if err := s.Validate(); err != nil {
			t.Fatalf("key %d: %v", k, err)
		}
		for _, rw := range resourceWords {
			ids := s.IDs(rw.rtype)
			if len(ids) != scopeEntries {
				t.Fatalf("key %d %s: %d entries, want %d", k, rw.rtype, len(ids), scopeEntries)
			}
			for i, id := range ids {
				glob := strings.Contains(id, "*")
				if last := i >= scopeEntries-scopeGlobs; glob != last {
					t.Errorf("key %d %s: entry %d %q: globs must be the last %d", k, rw.rtype, i, id, scopeGlobs)
				}
				if !strings.HasPrefix(id, rw.word+"-") {
					t.Errorf("key %d %s: entry %q lacks its type's word", k, rw.rtype, id)
				}
			}
			if len(slices.Compact(slices.Sorted(slices.Values(ids)))) != len(ids) {
				t.Errorf("key %d %s: an entry repeats: %v", k, rw.rtype, ids)
			}
		}
		doc := string(mustJSON(s))
		if seen[doc] {
			t.Errorf("key %d has the scope of another key", k)
		}
		seen[doc] = true
	}
	again := realisticScopes(50, 1)
	if string(mustJSON(again)) != string(mustJSON(scopes)) {
		t.Error("the same seed gave other scopes")
	}
	if other := realisticScopes(50, 2); string(mustJSON(other)) == string(mustJSON(scopes)) {
		t.Error("another seed gave the same scopes")
	}
}

func TestQuestionTable(t *testing.T) {
	t.Parallel()
	const keys, n = 500, 20_000
	scopes := realisticScopes(keys, 1)
	table, err := questionTable(scopes, benchTenant, n, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != n {
		t.Fatalf("%d questions, want %d", len(table), n)
	}
	denied, perKey, kinds, types := 0, map[int]int{}, map[string]int{}, map[string]bool{}
	type asked struct {
		key int
		c   check
	}
	seen := map[asked]bool{}
	for i, q := range table {
		if seen[asked{q.key, q.check}] {
			t.Fatalf("question %d repeats: %+v", i, q)
		}
		seen[asked{q.key, q.check}] = true
		if !q.allow {
			denied++
		}
		perKey[q.key]++
		kinds[q.kind]++
		types[q.check.Resource.Type] = true
		if got := expectedAllow(scopes[q.key], benchTenant, q.check); got != q.allow {
			t.Errorf("question %d (%s %+v): the scope gives %v", i, q.kind, q.check, got)
		}
		r := q.check.Resource
		switch q.kind {
		case kindExact:
			if !slices.Contains(scopes[q.key].IDs(authz.ResourceType(r.Type)), r.ID) {
				t.Errorf("question %d: exact id %q is not in the scope", i, r.ID)
			}
		case kindGlob:
			if slices.Contains(scopes[q.key].IDs(authz.ResourceType(r.Type)), r.ID) || !strings.Contains(r.ID, "-team") {
				t.Errorf("question %d: %q is not an id only a glob matches", i, r.ID)
			}
		case kindOtherTenant:
			if r.TenantID == "" || r.TenantID == benchTenant {
				t.Errorf("question %d: tenant %q is not another tenant", i, r.TenantID)
			}
		case kindBadAction:
			if slices.Contains(supportedActions[authz.ResourceType(r.Type)], q.check.Action) {
				t.Errorf("question %d: %s supports %s", i, r.Type, q.check.Action)
			}
		}
	}
	if denied != n/2 {
		t.Errorf("%d denied, want half, %d", denied, n/2)
	}
	for k := range keys {
		if perKey[k] != n/keys {
			t.Errorf("key %d has %d questions, want %d", k, perKey[k], n/keys)
		}
	}
	want := map[string]int{kindExact: n / 4, kindGlob: n / 4, kindNotInScope: n / 4, kindBadAction: n / 8, kindOtherTenant: n / 8}
	for kind, w := range want {
		if kinds[kind] != w {
			t.Errorf("%d questions of kind %s, want %d", kinds[kind], kind, w)
		}
	}
	if len(types) != len(resourceWords) {
		t.Errorf("questions about %d resource types, want %d", len(types), len(resourceWords))
	}
	// Shuffled: the first questions are not all about the first key.
	if table[0].key == 0 && table[1].key == 0 && table[2].key == 0 {
		t.Error("the table is not shuffled")
	}

	again, err := questionTable(scopes, benchTenant, n, 1)
	if err != nil || !slices.Equal(again, table) {
		t.Errorf("the same seed gave another table (%v)", err)
	}
	other, err := questionTable(scopes, benchTenant, n, 2)
	if err != nil || slices.Equal(other, table) {
		t.Errorf("another seed gave the same table (%v)", err)
	}
	counts := kindCounts(table)
	if counts[0] != (kindCount{kindExact, n / 4, true}) || counts[4] != (kindCount{kindOtherTenant, n / 8, false}) {
		t.Errorf("kindCounts = %v", counts)
	}
}

func TestQuestionTableLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note    string
		keys, n int
		wantErr bool
	}{
		{"one question", 1, 1, false},
		{"fewer than a block of eight", 3, 7, false},
		{"more questions than one key can be asked", 1, 20_000, true},
	}
	for _, tc := range tests {
		table, err := questionTable(realisticScopes(tc.keys, 1), benchTenant, tc.n, 1)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.note, err, tc.wantErr)
		}
		if err == nil && len(table) != tc.n {
			t.Errorf("%s: %d questions, want %d", tc.note, len(table), tc.n)
		}
	}
	if _, err := questionTable(nil, benchTenant, 10, 1); err == nil {
		t.Error("a table about no keys")
	}
}

func TestExpectedAllow(t *testing.T) {
	t.Parallel()
	scope := authz.Scope{AgentIDs: []string{"agent-0001", "agent-team07-*"}}
	tests := []struct {
		note  string
		c     check
		allow bool
	}{
		{"exact id", check{resource{Type: "agent", ID: "agent-0001"}, "execute"}, true},
		{"glob", check{resource{Type: "agent", ID: "agent-team07-beef"}, "read"}, true},
		{"own tenant named", check{resource{Type: "agent", ID: "agent-0001", TenantID: "t"}, "read"}, true},
		{"not in scope", check{resource{Type: "agent", ID: "agent-0002"}, "read"}, false},
		{"near miss of a glob", check{resource{Type: "agent", ID: "agent-team08-beef"}, "read"}, false},
		{"unsupported action", check{resource{Type: "agent", ID: "agent-0001"}, "call"}, false},
		{"another tenant", check{resource{Type: "agent", ID: "agent-0001", TenantID: "u"}, "read"}, false},
		{"another type's list", check{resource{Type: "flow", ID: "agent-0001"}, "read"}, false},
	}
	for _, tc := range tests {
		if got := expectedAllow(scope, "t", tc.c); got != tc.allow {
			t.Errorf("%s: %v, want %v", tc.note, got, tc.allow)
		}
	}
}

func TestModelHitRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note     string
		n, size  int
		min, max float64
	}{
		{"the cache holds every question", 2_000, 10_000, 0.99, 1},
		{"twice the questions the cache holds", 20_000, 10_000, 0.10, 0.35},
		{"far more questions than the cache holds", 200_000, 10_000, 0, 0.05},
		{"no cache", 20_000, 0, 0, 0},
		{"no questions", 0, 10_000, 0, 0},
	}
	for _, tc := range tests {
		got := modelHitRate(tc.n, tc.size, 1)
		if got < tc.min || got > tc.max {
			t.Errorf("%s: hit rate %.3f, want %.2f to %.2f", tc.note, got, tc.min, tc.max)
		}
	}
	if modelHitRate(20_000, 10_000, 1) != modelHitRate(20_000, 10_000, 1) {
		t.Error("the model is not deterministic")
	}
}

func TestCompareAnswers(t *testing.T) {
	t.Parallel()
	table := []question{
		{key: 0, kind: kindExact, check: check{resource{Type: "agent", ID: "a"}, "read"}, allow: true},
		{key: 1, kind: kindNotInScope, check: check{resource{Type: "agent", ID: "b"}, "read"}, allow: false},
	}
	right := []answer{{true, []string{"ok"}}, {false, []string{"no"}}}
	tests := []struct {
		note    string
		kg, opa []answer
		wantErr string
	}{
		{"the same, expected answers", right, right, ""},
		{"keygate allows a denial", []answer{right[0], {true, []string{"no"}}}, right, "question 1"},
		{"OPA denies an allow", right, []answer{{false, []string{"ok"}}, right[1]}, "question 0"},
		{"other reasons", right, []answer{right[0], {false, []string{"other"}}}, "reasons"},
		{"an answer missing", right[:1], right, "answers"},
	}
	for _, tc := range tests {
		err := compareAnswers(table, tc.kg, tc.opa)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: error %v, want one naming %q", tc.note, err, tc.wantErr)
		}
	}
}

func TestDecodeAnswers(t *testing.T) {
	t.Parallel()
	if a, err := decodeKeygateAnswer([]byte(`{"allowed":false,"code":"DENIED","reasons":["x"]}`)); err != nil || a.allow || a.reasons[0] != "x" {
		t.Errorf("keygate answer %+v, %v", a, err)
	}
	if _, err := decodeKeygateAnswer([]byte(`{"code":"DENIED"}`)); err == nil {
		t.Error("an answer without allowed was taken for a decision")
	}
	if a, err := decodeOPAAnswer([]byte(`{"result":{"allow":true,"reasons":["y"]}}`)); err != nil || !a.allow || a.reasons[0] != "y" {
		t.Errorf("OPA answer %+v, %v", a, err)
	}
	if _, err := decodeOPAAnswer([]byte(`{}`)); err == nil {
		t.Error("an undefined OPA decision was taken for one")
	}
}

func TestCountedDenials(t *testing.T) {
	t.Parallel()
	kg := &liveKeygate{}
	check := kg.counted(allowCheck(keygateAllowed, func(i int) bool { return i == 0 }))
	_ = check(0, 200, []byte(`{"allowed":true}`))
	_ = check(1, 200, []byte(`{"allowed":false}`))
	_ = check(1, 200, []byte(`{"allowed":true}`)) // a wrong allow: not a denial
	_ = check(1, 503, []byte(`{}`))
	if kg.denials.Load() != 1 || kg.unsure.Load() != 1 {
		t.Errorf("%d denials and %d unsure, want 1 and 1", kg.denials.Load(), kg.unsure.Load())
	}
}

func TestAudited(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note            string
		denials, unsure uint64
		rows            int64
		want            bool
	}{
		{"every denial, nothing else", 100, 0, 100, true},
		{"one lost", 100, 0, 99, false},
		{"one too many", 100, 0, 101, false},
		{"an unanswered request may have been audited", 100, 2, 101, true},
		{"beyond the unanswered", 100, 2, 103, false},
	}
	for _, tc := range tests {
		kg := &keygateRun{denials: tc.denials, unsure: tc.unsure, rows: tc.rows}
		if got := kg.audited(); got != tc.want {
			t.Errorf("%s: audited = %v, want %v", tc.note, got, tc.want)
		}
	}
}
