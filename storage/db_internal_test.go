package storage

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestMapDBError(t *testing.T) {
	t.Parallel()
	const unavailable = "the database is unavailable; try again"
	tests := []struct {
		note    string
		err     error
		code    string
		message string
	}{
		{"nil stays nil", nil, "", ""},
		{"a lost connection is unavailable", wrap(&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), authz.EUNAVAILABLE, unavailable},
		{"a bad driver connection is unavailable", wrap(driver.ErrBadConn), authz.EUNAVAILABLE, unavailable},
		{"a connection that ended mid-answer is unavailable", wrap(io.ErrUnexpectedEOF), authz.EUNAVAILABLE, unavailable},
		{"so is one closed before it answered", wrap(io.EOF), authz.EUNAVAILABLE, unavailable},
		{"a domain error keeps its code", authz.Errorf(authz.ENOTFOUND, "no such key"), authz.ENOTFOUND, "no such key"},
		{"any other error stays internal", errors.New("syntax error at or near"), authz.EINTERNAL, "internal error"},
	}
	for _, tc := range tests {
		err := tc.err
		mapDBError(&err)
		if got := authz.ErrorCode(err); got != tc.code {
			t.Errorf("%s: code %q, want %q", tc.note, got, tc.code)
		}
		if got := authz.ErrorMessage(err); got != tc.message {
			t.Errorf("%s: message %q, want %q", tc.note, got, tc.message)
		}
		if tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: the driver's error is no longer in the chain", tc.note)
		}
	}
}

func wrap(err error) error { return errors.Join(errors.New("context"), err) }
