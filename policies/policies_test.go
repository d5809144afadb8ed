package policies_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/open-policy-agent/opa/v1/tester"
)

// TestRegoPolicies runs the Rego tests of ../opa-tests against these
// policies, and those of each example policy in ../docs/examples beside
// them, one example at a time (each adds to deny), as `make opa-test`
// does, so `go test` alone covers them too.
func TestRegoPolicies(t *testing.T) {
	examples, err := filepath.Glob("../docs/examples/*")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example policies: %v", err)
	}
	runRegoTests(t, []string{".", "../opa-tests"})
	for _, ex := range examples {
		runRegoTests(t, []string{".", ex})
	}
}

func runRegoTests(t *testing.T, dirs []string) {
	t.Helper()
	ctx := context.Background()
	modules, store, err := tester.Load(dirs, nil)
	if err != nil {
		t.Fatalf("load policies and tests: %v", err)
	}
	ch, err := tester.NewRunner().SetStore(store).SetModules(modules).RunTests(ctx, nil)
	if err != nil {
		t.Fatalf("run Rego tests: %v", err)
	}
	ran := 0
	for r := range ch {
		ran++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s (%s): error: %v", r.Package, r.Name, r.Location, r.Error)
		case r.Fail:
			t.Errorf("%s.%s (%s): FAIL (details: make opa-test)", r.Package, r.Name, r.Location)
		}
	}
	if ran == 0 {
		t.Fatalf("no Rego tests ran in %v", dirs)
	}
	t.Logf("%d Rego tests ran in %v", ran, dirs)
}
