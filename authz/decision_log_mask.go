package authz

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// applyMask applies the answer of data.system.log.mask to an event, as
// OPA's decision logger does (plugins/logs/mask.go): a string is a JSON
// pointer to remove; an object {"op": "remove"|"upsert", "path", "value"}
// removes or sets. Paths start with /input or /result. What is removed is
// listed in the event's erased, what is set in masked. A path that leads
// nowhere is skipped; a malformed rule fails the whole event, which is then
// not logged rather than logged unmasked.
func applyMask(ev *DecisionLogEvent, rules []any) error {
	for _, raw := range rules {
		op, path, value := "remove", "", any(nil)
		switch r := raw.(type) {
		case string:
			path = r
		case map[string]any:
			if s, ok := r["op"].(string); ok {
				op = s
			}
			path, _ = r["path"].(string)
			value = r["value"]
		default:
			return Errorf(EINVALID, "a mask rule must be a JSON pointer or an {op, path, value} object, got %T", raw)
		}
		if op != "remove" && op != "upsert" {
			return Errorf(EINVALID, "mask rule op %q is neither remove nor upsert", op)
		}
		if !strings.HasPrefix(path, "/") {
			return Errorf(EINVALID, "mask rule path %q must start with /", path)
		}
		parts := strings.Split(path[1:], "/")
		escaped := make([]string, len(parts))
		for i, p := range parts {
			u, err := url.PathUnescape(p)
			if err != nil {
				return Errorf(EINVALID, "mask rule path %q: %s", path, err)
			}
			parts[i], escaped[i] = u, url.PathEscape(u)
		}
		var root **any
		switch parts[0] {
		case "input":
			root = &ev.Input
			if err := decodeRaw(ev.Input); err != nil {
				return err
			}
		case "result":
			root = &ev.Result
		default:
			return Errorf(EINVALID, "mask rule path %q must start with /input or /result", path)
		}
		pointer := "/" + strings.Join(escaped, "/")
		if op == "remove" {
			switch {
			case *root == nil:
				continue
			case len(parts) == 1:
				*root = nil
			case !removeAt(*root, parts[1:]):
				continue
			}
			ev.Erased = append(ev.Erased, pointer)
			continue
		}
		switch {
		case len(parts) == 1:
			v := value
			*root = &v
		case *root == nil || !upsertAt(**root, parts[1:], value):
			continue
		}
		ev.Masked = append(ev.Masked, pointer)
	}
	return nil
}

// walk follows path, but its last segment, below *root: it returns the
// object or array that holds the last segment and how to put another in
// its place; false when the path leads nowhere. With mkdir it makes the
// objects missing on the way.
func walk(root *any, path []string, mkdir bool) (any, func(any), bool) {
	node := *root
	replace := func(v any) { *root = v }
	for _, p := range path[:len(path)-1] {
		switch v := node.(type) {
		case map[string]any:
			c, ok := v[p]
			if !ok {
				if !mkdir {
					return nil, nil, false
				}
				c = map[string]any{}
				v[p] = c
			}
			replace = func(x any) { v[p] = x }
			node = c
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(v) {
				return nil, nil, false
			}
			replace = func(x any) { v[i] = x }
			node = v[i]
		default:
			return nil, nil, false
		}
	}
	return node, replace, true
}

// index is p as an index of arr, false when it is not one.
func index(arr []any, p string) (int, bool) {
	i, err := strconv.Atoi(p)
	return i, err == nil && i >= 0 && i < len(arr)
}

// removeAt removes the member or element at path below *root; false when
// the path leads nowhere. An array loses the element, so the shorter array
// is written back where the old one was.
func removeAt(root *any, path []string) bool {
	node, replace, ok := walk(root, path, false)
	if !ok {
		return false
	}
	last := path[len(path)-1]
	switch v := node.(type) {
	case map[string]any:
		if _, ok := v[last]; !ok {
			return false
		}
		delete(v, last)
	case []any:
		i, ok := index(v, last)
		if !ok {
			return false
		}
		replace(slices.Delete(v, i, i+1))
	default:
		return false
	}
	return true
}

// upsertAt sets path below node to value, making the objects missing on
// the way; false when something other than an object or array is in the
// way.
func upsertAt(node any, path []string, value any) bool {
	holder, _, ok := walk(&node, path, true)
	if !ok {
		return false
	}
	last := path[len(path)-1]
	switch v := holder.(type) {
	case map[string]any:
		v[last] = value
	case []any:
		i, ok := index(v, last)
		if !ok {
			return false
		}
		v[i] = value
	default:
		return false
	}
	return true
}

// decodeRaw turns an input encoded ahead (json.RawMessage) into values a
// mask rule can change.
func decodeRaw(v *any) error {
	if v == nil {
		return nil
	}
	raw, ok := (*v).(json.RawMessage)
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return err
	}
	*v = out
	return nil
}

// appendJSON appends the JSON of a value of JSON data (what an input
// document holds: null, booleans, numbers, strings, arrays, objects with
// string keys; a set is written as an array) without going through Go
// maps, whose encoding sorts keys.
func appendJSON(buf []byte, v ast.Value) ([]byte, error) {
	switch x := v.(type) {
	case ast.Null:
		return append(buf, "null"...), nil
	case ast.Boolean:
		return strconv.AppendBool(buf, bool(x)), nil
	case ast.Number:
		return append(buf, x...), nil
	case ast.String:
		return appendJSONString(buf, string(x)), nil
	case *ast.Array:
		buf = append(buf, '[')
		for i := range x.Len() {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendJSON(buf, x.Elem(i).Value); err != nil {
				return nil, err
			}
		}
		return append(buf, ']'), nil
	case ast.Set:
		return appendJSON(buf, ast.NewArray(x.Slice()...))
	case ast.Object:
		buf = append(buf, '{')
		for i, k := range x.Keys() {
			key, ok := k.Value.(ast.String)
			if !ok {
				return nil, Errorf(EINTERNAL, "an input object has a key that is not a string: %v", k)
			}
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, string(key))
			buf = append(buf, ':')
			var err error
			if buf, err = appendJSON(buf, x.Get(k).Value); err != nil {
				return nil, err
			}
		}
		return append(buf, '}'), nil
	}
	return nil, Errorf(EINTERNAL, "an input holds %T, which is not JSON", v)
}

// appendJSONString appends s as a JSON string, as encoding/json writes it
// (invalid UTF-8 as U+FFFD, <, > and & escaped).
func appendJSONString(buf []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			simple = false
			break
		}
	}
	if simple {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	out, _ := json.Marshal(s) // a string always encodes
	return append(buf, out...)
}
