package apidoc_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/keygate/keygate/internal/apidoc"
	"github.com/keygate/keygate/server"
)

// TestAPIDocIsCurrent fails when docs/api.md is not what the document
// renders to.
func TestAPIDocIsCurrent(t *testing.T) {
	t.Parallel()
	want, err := apidoc.Render(server.OpenAPIYAML())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/api.md is stale: run make docs after changing server/openapi.yaml")
	}
}
