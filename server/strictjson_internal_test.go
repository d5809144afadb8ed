package server

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/authz"
)

// FuzzScanJSON holds the strict scan to encoding/json: what it accepts is
// valid JSON in valid UTF-8; valid JSON it refuses is refused for a
// duplicate member, bad UTF-8 or depth, never for its syntax.
func FuzzScanJSON(f *testing.F) {
	for _, seed := range []string{
		`{"api_key": "pk", "resource": {"type": "flow", "id": "f1"}, "action": "read"}`,
		`{"a": 1, "a": 2}`, `{"a": {"b": [1, 2.5e-3, -0, true, null]}}`, `"\ud83d\ude00"`, `"\ud800"`, "\"\xff\"", `[`, `{"\u0061": 1, "a": 2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := scanJSON(data)
		valid := json.Valid(data)
		if err == nil {
			if !valid || !utf8.Valid(data) {
				t.Fatalf("accepted %q", data)
			}
			return
		}
		code := authz.ErrorCode(err)
		if code != authz.EMALFORMED && code != authz.EINVALID {
			t.Fatalf("code %s for %q", code, data)
		}
		if valid && code == authz.EMALFORMED && authz.ErrorMessage(err) == "the request body is not valid JSON" {
			t.Fatalf("refused valid JSON %q as invalid", data)
		}
	})
}

func BenchmarkScanJSON(b *testing.B) {
	body := []byte(`{"api_key": "pk_0123456789abcdefghijABCDEFGHIJ0123456789abcdef", "resource": {"type": "flow", "id": "triage-daily"}, "action": "execute"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := scanJSON(body); err != nil {
			b.Fatal(err)
		}
	}
}
