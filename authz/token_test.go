package authz_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 200 {
		tok, err := authz.NewToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != authz.TokenLen || !strings.HasPrefix(tok, "pk_") {
			t.Fatalf("token %q: want %d characters starting pk_", tok, authz.TokenLen)
		}
		if !authz.ValidTokenFormat(tok) {
			t.Fatalf("fresh token fails its own format check")
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestNewTokenDeterministicReader(t *testing.T) {
	t.Parallel()
	zero, err := authz.NewToken(bytes.NewReader(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "pk_" + strings.Repeat("0", 43); !strings.HasPrefix(zero, want) {
		t.Fatalf("all-zero bytes: got %q, want prefix %q", zero, want)
	}
	if _, err := authz.NewToken(bytes.NewReader(make([]byte, 5))); authz.ErrorCode(err) != authz.EINTERNAL {
		t.Fatalf("short reader: got %v, want EINTERNAL", err)
	}
}

func TestValidTokenFormat(t *testing.T) {
	t.Parallel()
	good, err := authz.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		note  string
		token string
		want  bool
	}{
		{"a fresh token", good, true},
		{"empty", "", false},
		{"prefix only", "pk_", false},
		{"wrong prefix", "sk_" + good[3:], false},
		{"one character short", good[:len(good)-1], false},
		{"one character long", good + "a", false},
		{"mistyped body character", flip(good, 10), false},
		{"mistyped checksum character", flip(good, len(good)-1), false},
		{"non-base62 character", good[:10] + "-" + good[11:], false},
		{"random 52 characters", "pk_" + strings.Repeat("x", 49), false},
	}
	for _, tc := range tests {
		if got := authz.ValidTokenFormat(tc.token); got != tc.want {
			t.Errorf("%s: ValidTokenFormat = %v, want %v", tc.note, got, tc.want)
		}
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	a, b := authz.HashToken("pk_a"), authz.HashToken("pk_b")
	if len(a) != 64 || a == b {
		t.Fatalf("hashes %q %q: want distinct 64-character hex", a, b)
	}
	if a != authz.HashToken("pk_a") {
		t.Fatal("hash is not deterministic")
	}
	if !authz.EqualHashes(a, authz.HashToken("pk_a")) || authz.EqualHashes(a, b) {
		t.Fatal("EqualHashes disagrees with equality")
	}
	if got := authz.TokenStart("pk_abcdefghij"); got != "pk_abcde" {
		t.Fatalf("TokenStart = %q, want pk_abcde", got)
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	prev := ""
	for i := range 100 {
		id, err := authz.NewID(fixedTime.Add(time.Duration(i)*time.Millisecond), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !authz.ValidID(id) || id[14] != '7' {
			t.Fatalf("id %q is not a canonical UUIDv7", id)
		}
		if id <= prev {
			t.Fatalf("ids do not sort by time: %q after %q", id, prev)
		}
		prev = id
	}
	for _, bad := range []string{"", "x", "0190f0e2-8a4b-7c3d-9e1f-ABCDEFabcdef", "0190f0e2x8a4b-7c3d-9e1f-abcdefabcdef"} {
		if authz.ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}
