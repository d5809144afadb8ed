package authz

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions say how RunPolicyTests runs a policy's Rego tests.
type TestOptions struct {
	// Coverage measures which lines of the modules the tests evaluate.
	Coverage bool
	// Timeout bounds one test; 0 is OPA's default (5 s).
	Timeout time.Duration
	// Filter runs only the tests whose name matches this regular
	// expression; "" runs all.
	Filter string
}

// PolicyTestResult is the outcome of one Rego test.
type PolicyTestResult struct {
	Package  string // data.keygate.authz_test
	Name     string // test_office_hours
	Location string // file:line
	Fail     bool
	Skip     bool   // a todo_test_ rule
	Error    string // the test could not be evaluated
	Duration time.Duration
	Output   string // what print() wrote
}

// PolicyTestReport is the outcome of a policy's Rego tests.
type PolicyTestReport struct {
	Results                          []PolicyTestResult // sorted by location
	Passed, Failed, Errored, Skipped int
	// Coverage is the share of lines evaluated, in percent, over every
	// module and test as `opa test --coverage` counts it; with
	// TestOptions.Coverage only.
	Coverage float64
	// Files is the coverage of each file with lines not covered.
	Files map[string]FileCoverage
}

// FileCoverage is the coverage of one file.
type FileCoverage struct {
	Coverage   float64
	NotCovered []string // line ranges, "12" or "14-16"
}

// OK reports whether every test passed (skipped ones aside).
func (r *PolicyTestReport) OK() bool { return r.Failed == 0 && r.Errored == 0 }

// Problems names each test that failed or errored, for a message.
func (r *PolicyTestReport) Problems() []string {
	var out []string
	for _, res := range r.Results {
		switch {
		case res.Error != "":
			out = append(out, fmt.Sprintf("%s.%s (%s): %s", res.Package, res.Name, res.Location, res.Error))
		case res.Fail:
			out = append(out, fmt.Sprintf("%s.%s (%s) fails", res.Package, res.Name, res.Location))
		}
	}
	return out
}

// RunPolicyTests runs the Rego tests of set (its *_test.rego modules)
// against its modules and data with OPA's tester, as `opa test` does: the
// policy's own scope_match runs in Rego, and keygate.scope_match is there
// for a test that names it. Returns EINVALID when the modules or tests do
// not compile; failing tests are in the report.
func RunPolicyTests(ctx context.Context, set PolicySet, opts TestOptions) (*PolicyTestReport, error) {
	c, err := set.parse(true)
	if err != nil {
		return nil, err
	}
	if err := checkReserved(set.Data); err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler().WithCapabilities(capabilities()).WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(true).WithUseTypeCheckAnnotations(true)
	runner := tester.NewRunner().SetCompiler(compiler).SetStore(storeOf(set.Data)).SetModules(c).
		AddCustomBuiltins([]*tester.Builtin{{Decl: &ast.Builtin{Name: scopeMatchDecl.Name, Decl: scopeMatchDecl.Decl}, Func: scopeMatchBuiltin}})
	if opts.Timeout > 0 {
		runner = runner.SetTimeout(opts.Timeout)
	}
	if opts.Filter != "" {
		runner = runner.Filter(opts.Filter)
	}
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
		// Coverage runs each test once; the extra runs that only tag
		// uncovered lines with a kind are skipped.
		runner = runner.SetCoverageQueryTracer(cov).SetCoverageRuns(nil)
	}
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, Errorf(EINVALID, "policy tests do not compile: %s", err)
	}
	rep := &PolicyTestReport{}
	for r := range ch { // drained whatever happens: the runner's goroutines write here
		res := PolicyTestResult{Package: r.Package, Name: r.Name, Fail: r.Fail, Skip: r.Skip,
			Duration: r.Duration, Output: string(r.Output)}
		if r.Location != nil {
			res.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		switch {
		case r.Skip:
			rep.Skipped++
		case r.Error != nil:
			res.Error = r.Error.Error()
			rep.Errored++
		case r.Fail:
			rep.Failed++
		default:
			rep.Passed++
		}
		rep.Results = append(rep.Results, res)
	}
	slices.SortFunc(rep.Results, func(a, b PolicyTestResult) int { return strings.Compare(a.Location, b.Location) })
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cov != nil {
		report := cov.Report(c)
		rep.Coverage = report.Coverage
		rep.Files = map[string]FileCoverage{}
		for _, name := range slices.Sorted(maps.Keys(report.Files)) {
			fr := report.Files[name]
			fc := FileCoverage{Coverage: fr.Coverage}
			for _, rng := range fr.NotCovered {
				if rng.Start.Row == rng.End.Row {
					fc.NotCovered = append(fc.NotCovered, fmt.Sprint(rng.Start.Row))
				} else {
					fc.NotCovered = append(fc.NotCovered, fmt.Sprintf("%d-%d", rng.Start.Row, rng.End.Row))
				}
			}
			rep.Files[name] = fc
		}
	}
	return rep, nil
}
