package authz

import (
	"bytes"
	"net/url"
	"slices"
	"strconv"
	"strings"
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

// removeAt removes the member or element at path below *root; false when
// the path leads nowhere. An array loses the element, so the shorter array
// is written back where the old one was.
func removeAt(root *any, path []string) bool {
	node := *root
	replace := func(v any) { *root = v }
	for _, p := range path[:len(path)-1] {
		switch v := node.(type) {
		case map[string]any:
			c, ok := v[p]
			if !ok {
				return false
			}
			replace = func(x any) { v[p] = x }
			node = c
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(v) {
				return false
			}
			replace = func(x any) { v[i] = x }
			node = v[i]
		default:
			return false
		}
	}
	last := path[len(path)-1]
	switch v := node.(type) {
	case map[string]any:
		if _, ok := v[last]; !ok {
			return false
		}
		delete(v, last)
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(v) {
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
	for _, p := range path[:len(path)-1] {
		switch v := node.(type) {
		case map[string]any:
			c, ok := v[p]
			if !ok {
				c = map[string]any{}
				v[p] = c
			}
			node = c
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(v) {
				return false
			}
			node = v[i]
		default:
			return false
		}
	}
	last := path[len(path)-1]
	switch v := node.(type) {
	case map[string]any:
		v[last] = value
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(v) {
			return false
		}
		v[i] = value
	default:
		return false
	}
	return true
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
