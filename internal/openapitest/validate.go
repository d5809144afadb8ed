package openapitest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Bodies, parameters and headers are validated with JSON Schema 2020-12
// schemas compiled once from the document and kept: kin-openapi's filter
// compiles them again for every value (milliseconds an exchange), which
// would slow the load the end-to-end tests drive.

// docURL names the document as a schema resource.
const docURL = "https://keygate.invalid/openapi.json"

func newCompiler(data []byte) (*jsonschema.Compiler, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	return c, nil
}

// schema compiles the schema at a JSON pointer of the document, once.
func (c *Contract) schema(ptr string) (*jsonschema.Schema, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.schemas[ptr]; ok {
		return s, nil
	}
	s, err := c.compiler.Compile(docURL + ptr)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", ptr, err)
	}
	c.schemas[ptr] = s
	return s, nil
}

// validate checks a body against the schema at ptr: JSON, or text.
func (c *Contract) validate(ptr string, body []byte, asJSON bool) error {
	var v any = string(body)
	if asJSON {
		var err error
		if v, err = jsonschema.UnmarshalJSON(bytes.NewReader(body)); err != nil {
			return fmt.Errorf("the body is not JSON: %w", err)
		}
	}
	return c.validateValue(ptr, v)
}

func (c *Contract) validateValue(ptr string, v any) error {
	s, err := c.schema(ptr)
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// operation is a request's route in the document.
type operation struct {
	route  *routers.Route
	params map[string]string
}

// pathPtr and opPtr are the JSON pointers of the path item and operation.
func (o operation) pathPtr() string { return "#/paths/" + token(o.route.Path) }
func (o operation) opPtr() string   { return o.pathPtr() + "/" + strings.ToLower(o.route.Method) }

// token escapes a JSON pointer token (RFC 6901) for a URI fragment.
func token(s string) string {
	return url.PathEscape(strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1"))
}

// refOr is where a component lives: its $ref, else where it is written.
func refOr(ref, ptr string) string {
	if ref != "" {
		return ref
	}
	return ptr
}

// checkRequest reports what the document refuses in a request.
func (c *Contract) checkRequest(op operation, ex Exchange) error {
	o := op.route.Operation
	var errs []error
	if err := c.checkSecurity(o, ex.Request); err != nil {
		errs = append(errs, err)
	}
	for i, p := range op.route.PathItem.Parameters {
		if o.Parameters.GetByInAndName(p.Value.In, p.Value.Name) == nil {
			errs = append(errs, c.checkParam(refOr(p.Ref, op.pathPtr()+"/parameters/"+strconv.Itoa(i)), p.Value, ex.Request, op.params))
		}
	}
	for i, p := range o.Parameters {
		errs = append(errs, c.checkParam(refOr(p.Ref, op.opPtr()+"/parameters/"+strconv.Itoa(i)), p.Value, ex.Request, op.params))
	}
	if rb := o.RequestBody; rb != nil {
		ptr := refOr(rb.Ref, op.opPtr()+"/requestBody")
		switch mt := mediaType(rb.Value.Content, ex.Request.Header.Get("Content-Type")); {
		case len(bytes.TrimSpace(ex.Body)) == 0:
			if rb.Value.Required {
				errs = append(errs, errors.New("the request body is required"))
			}
		case mt == "":
			errs = append(errs, fmt.Errorf("the request's media type %q is not documented", ex.Request.Header.Get("Content-Type")))
		default:
			if err := c.validate(ptr+"/content/"+token(mt)+"/schema", ex.Body, isJSON(mt)); err != nil {
				errs = append(errs, fmt.Errorf("the request body: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkSecurity holds when one of the operation's requirements is met.
func (c *Contract) checkSecurity(o *openapi3.Operation, r *http.Request) error {
	reqs := c.Doc.Security
	if o.Security != nil {
		reqs = *o.Security
	}
	if len(reqs) == 0 {
		return nil
	}
	var missing []string
	for _, req := range reqs {
		ok := true
		for name := range req {
			scheme := c.Doc.Components.SecuritySchemes[name]
			if scheme == nil || !credentialPresent(scheme.Value, r) {
				ok = false
				missing = append(missing, name)
			}
		}
		if ok {
			return nil
		}
	}
	return fmt.Errorf("no credential the document asks for (%s)", strings.Join(missing, " or "))
}

// credentialPresent checks that a request carries the credential a
// security scheme names, in its form: keygate checks the credential
// itself, and answers 401 when it is refused.
func credentialPresent(s *openapi3.SecurityScheme, r *http.Request) bool {
	switch {
	case s.Type == "http" && s.Scheme == "bearer":
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(token) == "" {
			return false
		}
		return strings.HasPrefix(token, "pk_") == (s.BearerFormat == "pk_")
	case s.Type == "apiKey" && s.In == "header":
		return r.Header.Get(s.Name) != ""
	}
	return false
}

// checkParam checks one parameter, a scalar in the path, query or headers.
func (c *Contract) checkParam(ptr string, p *openapi3.Parameter, r *http.Request, pathParams map[string]string) error {
	var raw string
	var present bool
	switch p.In {
	case openapi3.ParameterInPath:
		raw, present = pathParams[p.Name]
	case openapi3.ParameterInQuery:
		var vals []string
		vals, present = r.URL.Query()[p.Name]
		if present {
			raw = vals[0]
		}
	case openapi3.ParameterInHeader:
		raw = r.Header.Get(p.Name)
		present = raw != ""
	}
	if !present {
		if p.Required {
			return fmt.Errorf("the %s parameter %q is required", p.In, p.Name)
		}
		return nil
	}
	if err := c.validateValue(ptr+"/schema", scalar(raw, p.Schema.Value)); err != nil {
		return fmt.Errorf("the %s parameter %q: %w", p.In, p.Name, err)
	}
	return nil
}

// scalar reads a parameter or header value as its schema's type says; a
// value that does not parse stays a string, for the schema to refuse.
func scalar(raw string, s *openapi3.Schema) any {
	switch {
	case s == nil:
		return raw
	case s.Type.Is("integer"), s.Type.Is("number"):
		if _, err := strconv.ParseFloat(raw, 64); err == nil {
			return jsonNumber(raw)
		}
	case s.Type.Is("boolean"):
		if raw == "true" || raw == "false" {
			return raw == "true"
		}
	}
	return raw
}

func jsonNumber(raw string) any {
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(raw))
	if err != nil {
		return raw
	}
	return v
}

// checkResponse checks an answer: documented status, media type, headers
// and body.
func (c *Contract) checkResponse(op operation, ex Exchange) error {
	responses := op.route.Operation.Responses
	key := strconv.Itoa(ex.Status)
	ref := responses.Value(key)
	if ref == nil {
		key = key[:1] + "XX"
		ref = responses.Value(key)
	}
	if ref == nil {
		return fmt.Errorf("status %d is not documented for %s", ex.Status, op.route.Operation.OperationID)
	}
	ptr := refOr(ref.Ref, op.opPtr()+"/responses/"+key)
	resp := ref.Value
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(resp.Headers)) {
		h := resp.Headers[name]
		hptr := refOr(h.Ref, ptr+"/headers/"+token(name))
		switch v := ex.Header.Get(name); {
		case v == "" && h.Value.Required:
			errs = append(errs, fmt.Errorf("the header %s is missing", name))
		case v != "" && h.Value.Schema != nil:
			if err := c.validateValue(hptr+"/schema", scalar(v, h.Value.Schema.Value)); err != nil {
				errs = append(errs, fmt.Errorf("the header %s: %w", name, err))
			}
		}
	}
	if len(resp.Content) == 0 {
		if len(ex.ResponseBody) > 0 {
			errs = append(errs, fmt.Errorf("a %d has no documented body but has one", ex.Status))
		}
		return errors.Join(errs...)
	}
	if ex.Request.Method == http.MethodHead {
		// An answer to HEAD has the headers of the GET answer and no body.
		return errors.Join(errs...)
	}
	mt := mediaType(resp.Content, ex.Header.Get("Content-Type"))
	switch {
	case mt == "":
		errs = append(errs, fmt.Errorf("the media type %q is not documented for a %d", ex.Header.Get("Content-Type"), ex.Status))
	case resp.Content[mt].Schema != nil && !ex.SkipResponseBody:
		if err := c.validate(ptr+"/content/"+token(mt)+"/schema", ex.ResponseBody, isJSON(mt)); err != nil {
			errs = append(errs, fmt.Errorf("the body: %w", err))
		}
	}
	return errors.Join(errs...)
}

// mediaType is the key of content that a Content-Type names, "" for none.
func mediaType(content openapi3.Content, contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	if _, ok := content[mt]; ok {
		return mt
	}
	return ""
}

func isJSON(mt string) bool { return mt == "application/json" || strings.HasSuffix(mt, "+json") }
