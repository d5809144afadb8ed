package authz_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestAPIKeyCheck(t *testing.T) {
	t.Parallel()
	past, future := fixedTime.Add(-time.Minute), fixedTime.Add(time.Minute)
	tests := []struct {
		note    string
		key     authz.APIKey
		want    string
		expired bool
	}{
		{"enabled without expiry", authz.APIKey{Enabled: true}, "", false},
		{"enabled, expires later", authz.APIKey{Enabled: true, ExpiresAt: &future}, "", false},
		{"enabled, expired", authz.APIKey{Enabled: true, ExpiresAt: &past}, authz.KeyExpired, true},
		{"expires exactly now", authz.APIKey{Enabled: true, ExpiresAt: &fixedTime}, authz.KeyExpired, true},
		{"disabled", authz.APIKey{}, authz.KeyDisabled, false},
		{"disabled and expired: disabled wins", authz.APIKey{ExpiresAt: &past}, authz.KeyDisabled, true},
	}
	for _, tc := range tests {
		if got := authz.ErrorCode(tc.key.Check(fixedTime)); got != tc.want {
			t.Errorf("%s: Check code = %q, want %q", tc.note, got, tc.want)
		}
		if got := tc.key.Expired(fixedTime); got != tc.expired {
			t.Errorf("%s: Expired = %v, want %v", tc.note, got, tc.expired)
		}
	}
}

func TestAPIKeyEnableDisableMarkUsed(t *testing.T) {
	t.Parallel()
	k := &authz.APIKey{Enabled: true}
	if k.Enable() {
		t.Error("Enable on an enabled key reported a change")
	}
	if !k.Disable() || k.Enabled {
		t.Error("Disable did not disable")
	}
	if k.Disable() {
		t.Error("second Disable reported a change")
	}
	if !k.Enable() || !k.Enabled {
		t.Error("Enable did not enable")
	}
	k.MarkUsed(fixedTime)
	k.MarkUsed(fixedTime.Add(-time.Hour))
	if !k.LastUsedAt.Equal(fixedTime) {
		t.Errorf("LastUsedAt = %v: an older time must not win", k.LastUsedAt)
	}
	k.MarkUsed(fixedTime.Add(time.Hour))
	if !k.LastUsedAt.Equal(fixedTime.Add(time.Hour)) {
		t.Errorf("LastUsedAt = %v: a newer time must win", k.LastUsedAt)
	}
}

func TestAPIKeyApply(t *testing.T) {
	t.Parallel()
	name, on, off := "renamed", true, false
	later := fixedTime.Add(time.Hour)
	scope := authz.Scope{FlowIDs: []string{"f1"}}
	base := func() *authz.APIKey {
		return &authz.APIKey{Name: "k", Enabled: true, Scope: authz.Scope{FlowIDs: []string{"f0"}}, UpdatedAt: fixedTime.Add(-time.Hour)}
	}
	tests := []struct {
		note string
		upd  authz.APIKeyUpdate
		want []string
	}{
		{"nothing", authz.APIKeyUpdate{}, nil},
		{"same values", authz.APIKeyUpdate{Name: ptr("k"), Enabled: &on, SetExpiresAt: true}, nil},
		{"rename", authz.APIKeyUpdate{Name: &name}, []string{"name"}},
		{"disable", authz.APIKeyUpdate{Enabled: &off}, []string{"enabled"}},
		{"set expiry", authz.APIKeyUpdate{SetExpiresAt: true, ExpiresAt: &later}, []string{"expires_at"}},
		{"new scope", authz.APIKeyUpdate{Scope: &scope}, []string{"permission_scope"}},
		{"everything", authz.APIKeyUpdate{Name: &name, Enabled: &off, SetExpiresAt: true, ExpiresAt: &later, Scope: &scope},
			[]string{"name", "enabled", "expires_at", "permission_scope"}},
	}
	for _, tc := range tests {
		k := base()
		got := k.Apply(tc.upd, fixedTime)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: changed = %v, want %v", tc.note, got, tc.want)
		}
		if moved := k.UpdatedAt.Equal(fixedTime); moved != (len(tc.want) > 0) {
			t.Errorf("%s: UpdatedAt moved = %v, want %v", tc.note, moved, len(tc.want) > 0)
		}
	}
	// Clearing an expiry is a change.
	k := base()
	k.ExpiresAt = &later
	if got := k.Apply(authz.APIKeyUpdate{SetExpiresAt: true}, fixedTime); !slices.Equal(got, []string{"expires_at"}) || k.ExpiresAt != nil {
		t.Errorf("clearing expiry: changed %v, expires_at %v", got, k.ExpiresAt)
	}
}

func TestKeyInputValidation(t *testing.T) {
	t.Parallel()
	past, future := fixedTime.Add(-time.Second), fixedTime.Add(time.Second)
	tests := []struct {
		note   string
		in     authz.CreateKeyInput
		fields []string
	}{
		{"valid", authz.CreateKeyInput{Name: "ci key"}, nil},
		{"100 characters", authz.CreateKeyInput{Name: strings.Repeat("é", 100)}, nil},
		{"empty name", authz.CreateKeyInput{}, []string{"name"}},
		{"blank name", authz.CreateKeyInput{Name: "   "}, []string{"name"}},
		{"101 characters", authz.CreateKeyInput{Name: strings.Repeat("n", 101)}, []string{"name"}},
		{"control character", authz.CreateKeyInput{Name: "a\nb"}, []string{"name"}},
		{"invalid UTF-8", authz.CreateKeyInput{Name: "a\xffb"}, []string{"name"}},
		{"expiry in the past", authz.CreateKeyInput{Name: "k", ExpiresAt: &past}, []string{"expires_at"}},
		{"expiry now", authz.CreateKeyInput{Name: "k", ExpiresAt: &fixedTime}, []string{"expires_at"}},
		{"expiry later", authz.CreateKeyInput{Name: "k", ExpiresAt: &future}, nil},
		{"bad scope entry and bad name", authz.CreateKeyInput{Scope: authz.Scope{FlowIDs: []string{"a b"}}}, []string{"name", "permission_scope.flow_ids[0]"}},
	}
	for _, tc := range tests {
		err := tc.in.Validate(fixedTime)
		var got []string
		for _, f := range authz.ErrorFields(err) {
			got = append(got, f.Field)
		}
		if !slices.Equal(got, tc.fields) {
			t.Errorf("%s: invalid fields %v, want %v (err %v)", tc.note, got, tc.fields, err)
		}
		upd := authz.APIKeyUpdate{Name: &tc.in.Name, SetExpiresAt: true, ExpiresAt: tc.in.ExpiresAt, Scope: &tc.in.Scope}
		var gotUpd []string
		for _, f := range authz.ErrorFields(upd.Validate(fixedTime)) {
			gotUpd = append(gotUpd, f.Field)
		}
		if !slices.Equal(gotUpd, tc.fields) {
			t.Errorf("%s: update invalid fields %v, want %v", tc.note, gotUpd, tc.fields)
		}
	}
}

func TestErrorHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note    string
		err     error
		code    string
		message string
		nFields int
	}{
		{"nil", nil, "", "", 0},
		{"domain error", authz.Errorf(authz.ENOTFOUND, "key %s not found", "k1"), authz.ENOTFOUND, "key k1 not found", 0},
		{"wrapped domain error", fmtWrap(authz.Errorf(authz.ECONFLICT, "taken")), authz.ECONFLICT, "taken", 0},
		{"plain error hides its text", errors.New("pq: syntax error at 10.0.0.3"), authz.EINTERNAL, "internal error", 0},
		{"an error no adapter mapped is internal", fmtWrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), authz.EINTERNAL, "internal error", 0},
		{"invalid with fields", authz.Invalid(authz.FieldError{Field: "a", Message: "bad"}, authz.FieldError{Field: "b", Message: "bad"}), authz.EINVALID, "the request has invalid fields", 2},
		{"invalid with one field names it", authz.Invalid(authz.FieldError{Field: "name", Message: "is required"}), authz.EINVALID, "name: is required", 1},
	}
	for _, tc := range tests {
		if got := authz.ErrorCode(tc.err); got != tc.code {
			t.Errorf("%s: code %q, want %q", tc.note, got, tc.code)
		}
		if got := authz.ErrorMessage(tc.err); got != tc.message {
			t.Errorf("%s: message %q, want %q", tc.note, got, tc.message)
		}
		if got := len(authz.ErrorFields(tc.err)); got != tc.nFields {
			t.Errorf("%s: %d fields, want %d", tc.note, got, tc.nFields)
		}
	}
}

func fmtWrap(err error) error { return errors.Join(errors.New("context"), err) }

func ptr[T any](v T) *T { return &v }

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"keygate's error: its message", authz.Errorf(authz.EINVALID, "policy does not compile"), "policy does not compile"},
		{"wrapped: with what wraps it", fmt.Errorf("read policies from p (KEYGATE_POLICY_DIR): %w", authz.Errorf(authz.EINVALID, "no policy files")),
			"read policies from p (KEYGATE_POLICY_DIR): no policy files"},
		{"any other error: all of it", errors.New("open p: permission denied"), "open p: permission denied"},
	} {
		if got := authz.Describe(tc.err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.note, got, tc.want)
		}
	}
}
