// Package openapitest holds keygate's tests to its OpenAPI document
// (server/openapi.yaml): every exchange a test makes is checked against it,
// so the document cannot drift from what the handlers do. Tests only.
//
// The rules, for one request and its answer:
//   - a path or method the document does not describe must be answered 404
//     or 405 with a problem document;
//   - a request the document refuses (a missing credential, a body or
//     parameter that does not match) must be answered with a documented 4xx:
//     the document may be looser than the handlers, never stricter;
//   - every answer must be documented for its operation: status, media
//     type, required headers and body schema.
package openapitest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/keygate/keygate/server"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Contract is the parsed document, its router and its compiled schemas.
type Contract struct {
	Doc      *openapi3.T
	router   routers.Router
	compiler *jsonschema.Compiler
	rest     []restPath

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema // by JSON pointer
}

var load = sync.OnceValues(func() (*Contract, error) {
	data, err := server.OpenAPIJSON()
	if err != nil {
		return nil, err
	}
	return Parse(data)
})

// Load returns keygate's document, parsed and checked once per process.
func Load() (*Contract, error) { return load() }

// Parse reads and checks an OpenAPI 3.1 document.
func Parse(data []byte) (*Contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		return nil, errors.New("openapi: the document must be OpenAPI 3.1")
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: the document is not valid: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	compiler, err := newCompiler(data)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return &Contract{Doc: doc, router: r, compiler: compiler, rest: restPaths(doc), schemas: map[string]*jsonschema.Schema{}}, nil
}

// restOfPath marks a path parameter, the last segment of its path, that
// takes the rest of a request's path, slashes included (forward auth's
// {path}, which Envoy fills with the forwarded request's path). OpenAPI's
// templates match one segment; the extension says where that is not so.
const restOfPath = "x-keygate-rest-of-path"

// restPath is a documented path ending in a rest-of-path parameter.
type restPath struct {
	prefix, param string // "/v1/forward-auth/", "path"
}

func restPaths(doc *openapi3.T) []restPath {
	var out []restPath
	for path, item := range doc.Paths.Map() {
		for _, p := range item.Parameters {
			if p.Value == nil || p.Value.In != openapi3.ParameterInPath || p.Value.Extensions[restOfPath] != true {
				continue
			}
			if prefix, ok := strings.CutSuffix(path, "{"+p.Value.Name+"}"); ok {
				out = append(out, restPath{prefix: prefix, param: p.Value.Name})
			}
		}
	}
	return out
}

// findRoute is the router's route for a request, or for a path that a
// rest-of-path parameter takes whole.
func (c *Contract) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := c.router.FindRoute(req)
	if err == nil {
		return route, params, nil
	}
	for _, rp := range c.rest {
		rest, ok := strings.CutPrefix(req.URL.Path, rp.prefix)
		if !ok || !strings.Contains(rest, "/") {
			continue
		}
		one := req.Clone(context.Background())
		one.URL.Path, one.URL.RawPath = rp.prefix+"x", ""
		if r, p, e := c.router.FindRoute(one); e == nil {
			p[rp.param] = rest
			return r, p, nil
		}
	}
	return nil, nil, err
}

// Exchange is one request and its answer. Body and ResponseBody are the
// bodies as sent and received; SkipResponseBody leaves an answer's body
// unchecked (an event stream that stays open).
type Exchange struct {
	Request          *http.Request
	Body             []byte
	Status           int
	Header           http.Header
	ResponseBody     []byte
	SkipResponseBody bool
}

// Check validates an exchange by the package's rules and returns the
// operation it was ("" for none) and what is wrong with it.
func (c *Contract) Check(ex Exchange) (string, error) {
	req := ex.Request.Clone(context.Background())
	req.Body = http.NoBody
	route, params, err := c.findRoute(req)
	if err != nil {
		return "", c.checkUndocumented(ex, err)
	}
	op := operation{route: route, params: params}
	reqErr := c.checkRequest(op, ex)
	if err := c.checkResponse(op, ex); err != nil {
		return route.Operation.OperationID, fmt.Errorf("the answer does not match the document: %w", err)
	}
	if reqErr != nil && (ex.Status < 400 || ex.Status > 499) {
		return route.Operation.OperationID, fmt.Errorf("the document refuses the request (%w) but keygate answered %d", reqErr, ex.Status)
	}
	return route.Operation.OperationID, nil
}

// checkUndocumented accepts only a 404 or 405 problem for what the document
// does not describe.
func (c *Contract) checkUndocumented(ex Exchange, routeErr error) error {
	if ex.Status != http.StatusNotFound && ex.Status != http.StatusMethodNotAllowed {
		return fmt.Errorf("%s %s is not in the document (%w), yet keygate answered %d", ex.Request.Method, ex.Request.URL.Path, routeErr, ex.Status)
	}
	if ct := ex.Header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("a %d must be a problem document, got %q", ex.Status, ct)
	}
	if err := c.validate("#/components/schemas/Problem", ex.ResponseBody, true); err != nil {
		return fmt.Errorf("a %d must be a problem document: %w", ex.Status, err)
	}
	return nil
}

// Operations lists every operation of the document as "METHOD /path"
// (paths as written, {id} for a parameter), sorted.
func (c *Contract) Operations() []string {
	var out []string
	for path, item := range c.Doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// OperationIDs lists every operation's id, sorted.
func (c *Contract) OperationIDs() []string {
	var out []string
	for _, item := range c.Doc.Paths.Map() {
		for _, op := range item.Operations() {
			out = append(out, op.OperationID)
		}
	}
	slices.Sort(out)
	return out
}
