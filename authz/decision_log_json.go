package authz

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The decision log writes an event for every decision, so its encoding is
// done by hand: no reflection, no sorting of keys that are already in
// order, and the input, encoded from its terms, copied as it is.

// MarshalJSON encodes the event in OPA's field order.
func (ev *DecisionLogEvent) MarshalJSON() ([]byte, error) {
	return ev.appendJSON(make([]byte, 0, 2048))
}

func (ev *DecisionLogEvent) appendJSON(buf []byte) ([]byte, error) {
	buf = append(buf, `{"labels":`...)
	buf = appendStringMap(buf, ev.Labels)
	buf = appendMember(buf, "decision_id", ev.DecisionID)
	if ev.TraceID != "" {
		buf = appendMember(buf, "trace_id", ev.TraceID)
	}
	if len(ev.Bundles) > 0 {
		buf = append(buf, `,"bundles":{`...)
		for i, name := range slices.Sorted(maps.Keys(ev.Bundles)) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, name)
			buf = append(buf, `:{"revision":`...)
			buf = appendJSONString(buf, ev.Bundles[name].Revision)
			buf = append(buf, '}')
		}
		buf = append(buf, '}')
	}
	if ev.Path != "" {
		buf = appendMember(buf, "path", ev.Path)
	}
	var err error
	for _, m := range []struct {
		name string
		v    *any
	}{{"input", ev.Input}, {"result", ev.Result}} {
		if m.v == nil {
			continue
		}
		buf = append(buf, `,"`...)
		buf = append(buf, m.name...)
		buf = append(buf, `":`...)
		if buf, err = appendAny(buf, *m.v); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct {
		name string
		v    []string
	}{{"erased", ev.Erased}, {"masked", ev.Masked}} {
		if len(m.v) == 0 {
			continue
		}
		buf = append(buf, `,"`...)
		buf = append(buf, m.name...)
		buf = append(buf, `":[`...)
		for i, s := range m.v {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, s)
		}
		buf = append(buf, ']')
	}
	if ev.Error != nil {
		buf = append(buf, `,"error":{"code":`...)
		buf = appendJSONString(buf, ev.Error.Code)
		buf = append(buf, `,"message":`...)
		buf = appendJSONString(buf, ev.Error.Message)
		buf = append(buf, '}')
	}
	buf = append(buf, `,"timestamp":"`...)
	buf = ev.Timestamp.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, '"')
	for _, m := range []struct {
		name string
		v    map[string]any
	}{{"metrics", ev.Metrics}, {"custom", ev.Custom}} {
		if len(m.v) == 0 {
			continue
		}
		buf = append(buf, `,"`...)
		buf = append(buf, m.name...)
		buf = append(buf, `":`...)
		if buf, err = appendAny(buf, m.v); err != nil {
			return nil, err
		}
	}
	return append(buf, '}'), nil
}

func appendMember(buf []byte, name, value string) []byte {
	buf = append(buf, ',', '"')
	buf = append(buf, name...)
	buf = append(buf, '"', ':')
	return appendJSONString(buf, value)
}

func appendStringMap(buf []byte, m map[string]string) []byte {
	buf = append(buf, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, k)
		buf = append(buf, ':')
		buf = appendJSONString(buf, m[k])
	}
	return append(buf, '}')
}

// appendAny encodes the values an event holds: what decodeRaw and
// ast.JSON make, the input encoded ahead, and the Go values keygate puts
// in results and custom; anything else goes through encoding/json.
func appendAny(buf []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case json.RawMessage:
		return append(buf, x...), nil
	case string:
		return appendJSONString(buf, x), nil
	case bool:
		return strconv.AppendBool(buf, x), nil
	case int64:
		return strconv.AppendInt(buf, x, 10), nil
	case json.Number:
		return append(buf, x...), nil
	case []any:
		buf = append(buf, '[')
		for i, e := range x {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendAny(buf, e); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case map[string]any:
		buf = append(buf, '{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, k)
			buf = append(buf, ':')
			var err error
			if buf, err = appendAny(buf, x[k]); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(buf, data...), nil
}

// termOf is the term of a value appendAny encodes, for the mask rule's
// input.
func termOf(v any) (ast.Value, error) {
	switch x := v.(type) {
	case nil:
		return ast.Null{}, nil
	case string:
		return ast.String(x), nil
	case bool:
		return ast.Boolean(x), nil
	case int64:
		return ast.Number(strconv.FormatInt(x, 10)), nil
	case []any:
		terms := make([]*ast.Term, len(x))
		for i, e := range x {
			t, err := termOf(e)
			if err != nil {
				return nil, err
			}
			terms[i] = ast.NewTerm(t)
		}
		return ast.NewArray(terms...), nil
	case map[string]any:
		obj := ast.NewObject()
		for k, e := range x {
			t, err := termOf(e)
			if err != nil {
				return nil, err
			}
			obj.Insert(ast.StringTerm(k), ast.NewTerm(t))
		}
		return obj, nil
	}
	return ast.InterfaceToValue(v)
}
