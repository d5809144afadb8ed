package authz

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// ReservedDataRoots are the top-level names of data keygate keeps for
// rules: data.keygate.* for its policies (keygate.authz,
// keygate.management and those to come), data.system.* for OPA's
// conventions (data.system.log.mask). A data file may not write there.
var ReservedDataRoots = []string{"keygate", "system"}

// QueryLogMask is the rule that masks decision logs, in OPA's convention:
// a set of JSON pointers to remove, or {"op": "upsert", "path", "value"}
// objects. The engine evaluates it when the policy defines it.
const QueryLogMask = "data.system.log.mask"

// compiledPolicy is a policy set compiled, with the store of its data.
type compiledPolicy struct {
	compiler *ast.Compiler
	store    storage.Store
	modules  map[string]*ast.Module
	native   bool // calls keygate.scope_match (useNativeScopeMatch)
	// mocked: each query replaces the policy's scope_match with
	// keygate.scope_match (Rego's `with`), so that a trace names the
	// policy's function; slower, for `keygate policy eval`.
	mocked bool
}

// compileOptions say how strictly a policy set is compiled.
type compileOptions struct {
	tests  bool // compile the tests with the modules
	strict bool // `opa check --strict`: unused variables, imports and arguments are errors
	print  bool // keep print() calls (for tests and `keygate policy eval`); dropped otherwise
}

// compilePolicy parses and compiles set over its data. Rules and data at
// the same path are an error, as is data under a reserved root. Returns
// EINVALID with the compiler's messages (file, line and error).
func compilePolicy(ctx context.Context, set PolicySet, opts compileOptions) (*compiledPolicy, error) {
	if len(set.Modules) == 0 {
		return nil, Errorf(EINVALID, "policy does not compile: no policy files (*.rego, not *_test.rego)")
	}
	if err := checkReserved(set.Data); err != nil {
		return nil, err
	}
	modules, err := set.parse(opts.tests)
	if err != nil {
		return nil, err
	}
	store := storeOf(set.Data)
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer store.Abort(ctx, txn)
	compiler := ast.NewCompiler().WithCapabilities(capabilities()).WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(opts.strict).WithUseTypeCheckAnnotations(true).WithEnablePrintStatements(opts.print).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	if compiler.Compile(modules); compiler.Failed() {
		return nil, Errorf(EINVALID, "policy does not compile: %s", compiler.Errors)
	}
	return &compiledPolicy{compiler: compiler, store: store, modules: modules}, nil
}

// checkReserved refuses data under a reserved root.
func checkReserved(data map[string]any) error {
	for _, root := range ReservedDataRoots {
		if _, ok := data[root]; ok {
			return Errorf(EINVALID, "data files may not write data.%s: keygate keeps it for rules (docs/policies.md); put data documents under a name of your own", root)
		}
	}
	return nil
}

// storeOf is an in-memory store holding data (nil: empty).
func storeOf(data map[string]any) storage.Store {
	if data == nil {
		data = map[string]any{}
	}
	return inmem.NewFromObject(data)
}

// requiredQueries are the rules keygate evaluates; a policy missing one
// cannot serve.
var requiredQueries = []string{QueryDecision, QueryDecisions, QueryManagementDecision}

func (c *compiledPolicy) checkRequired() error {
	for _, q := range requiredQueries {
		if len(c.compiler.GetRulesExact(ast.MustParseRef(q))) == 0 {
			return Errorf(EINVALID, "policy does not define %s", q)
		}
	}
	return nil
}

// definesMask reports whether the policy masks decision logs.
func (c *compiledPolicy) definesMask() bool {
	return len(c.compiler.GetRulesExact(ast.MustParseRef(QueryLogMask))) > 0
}

// CheckPolicy is `keygate policy check`: set and its tests compile
// strictly (as `opa check --strict`), its data stays out of the reserved
// roots and conflicts with no rule, and it defines every rule keygate
// evaluates. It runs no test. Returns EINVALID saying what is wrong.
func CheckPolicy(ctx context.Context, set PolicySet) error {
	c, err := compilePolicy(ctx, set, compileOptions{tests: true, strict: true, print: true})
	if err != nil {
		return err
	}
	return c.checkRequired()
}

// FormatPolicy formats one Rego file as `opa fmt` does (Rego v1).
// Returns EINVALID when it does not parse.
func FormatPolicy(name string, src []byte) ([]byte, error) {
	out, err := format.SourceWithOpts(name, src, format.Opts{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, Errorf(EINVALID, "%s", err)
	}
	return out, nil
}

// parseQuery parses a Rego query; mocked, each of its expressions has the
// policy's scope_match replaced by keygate.scope_match.
func parseQuery(query string, mocked bool) (ast.Body, error) {
	body, err := ast.ParseBodyWithOpts(query, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, Errorf(EINVALID, "query does not parse: %s", err)
	}
	if mocked {
		for _, expr := range body {
			expr.With = append(expr.With, &ast.With{Target: ast.NewTerm(scopeMatchRef), Value: ast.NewTerm(nativeScopeMatchRef)})
		}
	}
	return body, nil
}

// summarizeErrors shortens a list of problems for a log line or an API
// answer: the first few, and how many more.
func summarizeErrors(problems []string, limit int) string {
	if len(problems) <= limit {
		return strings.Join(problems, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(slices.Clone(problems[:limit]), "; "), len(problems)-limit)
}
