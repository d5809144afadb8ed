package authz

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
)

// Bounds on one audit event, so a caller cannot make the trail grow by
// more than a few kilobytes a row, whatever it sends: a value over its
// bound is cut and ends with TruncatedMarker, a list keeps its first items
// and ends with "…[N more]", and details that would still encode to more
// than MaxAuditDetailsBytes are replaced by the names of their keys.
const (
	MaxAuditIDLen        = 200  // tenant, actor, target, request and trace ids
	MaxAuditReasonLen    = 1024 // the reason
	MaxAuditUserAgentLen = 256  // the user agent
	MaxAuditDetailsBytes = 8 << 10
	MaxAuditDetailString = 512 // one string in details
	MaxAuditDetailItems  = 20  // one list in details
	// MaxAuditDeniedChecks is how many denied checks a batch's denial
	// event names; it counts the rest.
	MaxAuditDeniedChecks = 10
	TruncatedMarker      = "…[truncated]"

	maxAuditShortLen = 64 // action, types, outcome, ip
	maxAuditDepth    = 4
)

// CapAuditEvent returns ev within the bounds above. The stores apply it to
// every event they write; an event already within them is returned as is.
func CapAuditEvent(ev AuditEvent) AuditEvent {
	for _, f := range []struct {
		s *string
		n int
	}{
		{&ev.TenantID, MaxAuditIDLen}, {&ev.ActorID, MaxAuditIDLen}, {&ev.TargetID, MaxAuditIDLen},
		{&ev.RequestID, MaxAuditIDLen}, {&ev.TraceID, MaxAuditIDLen},
		{&ev.ActorType, maxAuditShortLen}, {&ev.Action, maxAuditShortLen}, {&ev.TargetType, maxAuditShortLen},
		{&ev.Outcome, maxAuditShortLen}, {&ev.IP, maxAuditShortLen},
		{&ev.Reason, MaxAuditReasonLen}, {&ev.UserAgent, MaxAuditUserAgentLen},
	} {
		*f.s = capString(*f.s, f.n)
	}
	if ev.Details != nil {
		ev.Details = capDetails(ev.Details)
	}
	return ev
}

// capString cuts s to at most n bytes, ending it with TruncatedMarker.
func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return Truncate(s, n-len(TruncatedMarker)) + TruncatedMarker
}

func capDetails(d map[string]any) map[string]any {
	out, size := capMap(d, 0)
	if size <= MaxAuditDetailsBytes {
		return out
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, capString(k, 64))
	}
	slices.Sort(keys)
	if len(keys) > MaxAuditDetailItems {
		keys = append(keys[:MaxAuditDetailItems], fmt.Sprintf("…[%d more]", len(keys)-MaxAuditDetailItems))
	}
	return map[string]any{
		"truncated": fmt.Sprintf("details of about %d bytes left out; at most %d are kept", size, MaxAuditDetailsBytes),
		"keys":      keys,
	}
}

// capMap bounds every value of m and returns it with its estimated size
// as JSON.
func capMap(m map[string]any, depth int) (map[string]any, int) {
	out := make(map[string]any, len(m))
	size := 2
	for k, v := range m {
		k = capString(k, 64)
		c, n := capValue(v, depth+1)
		out[k] = c
		size += len(k) + 4 + n
	}
	return out, size
}

// capValue bounds one value of details: strings, lists, maps and
// anything else that encodes as JSON. It returns the value and its
// estimated size as JSON.
func capValue(v any, depth int) (any, int) {
	switch x := v.(type) {
	case nil:
		return nil, 4
	case string:
		s := capString(x, MaxAuditDetailString)
		return s, len(s) + 2
	case bool:
		return x, 5
	case map[string]any:
		if depth >= maxAuditDepth {
			return TruncatedMarker, len(TruncatedMarker) + 2
		}
		return capMap(x, depth)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String:
		s := capString(rv.String(), MaxAuditDetailString)
		return s, len(s) + 2
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return v, 24
	case reflect.Slice, reflect.Array:
		if depth >= maxAuditDepth {
			return TruncatedMarker, len(TruncatedMarker) + 2
		}
		n := rv.Len()
		keep := min(n, MaxAuditDetailItems)
		out := make([]any, 0, keep+1)
		size := 2
		for i := range keep {
			c, sz := capValue(rv.Index(i).Interface(), depth+1)
			out = append(out, c)
			size += sz + 1
		}
		if n > keep {
			more := fmt.Sprintf("…[%d more]", n-keep)
			out = append(out, more)
			size += len(more) + 2
		}
		return out, size
	}
	// Anything else (a struct, a map of another kind) is kept only when it
	// encodes small.
	b, err := json.Marshal(v)
	if err != nil || len(b) > MaxAuditDetailString {
		return TruncatedMarker, len(TruncatedMarker) + 2
	}
	return v, len(b)
}
