package apidoc

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

const pageTemplate = `# keygate HTTP API

<!-- Generated from server/openapi.yaml by ` + "`make docs`" + `: edit the document, not this file. -->

{{.Doc.Info.Summary}}

{{trim .Doc.Info.Description}}

The document itself is served at ` + "`GET /openapi.json`" + ` and printed by ` + "`keygate openapi`" + `. The Go
client is package [` + "`client`" + `](../client); the ` + "`keygate`" + ` command line manages keys with it.

## Authentication

| scheme | how |
| --- | --- |
{{range .Security}}| ` + "`{{.Name}}`" + ` | {{cell .Scheme.Description}} |
{{end}}
` + "`POST /v1/authorize`" + ` takes the API key in its body instead (` + "`api_key`" + `).

## Operations

| operation | does |
| --- | --- |
{{range .Tags}}{{range .Ops}}| [{{.Title}}](#{{anchor .Op.OperationID}}) | {{cell .Op.Summary}} |
{{end}}{{end}}{{$doc := .Doc}}{{range .Tags}}
## {{.Name}}

{{.Description}}
{{range .Ops}}
### <a id="{{anchor .Op.OperationID}}"></a>{{.Title}}

{{.Op.Summary}}{{with .Description}} {{trim .}}{{end}}

Authentication: {{security .Op $doc}}. {{.OperationIDs}}.
{{if .Params}}
| parameter | in | type | required | description |
| --- | --- | --- | --- | --- |
{{range .Params}}| ` + "`{{.Value.Name}}`" + ` | {{.Value.In}} | {{typeOf .Value.Schema}} | {{if .Value.Required}}yes{{end}} | {{cell .Value.Description}} |
{{end}}{{end}}{{with .Op.RequestBody}}
Request body{{if .Value.Required}} (required){{end}}: {{media .Value.Content}}.
{{end}}
| status | meaning | body | headers |
| --- | --- | --- | --- |
{{range statuses .Op}}| {{.Code}} | {{cell .Response.Description}} | {{media .Response.Content}} | {{.Headers}} |
{{end}}{{end}}{{end}}
## Schemas
{{range .Schemas}}
### <a id="schema-{{anchor .Name}}"></a>{{.Name}}
{{with .Schema.Description}}
{{trim .}}
{{end}}{{$props := props .Schema}}{{if $props}}
| field | type | required | description |
| --- | --- | --- | --- |
{{$s := .Schema}}{{range $props}}| ` + "`{{.Name}}`" + ` | {{typeOf .Ref}} | {{if required $s .Name}}yes{{end}} | {{cell .Description}} |
{{end}}{{else}}
Type: {{typeOf (ref .Schema)}}.
{{end}}{{end}}`

// anchor is a link target: lower case, anything but letters and digits a
// dash.
func anchor(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
}

// cell makes text fit a table cell.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// typeOf describes a schema in a few words, linking named schemas.
func typeOf(ref *openapi3.SchemaRef) string {
	if ref == nil {
		return ""
	}
	if ref.Ref != "" {
		name := path.Base(ref.Ref)
		return "[" + name + "](#schema-" + anchor(name) + ")"
	}
	s := ref.Value
	if s == nil {
		return "any"
	}
	join := func(refs openapi3.SchemaRefs, sep string) string {
		var parts []string
		for _, r := range refs {
			if t := typeOf(r); t != "" && t != "any" {
				parts = append(parts, t)
			}
		}
		return strings.Join(parts, sep)
	}
	switch {
	case s.Const != nil:
		b, _ := json.Marshal(s.Const)
		return "`" + string(b) + "`"
	case len(s.OneOf) > 0:
		return join(s.OneOf, " or ")
	case len(s.AnyOf) > 0:
		return join(s.AnyOf, " or ")
	case len(s.AllOf) > 0 && len(s.Properties) == 0:
		return join(s.AllOf, " and ")
	}
	var types []string
	for _, t := range s.Type.Slice() {
		switch t {
		case "array":
			types = append(types, "array of "+typeOf(s.Items))
		case "string":
			if s.Format != "" {
				t += " (" + s.Format + ")"
			}
			types = append(types, t)
		default:
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		if len(s.Properties) > 0 || s.AdditionalProperties.Schema != nil {
			types = []string{"object"}
		} else {
			return "any"
		}
	}
	out := strings.Join(types, " or ")
	if rules := constraints(s); rules != "" {
		out += "; " + rules
	}
	return out
}

// constraints lists a schema's bounds.
func constraints(s *openapi3.Schema) string {
	var r []string
	if len(s.Enum) > 0 {
		var vals []string
		for _, v := range s.Enum {
			vals = append(vals, fmt.Sprintf("`%v`", v))
		}
		r = append(r, "one of "+strings.Join(vals, ", "))
	}
	if s.MinLength == 1 && s.MaxLength == nil {
		r = append(r, "not empty")
	} else if s.MinLength > 0 || s.MaxLength != nil {
		r = append(r, bounds(float64(s.MinLength), s.MinLength > 0, ptrFloat(s.MaxLength), "characters"))
	}
	if s.Min != nil || s.Max != nil {
		r = append(r, bounds(deref(s.Min), s.Min != nil, s.Max, ""))
	}
	if s.MinItems > 0 || s.MaxItems != nil {
		r = append(r, bounds(float64(s.MinItems), s.MinItems > 0, ptrFloat(s.MaxItems), "items"))
	}
	if s.MaxProps != nil {
		r = append(r, bounds(0, false, ptrFloat(s.MaxProps), "members"))
	}
	if s.Pattern != "" {
		r = append(r, "pattern `"+s.Pattern+"`")
	}
	if s.AdditionalProperties.Schema != nil {
		r = append(r, "values "+typeOf(s.AdditionalProperties.Schema))
	}
	return strings.Join(r, ", ")
}

func bounds(lo float64, hasLo bool, hi *float64, unit string) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	out := ""
	switch {
	case hasLo && hi != nil:
		out = f(lo) + "–" + f(*hi)
	case hasLo:
		out = "at least " + f(lo)
	case hi != nil:
		out = "at most " + f(*hi)
	}
	if unit != "" {
		out += " " + unit
	}
	return out
}

func ptrFloat(v *uint64) *float64 {
	if v == nil {
		return nil
	}
	f := float64(*v)
	return &f
}

func deref(v *float64) float64 {
	if v == nil {
		return 0
	}
	return *v
}

// ref wraps a schema for typeOf.
func ref(s *openapi3.Schema) *openapi3.SchemaRef { return &openapi3.SchemaRef{Value: s} }

type status struct {
	Code     string
	Response *openapi3.Response
	Headers  string
}

// statuses lists an operation's answers by status.
func statuses(op *openapi3.Operation) []status {
	var out []status
	for _, code := range slices.Sorted(maps.Keys(op.Responses.Map())) {
		r := op.Responses.Value(code).Value
		var headers []string
		for _, h := range slices.Sorted(maps.Keys(r.Headers)) {
			if h != "X-Request-Id" { // on every answer
				headers = append(headers, "`"+h+"`")
			}
		}
		out = append(out, status{Code: code, Response: r, Headers: strings.Join(headers, ", ")})
	}
	return out
}

// media describes a body by media type.
func media(c openapi3.Content) string {
	var out []string
	for _, mt := range slices.Sorted(maps.Keys(c)) {
		out = append(out, "`"+mt+"` "+typeOf(c[mt].Schema))
	}
	return strings.Join(out, "; ")
}

// security names what an operation takes, in the words of its schemes.
func security(op *openapi3.Operation, doc *openapi3.T) string {
	reqs := doc.Security
	if op.Security != nil {
		reqs = *op.Security
	}
	var alts []string
	for _, req := range reqs {
		var names []string
		for _, name := range slices.Sorted(maps.Keys(req)) {
			names = append(names, "`"+name+"`")
		}
		if len(names) > 0 {
			alts = append(alts, strings.Join(names, " and "))
		}
	}
	if len(alts) == 0 {
		return "none"
	}
	return strings.Join(alts, " or ")
}

type property struct {
	Name, Description string
	Ref               *openapi3.SchemaRef
}

// properties lists an object schema's members, those it takes from allOf
// included, by name.
func properties(s *openapi3.Schema) []property {
	all := map[string]*openapi3.SchemaRef{}
	var collect func(s *openapi3.Schema)
	collect = func(s *openapi3.Schema) {
		for _, sub := range s.AllOf {
			collect(sub.Value)
		}
		maps.Copy(all, s.Properties)
	}
	collect(s)
	var out []property
	for _, name := range slices.Sorted(maps.Keys(all)) {
		p := property{Name: name, Ref: all[name]}
		if p.Ref.Ref == "" && p.Ref.Value != nil {
			p.Description = p.Ref.Value.Description
		}
		out = append(out, p)
	}
	return out
}

// allRequired lists the required members of s and of its allOf.
func allRequired(s *openapi3.Schema) []string {
	out := slices.Clone(s.Required)
	for _, sub := range s.AllOf {
		out = append(out, allRequired(sub.Value)...)
	}
	return out
}
