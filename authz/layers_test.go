package authz_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLayers keeps the package arrows pointing inward: the domain imports
// the standard library and OPA only, and the adapters (storage, server,
// mcp) import the domain but not each other, nor the composition root.
func TestLayers(t *testing.T) {
	t.Parallel()
	const module = "github.com/keygate/keygate/"
	tests := []struct {
		note    string
		dir     string
		allowed func(path string) bool
	}{
		{"the domain imports the standard library and OPA only", ".", func(p string) bool {
			return stdlib(p) || strings.HasPrefix(p, "github.com/open-policy-agent/opa/")
		}},
		{"storage imports no other adapter", "../storage", notModule(module, "authz", "migrations")},
		{"server imports no other adapter", "../server", notModule(module, "authz")},
		{"mcp imports no other adapter", "../mcp", notModule(module, "authz")},
		{"the Go client imports the standard library only", "../client", stdlib},
		{"redis imports no other adapter", "../redis", notModule(module, "authz")},
	}
	for _, tc := range tests {
		files, err := filepath.Glob(filepath.Join(tc.dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("%s: no Go files in %s", tc.note, tc.dir)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !tc.allowed(p) {
					t.Errorf("%s: %s imports %s", tc.note, file, p)
				}
			}
		}
	}
}

// stdlib reports whether an import path is the standard library's: its
// first element has no dot.
func stdlib(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// notModule allows anything but keygate's own packages, except those named.
func notModule(module string, allowed ...string) func(string) bool {
	return func(p string) bool {
		rest, ok := strings.CutPrefix(p, module)
		if !ok {
			return true
		}
		for _, a := range allowed {
			if rest == a || strings.HasPrefix(rest, a+"/") {
				return true
			}
		}
		return false
	}
}
