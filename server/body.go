package server

import (
	"encoding/json"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authz"
)

// body is a management request's JSON object, read member by member: every
// problem is collected as a field error, so one answer names them all.
type body struct {
	members map[string]json.RawMessage
	fields  []authz.FieldError
}

// readBodyObject reads the request's JSON object, refusing members not in
// allowed.
func readBodyObject(c *gin.Context, allowed ...string) (*body, error) {
	members, err := readObject(c, allowed...)
	if err != nil {
		return nil, err
	}
	return &body{members: members}, nil
}

func (b *body) fail(field, msg string) {
	b.fields = append(b.fields, authz.FieldError{Field: field, Message: msg})
}

// decode decodes raw into dst, naming the field on failure.
func (b *body) decode(name string, raw json.RawMessage, dst any) bool {
	if fe := decodeField(raw, name, dst); fe != nil {
		b.fields = append(b.fields, *fe)
		return false
	}
	return true
}

// required decodes a member that must be present and not null.
func (b *body) required(name string, dst any) {
	raw, ok := b.members[name]
	if !ok || isNull(raw) {
		b.fail(name, "is required")
		return
	}
	b.decode(name, raw, dst)
}

// optional decodes a member that may be absent or null, reporting whether
// it was given a value.
func (b *body) optional(name string, dst any) bool {
	raw, ok := b.members[name]
	if !ok || isNull(raw) {
		return false
	}
	return b.decode(name, raw, dst)
}

// raw returns a member that may be absent or null, and whether it has a
// value.
func (b *body) raw(name string) (json.RawMessage, bool) {
	raw, ok := b.members[name]
	return raw, ok && !isNull(raw)
}

// nullable decodes a member that null clears: set reports whether the
// member was sent at all; dst is decoded when it is not null.
func (b *body) nullable(name string, dst any) (set, value bool) {
	raw, ok := b.members[name]
	if !ok {
		return false, false
	}
	if isNull(raw) {
		return true, false
	}
	return true, b.decode(name, raw, dst)
}

// patchField decodes a member of a partial update: nil when absent, an
// error when null (the field cannot be cleared), the value otherwise.
func patchField[T any](b *body, name string) *T {
	raw, ok := b.members[name]
	if !ok {
		return nil
	}
	if isNull(raw) {
		b.fail(name, "must not be null")
		return nil
	}
	v := new(T)
	b.decode(name, raw, v)
	return v
}

// err is the problem naming every field at fault, nil when none is.
func (b *body) err() error {
	if len(b.fields) > 0 {
		return authz.Invalid(b.fields...)
	}
	return nil
}
