package authz_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestDecisionCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	obs := &recordingObserver{}
	e, err := authz.NewEngine(ctx, embeddedModules(t), authz.EngineOptions{Observer: obs, DecisionCacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if on, why := e.DecisionCaching(); !on {
		t.Fatalf("the embedded policy must be cacheable: %s", why)
	}
	p := testPrincipal()
	f1 := authz.Resource{Type: authz.ResourceFlow, ID: "f1"}
	f9 := authz.Resource{Type: authz.ResourceFlow, ID: "f9"}
	first, err := e.Decide(ctx, p, f1, "read", testContext)
	if err != nil || !first.Allow {
		t.Fatalf("first: %+v %v", first, err)
	}
	again, err := e.Decide(ctx, p, f1, "read", testContext)
	if err != nil || !reflect.DeepEqual(first, again) {
		t.Fatalf("cached answer %+v differs from %+v", again, first)
	}
	if d, _ := e.Decide(ctx, p, f1, "execute", testContext); !d.Allow {
		t.Fatal("another action is another question")
	}
	// A batch answers cached checks from the cache and evaluates the rest once.
	ds, err := e.DecideBatch(ctx, p, []authz.Check{{Resource: f1, Action: "read"}, {Resource: f9, Action: "read"}, {Resource: f1, Action: "read"}}, testContext)
	if err != nil || !ds[0].Allow || ds[1].Allow || !ds[2].Allow || !strings.Contains(ds[1].Reasons[0], "f9") {
		t.Fatalf("batch: %+v %v", ds, err)
	}
	// A changed key is a new principal: nothing carries over.
	q := testPrincipal()
	q.Scope.FlowIDs = []string{"f9"}
	if d, _ := e.Decide(ctx, q, f1, "read", testContext); d.Allow {
		t.Fatal("a new principal was answered from another's cache")
	}
	want := []observation{
		{authz.QueryDecision, 1, 1, nil},
		{"cached " + authz.QueryDecision, 1, 1, nil},
		{authz.QueryDecision, 1, 1, nil},
		{"cached " + authz.QueryDecisions, 2, 2, nil},
		{authz.QueryDecisions, 1, 0, nil},
		{authz.QueryDecision, 1, 0, nil},
	}
	if got := obs.seen(); !reflect.DeepEqual(got, want) {
		t.Fatalf("observed %+v\nwant %+v", got, want)
	}

	// A reload is a new policy: its answers are its own.
	modules := embeddedModules(t)
	modules["authz.rego"] = strings.Replace(modules["authz.rego"], `"flow": {"execute", "read"}`, `"flow": {"execute"}`, 1)
	if err := e.Load(ctx, modules); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(ctx, p, f1, "read", testContext); d.Allow {
		t.Fatal("an answer of the previous policy was served after a reload")
	}
}

func TestDecisionCacheRefusesImpurePolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	base := embeddedModules(t)
	tests := []struct {
		note  string
		extra string
		why   string
	}{
		{"reads the time of the request", "package keygate.authz\n\nlate if input.context.time > \"2030\"\n", "input.context"},
		{"reads the whole input", "package keygate.authz\n\nall := input\n", "whole input"},
		{"reads an input field chosen at run time", "package keygate.authz\n\nf(k) := input[k]\n", "input[k]"},
		{"calls a nondeterministic builtin", "package keygate.authz\n\nnow := time.now_ns()\n", "time.now_ns"},
		{"gets an input path outside the allowed", "package keygate.authz\n\nip := object.get(input, [\"context\", \"ip\"], \"\")\n", "object.get"},
	}
	for _, tc := range tests {
		modules := map[string]string{"extra.rego": tc.extra}
		for k, v := range base {
			modules[k] = v
		}
		e, err := authz.NewEngine(ctx, modules, authz.EngineOptions{DecisionCacheSize: 10})
		if err != nil {
			t.Fatalf("%s: %v", tc.note, err)
		}
		on, why := e.DecisionCaching()
		if on || !strings.Contains(why, tc.why) || !strings.Contains(why, "extra.rego") {
			t.Errorf("%s: caching %v (%s), want off naming %q and the file", tc.note, on, why, tc.why)
		}
	}
	off, err := authz.NewEngine(ctx, base, authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if on, why := off.DecisionCaching(); on || why == "" {
		t.Error("with no cache size, caching must be off and say so")
	}
}
