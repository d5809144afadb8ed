package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
)

// ginParam turns gin's ":id" and "*path" into OpenAPI's "{id}".
var ginParam = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)

// TestOpenAPIRoutes fails on a route the router has and the document
// lacks, or the reverse, and says what to add.
func TestOpenAPIRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	contract, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	var routed []string
	for _, r := range h.srv.Router().Routes() {
		if r.Method == http.MethodConnect {
			continue // OpenAPI 3.1 cannot describe CONNECT, which gin's Any also routes
		}
		routed = append(routed, r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(routed)
	documented := contract.Operations()
	for _, op := range routed {
		if !slices.Contains(documented, op) {
			t.Errorf("%s is routed but not in server/openapi.yaml. Add it under paths (reuse the "+
				"components), then run make docs:\n\n%s", op, operationSnippet(op))
		}
	}
	for _, op := range documented {
		if !slices.Contains(routed, op) {
			t.Errorf("%s is in server/openapi.yaml but the router has no such route: route it, or remove it "+
				"from the document and run make docs", op)
		}
	}
}

// operationSnippet is the start of a document entry for a route.
func operationSnippet(op string) string {
	method, path, _ := strings.Cut(op, " ")
	var b strings.Builder
	fmt.Fprintf(&b, "  %s:\n", path)
	if params := regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(path, -1); len(params) > 0 {
		b.WriteString("    parameters:\n")
		for _, p := range params {
			if p[1] == "id" {
				b.WriteString("      - {$ref: \"#/components/parameters/ID\"}\n")
			} else {
				fmt.Fprintf(&b, "      - {name: %s, in: path, required: true, schema: {type: string}}\n", p[1])
			}
		}
	}
	fmt.Fprintf(&b, "    %s:\n      operationId: …\n      tags: […]\n      summary: …\n", strings.ToLower(method))
	if strings.HasPrefix(path, "/api/") {
		b.WriteString("      security: [{managementJWT: []}]\n")
	}
	b.WriteString("      responses:\n        \"200\":\n          description: …\n" +
		"          headers:\n            X-Request-Id: {$ref: \"#/components/headers/RequestId\"}\n" +
		"          content:\n            application/json:\n              schema: {$ref: \"#/components/schemas/…\"}\n")
	if strings.HasPrefix(path, "/api/") {
		b.WriteString("        \"401\": {$ref: \"#/components/responses/Unauthorized\"}\n" +
			"        \"403\": {$ref: \"#/components/responses/Forbidden\"}\n" +
			"        \"429\": {$ref: \"#/components/responses/RateLimited\"}\n")
	}
	b.WriteString("        \"500\": {$ref: \"#/components/responses/Internal\"}\n" +
		"        \"503\": {$ref: \"#/components/responses/Unavailable\"}\n")
	return b.String()
}

// TestOpenAPIServed: /openapi.json is the document, as `keygate openapi`
// prints it.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t))
	res := h.do("GET", "/openapi.json", "", nil)
	wantStatus(t, "openapi.json", res, http.StatusOK)
	doc, err := server.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.body, doc) {
		t.Fatal("GET /openapi.json is not the document")
	}
	if _, err := openapitest.Parse(res.body); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(doc, []byte("{\n  \"openapi\": \"3.1.0\",\n  \"info\"")) {
		t.Fatalf("the JSON keeps the members in the order they are written: %.80s", doc)
	}
}
