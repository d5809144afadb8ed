package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Scope bounds. A scope entry is an exact id or a glob where `*` matches any
// run of characters; entries draw from ScopeEntryChars. The glob bounds keep
// the worst check cheap: an id costs one lookup among the exact entries and
// one match per glob, each linear in the id's length per `*`
// (BenchmarkDecideWorstKey).
const (
	MaxScopeEntries   = 1000
	MaxScopeGlobs     = 20 // entries with a `*`, per list
	MaxScopeGlobStars = 3  // `*` in one entry
	MaxScopeEntryLen  = 200
	ScopeEntryChars   = "A-Z a-z 0-9 _ - . : / @ and * (glob)"
	scopeEntryAllowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/@*"
)

// ResourceType names a kind of resource a key can be scoped to.
type ResourceType string

// The resource types of the policy contract.
const (
	ResourceAgent       ResourceType = "agent"
	ResourceFlow        ResourceType = "flow"
	ResourceMCPTool     ResourceType = "mcp_tool"
	ResourceVectorStore ResourceType = "vector_store"
)

// ResourceTypes lists every resource type in a fixed order.
func ResourceTypes() [4]ResourceType {
	return [...]ResourceType{ResourceAgent, ResourceFlow, ResourceMCPTool, ResourceVectorStore}
}

// Valid reports whether t is one of ResourceTypes.
func (t ResourceType) Valid() bool {
	for _, rt := range ResourceTypes() {
		if t == rt {
			return true
		}
	}
	return false
}

// ScopeField is the scope document's list for resources of type t.
func (t ResourceType) ScopeField() string {
	return string(t) + "_ids"
}

// Scope is a key's permission document: which resources of each type it may
// reach. An empty list reaches nothing.
type Scope struct {
	AgentIDs       []string `json:"agent_ids"`
	FlowIDs        []string `json:"flow_ids"`
	MCPToolIDs     []string `json:"mcp_tool_ids"`
	VectorStoreIDs []string `json:"vector_store_ids"`
}

// IDs returns the scope's list for resources of type t.
func (s Scope) IDs(t ResourceType) []string {
	switch t {
	case ResourceAgent:
		return s.AgentIDs
	case ResourceFlow:
		return s.FlowIDs
	case ResourceMCPTool:
		return s.MCPToolIDs
	case ResourceVectorStore:
		return s.VectorStoreIDs
	}
	return nil
}

// MarshalJSON writes every list, empty ones as [] rather than null, so
// readers never have to tell an absent list from an empty one.
func (s Scope) MarshalJSON() ([]byte, error) {
	type plain Scope
	return json.Marshal(plain(s.normalized()))
}

func (s Scope) normalized() Scope {
	return Scope{
		AgentIDs:       NonNil(s.AgentIDs),
		FlowIDs:        NonNil(s.FlowIDs),
		MCPToolIDs:     NonNil(s.MCPToolIDs),
		VectorStoreIDs: NonNil(s.VectorStoreIDs),
	}
}

// ParseScope decodes a scope document strictly: an object, no unknown field,
// no trailing data, and every entry valid. Field errors are named under
// "permission_scope".
func ParseScope(data []byte) (Scope, error) {
	const root = "permission_scope"
	var s Scope
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return s, Invalid(FieldError{Field: root, Message: "must be a JSON object"})
	}
	// encoding/json matches names regardless of case; scope lists are
	// named exactly.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &members); err == nil {
		types := ResourceTypes()
		for _, name := range slices.Sorted(maps.Keys(members)) {
			if !slices.ContainsFunc(types[:], func(t ResourceType) bool { return t.ScopeField() == name }) {
				return s, Invalid(FieldError{Field: root + "." + name, Message: "unknown field"})
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, Invalid(jsonFieldError(root, err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return s, Invalid(FieldError{Field: root, Message: "unexpected data after the object"})
	}
	s = s.normalized()
	if err := s.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// Validate checks every list's length and every entry's length and
// characters, reporting each offending field.
func (s Scope) Validate() error {
	var fields []FieldError
	for _, t := range ResourceTypes() {
		name := "permission_scope." + t.ScopeField()
		ids := s.IDs(t)
		if len(ids) > MaxScopeEntries {
			fields = append(fields, FieldError{Field: name, Message: fmt.Sprintf("at most %d entries", MaxScopeEntries)})
			continue
		}
		globs := 0
		for i, id := range ids {
			if msg := validScopeEntry(id); msg != "" {
				fields = append(fields, FieldError{Field: fmt.Sprintf("%s[%d]", name, i), Message: msg})
			}
			if strings.Contains(id, "*") {
				if globs++; globs == MaxScopeGlobs+1 {
					fields = append(fields, FieldError{Field: fmt.Sprintf("%s[%d]", name, i),
						Message: fmt.Sprintf("at most %d entries of a list may hold a *", MaxScopeGlobs)})
				}
			}
		}
	}
	if len(fields) > 0 {
		return Invalid(fields...)
	}
	return nil
}

func validScopeEntry(id string) string {
	if id == "" || len(id) > MaxScopeEntryLen {
		return fmt.Sprintf("must be 1 to %d characters", MaxScopeEntryLen)
	}
	for i := 0; i < len(id); i++ {
		if strings.IndexByte(scopeEntryAllowed, id[i]) < 0 {
			return "may only contain " + ScopeEntryChars
		}
	}
	if strings.Count(id, "*") > MaxScopeGlobStars {
		return fmt.Sprintf("may hold at most %d *", MaxScopeGlobStars)
	}
	return ""
}

// jsonFieldError turns a decoding error into a field error that names the
// field when encoding/json does, without echoing the caller's values.
func jsonFieldError(root string, err error) FieldError {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		field := root
		if typeErr.Field != "" {
			field = root + "." + typeErr.Field
		}
		return FieldError{Field: field, Message: "must be of type " + jsonTypeName(typeErr.Type.Kind().String())}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return FieldError{Field: root + "." + name, Message: "unknown field"}
	default:
		return FieldError{Field: root, Message: "is not valid JSON"}
	}
}

func jsonTypeName(kind string) string {
	switch kind {
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	case "string":
		return "string"
	default:
		return "number"
	}
}
