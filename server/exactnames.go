package server

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/keygate/keygate/authz"
)

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// exactNames walks raw alongside t and refuses the first member name that
// matches none of a struct's JSON names exactly, so {"ID": …} is an unknown
// field where encoding/json would fill id. What does not decode as t is
// left for the decoder to report.
func exactNames(raw json.RawMessage, t reflect.Type, field string) *authz.FieldError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil {
			return nil
		}
		for _, name := range slices.Sorted(maps.Keys(members)) {
			f, ok := fieldByJSONName(t, name)
			if !ok {
				return &authz.FieldError{Field: field + "." + name, Message: "unknown field"}
			}
			if fe := exactNames(members[name], f.Type, field+"."+name); fe != nil {
				return fe
			}
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for i, item := range items {
			if fe := exactNames(item, t.Elem(), field+"["+itoa(i)+"]"); fe != nil {
				return fe
			}
		}
	case reflect.Map:
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil {
			return nil
		}
		for _, name := range slices.Sorted(maps.Keys(members)) {
			if fe := exactNames(members[name], t.Elem(), field+"."+name); fe != nil {
				return fe
			}
		}
	}
	return nil
}

// fieldByJSONName finds the exported field whose JSON name is exactly name.
func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case tag == "-":
			continue
		case tag == "" && f.Name == name, tag == name:
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func itoa(i int) string { return strconv.Itoa(i) }
