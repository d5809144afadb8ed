// Package apidoc renders docs/api.md from keygate's OpenAPI document
// (server/openapi.yaml): `make docs` writes it, and a test fails when the
// file is stale.
package apidoc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"

	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v3"
)

// Render turns the document, as YAML, into Markdown. Paths and schemas keep
// the order they are written in.
func Render(src []byte) ([]byte, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(src)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	order, err := writtenOrder(src)
	if err != nil {
		return nil, err
	}
	page := &page{Doc: doc}
	for _, tag := range doc.Tags {
		section := &section{Name: tag.Name, Description: tag.Description}
		for _, path := range order.paths {
			item := doc.Paths.Value(path)
			for _, method := range methods {
				op := item.GetOperation(method)
				if op == nil || !slices.Contains(op.Tags, tag.Name) {
					continue
				}
				params := slices.Clone(item.Parameters)
				params = append(params, op.Parameters...)
				o := &operation{Methods: []string{method}, IDs: []string{op.OperationID}, Path: path, Op: op, Params: params,
					Description: op.Description}
				if o.Description == "" {
					o.Description = item.Description
				}
				if last := lastOp(section.Ops); last != nil && last.Path == path && sameContract(last.Op, op) {
					last.Methods, last.IDs = append(last.Methods, method), append(last.IDs, op.OperationID)
					continue
				}
				section.Ops = append(section.Ops, o)
			}
		}
		page.Tags = append(page.Tags, section)
	}
	for _, name := range order.schemas {
		page.Schemas = append(page.Schemas, &schema{Name: name, Schema: doc.Components.Schemas[name].Value})
	}
	for _, name := range slices.Sorted(maps.Keys(doc.Components.SecuritySchemes)) {
		page.Security = append(page.Security, &scheme{Name: name, Scheme: doc.Components.SecuritySchemes[name].Value})
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, page); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"}

type page struct {
	Doc      *openapi3.T
	Tags     []*section
	Schemas  []*schema
	Security []*scheme
}

type section struct {
	Name, Description string
	Ops               []*operation
}

// operation is one section of the page: an operation, or several of one
// path whose methods share one contract (forward auth takes any method),
// described once.
type operation struct {
	Methods, IDs []string
	Path         string
	Op           *openapi3.Operation // the first
	Params       openapi3.Parameters
	Description  string // the operation's, else its path's
}

// Title is how the page names the operation: its method and path, or the
// path and which methods.
func (o *operation) Title() string {
	switch {
	case len(o.Methods) == 1:
		return "`" + o.Methods[0] + " " + o.Path + "`"
	case len(o.Methods) == len(methods):
		return "`" + o.Path + "`, any method"
	}
	return "`" + o.Path + "`, " + strings.Join(o.Methods, ", ")
}

// OperationIDs lists the operation ids, each with its method when there
// are several.
func (o *operation) OperationIDs() string {
	if len(o.IDs) == 1 {
		return "Operation id: `" + o.IDs[0] + "`"
	}
	parts := make([]string, len(o.IDs))
	for i, id := range o.IDs {
		parts[i] = "`" + id + "` (" + o.Methods[i] + ")"
	}
	return "Operation ids: " + strings.Join(parts, ", ")
}

func lastOp(ops []*operation) *operation {
	if len(ops) == 0 {
		return nil
	}
	return ops[len(ops)-1]
}

// sameContract reports whether two operations differ in their ids alone.
func sameContract(a, b *openapi3.Operation) bool {
	ca, cb := *a, *b
	ca.OperationID, cb.OperationID = "", ""
	ja, errA := json.Marshal(&ca)
	jb, errB := json.Marshal(&cb)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

type schema struct {
	Name   string
	Schema *openapi3.Schema
}

type scheme struct {
	Name   string
	Scheme *openapi3.SecurityScheme
}

// order is the order paths and schemas are written in.
type order struct{ paths, schemas []string }

func writtenOrder(src []byte) (order, error) {
	var doc struct {
		Paths      yaml.Node `yaml:"paths"`
		Components struct {
			Schemas yaml.Node `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return order{}, fmt.Errorf("openapi: %w", err)
	}
	keys := func(n yaml.Node) (out []string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, n.Content[i].Value)
		}
		return out
	}
	return order{paths: keys(doc.Paths), schemas: keys(doc.Components.Schemas)}, nil
}

var tmpl = template.Must(template.New("api.md").Funcs(template.FuncMap{
	"anchor":   anchor,
	"cell":     cell,
	"typeOf":   typeOf,
	"statuses": statuses,
	"media":    media,
	"security": security,
	"required": func(s *openapi3.Schema, name string) bool { return slices.Contains(allRequired(s), name) },
	"props":    properties,
	"trim":     strings.TrimSpace,
	"ref":      ref,
}).Parse(pageTemplate))
