package authz

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// catalogFrom turns an upstream's tools into srv's catalog, leaving out (and
// naming, with why) the tools keygate cannot expose: a name outside the MCP
// specification's characters or too long to be a scope entry, a duplicate,
// an input schema that is not an object schema, a definition over
// MaxMCPToolBytes.
func catalogFrom(srv *MCPServer, fetched []*MCPTool) ([]*MCPTool, []string) {
	tools := make([]*MCPTool, 0, len(fetched))
	var skipped []string
	seen := make(map[string]bool, len(fetched))
	for _, f := range fetched {
		if f == nil {
			continue
		}
		if why := validUpstreamTool(srv.Name, f); why != "" {
			skipped = append(skipped, fmt.Sprintf("%.140q: %s", f.Name, why))
			continue
		}
		if seen[f.Name] {
			skipped = append(skipped, fmt.Sprintf("%q: listed twice", f.Name))
			continue
		}
		seen[f.Name] = true
		tools = append(tools, &MCPTool{
			ServerID:     srv.ID,
			ServerName:   srv.Name,
			TenantID:     srv.TenantID,
			Name:         f.Name,
			ExposedName:  ExposedToolName(srv.Name, f.Name),
			Title:        f.Title,
			Description:  f.Description,
			InputSchema:  compactJSON(f.InputSchema),
			OutputSchema: compactJSON(f.OutputSchema),
			Annotations:  compactJSON(f.Annotations),
		})
	}
	slices.SortFunc(tools, func(a, b *MCPTool) int { return strings.Compare(a.Name, b.Name) })
	return tools, skipped
}

func validUpstreamTool(server string, t *MCPTool) string {
	if t.Name == "" || len(t.Name) > MaxMCPToolNameLen {
		return fmt.Sprintf("a tool name must be 1 to %d characters", MaxMCPToolNameLen)
	}
	for i := 0; i < len(t.Name); i++ {
		if !isAlnum(t.Name[i]) && strings.IndexByte("_-.", t.Name[i]) < 0 {
			return "a tool name may only contain A-Z a-z 0-9 _ - ."
		}
	}
	if n := len(ExposedToolName(server, t.Name)); n > MaxResourceIDLen {
		return fmt.Sprintf("the exposed name would be %d characters; scope entries hold at most %d", n, MaxResourceIDLen)
	}
	var schema map[string]any
	if err := json.Unmarshal(t.InputSchema, &schema); err != nil || schema == nil || schema["type"] != "object" {
		return `the input schema must be a JSON object with "type": "object"`
	}
	for _, raw := range []json.RawMessage{t.OutputSchema, t.Annotations} {
		if len(raw) > 0 && !json.Valid(raw) {
			return "the output schema or annotations are not valid JSON"
		}
	}
	if size := len(t.Title) + len(t.Description) + len(t.InputSchema) + len(t.OutputSchema) + len(t.Annotations); size > MaxMCPToolBytes {
		return fmt.Sprintf("the definition is %d bytes; at most %d are kept", size, MaxMCPToolBytes)
	}
	return ""
}

// diffTools names the tools added, removed and changed between two
// catalogs. Schemas compare as JSON values, since a database may reorder an
// object's members.
func diffTools(old, cur []*MCPTool) (added, removed, changed []string) {
	before := make(map[string]*MCPTool, len(old))
	for _, t := range old {
		before[t.Name] = t
	}
	for _, t := range cur {
		o, ok := before[t.Name]
		switch {
		case !ok:
			added = append(added, t.Name)
		case !o.SameDefinition(t):
			changed = append(changed, t.Name)
		}
		delete(before, t.Name)
	}
	for name := range before {
		removed = append(removed, name)
	}
	slices.Sort(removed)
	return added, removed, changed
}

// SameDefinition reports whether two tools are defined alike: title,
// description, schemas and annotations (compared as JSON values).
func (t *MCPTool) SameDefinition(o *MCPTool) bool {
	return t.Title == o.Title && t.Description == o.Description &&
		SameJSON(t.InputSchema, o.InputSchema) && SameJSON(t.OutputSchema, o.OutputSchema) &&
		SameJSON(t.Annotations, o.Annotations)
}

// SameJSON reports whether two JSON documents hold the same value; empty and
// null are the same absent value.
func SameJSON(a, b json.RawMessage) bool {
	absent := func(r json.RawMessage) bool { r = bytes.TrimSpace(r); return len(r) == 0 || string(r) == "null" }
	if absent(a) || absent(b) {
		return absent(a) == absent(b)
	}
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// compactJSON drops insignificant space; absent and null become nil.
func compactJSON(raw json.RawMessage) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

func validMCPServerName(name string) string {
	if name == "" || len(name) > MaxMCPServerNameLen {
		return fmt.Sprintf("must be 1 to %d characters of a-z 0-9 -", MaxMCPServerNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c != '-' && (!isAlnum(c) || 'A' <= c && c <= 'Z') {
			return fmt.Sprintf("must be 1 to %d characters of a-z 0-9 -", MaxMCPServerNameLen)
		}
	}
	return ""
}

// validMCPURL accepts an absolute http or https URL without credentials in
// it (they belong in headers, which are never shown) or a fragment. The URL
// is never echoed back, as its query may hold a secret.
func validMCPURL(raw string) string {
	if raw == "" || len(raw) > MaxMCPURLLen {
		return fmt.Sprintf("must be an http or https URL of at most %d characters", MaxMCPURLLen)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "must not contain spaces or control characters"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a valid URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must use http or https"
	case u.Host == "" || u.Hostname() == "":
		return "must be absolute, with a host"
	case u.User != nil:
		return "must not carry credentials; put them in headers"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	}
	return ""
}

func validMCPTimeout(ms int) string {
	if ms < MinMCPTimeoutMS || ms > MaxMCPTimeoutMS {
		return fmt.Sprintf("must be from %d to %d milliseconds", MinMCPTimeoutMS, MaxMCPTimeoutMS)
	}
	return ""
}

// reservedMCPHeaders are set by the transport, or identify the session, and
// cannot be configured.
var reservedMCPHeaders = []string{
	"accept", "connection", "content-length", "content-type", "host", "keep-alive",
	"last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
}

// validMCPHeaders checks header names and values. Messages name the header
// (a name is not a secret) but never quote a value.
func validMCPHeaders(h map[string]string) []FieldError {
	var fields []FieldError
	if len(h) > MaxMCPHeaders {
		return []FieldError{{Field: "headers", Message: fmt.Sprintf("at most %d headers", MaxMCPHeaders)}}
	}
	total := 0
	seen := make(map[string]bool, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		value := h[name]
		field := "headers." + name
		total += len(name) + len(value)
		lower := strings.ToLower(name)
		switch {
		case !validHeaderName(name):
			fields = append(fields, FieldError{Field: "headers", Message: fmt.Sprintf("a header name must be 1 to %d characters of an HTTP token", MaxMCPHeaderNameLen)})
		case slices.Contains(reservedMCPHeaders, lower):
			fields = append(fields, FieldError{Field: field, Message: "is set by the MCP transport and cannot be configured"})
		case seen[lower]:
			fields = append(fields, FieldError{Field: field, Message: "is given twice (header names ignore case)"})
		case len(value) > MaxMCPHeaderValueLen:
			fields = append(fields, FieldError{Field: field, Message: fmt.Sprintf("the value must be at most %d bytes", MaxMCPHeaderValueLen)})
		case !validHeaderValue(value):
			fields = append(fields, FieldError{Field: field, Message: "the value must not contain CR, LF or other control characters"})
		}
		seen[lower] = true
	}
	if total > MaxMCPHeadersBytes {
		fields = append(fields, FieldError{Field: "headers", Message: fmt.Sprintf("names and values must total at most %d bytes", MaxMCPHeadersBytes)})
	}
	return fields
}

// validHeaderName reports whether s is an HTTP token (RFC 9110, 5.6.2).
func validHeaderName(s string) bool {
	if s == "" || len(s) > MaxMCPHeaderNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte("!#$%&'*+-.^_`|~", s[i]) < 0 {
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters but horizontal tab, so no
// value can split a header line.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
