package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
)

// FuzzAuthorizeBody sends any body to /v1/authorize: the answer is a
// decision or a 400/422 problem, never a 500, and a decision is only given
// for a body that is valid JSON, valid UTF-8 and free of duplicate members.
func FuzzAuthorizeBody(f *testing.F) {
	// Every input comes from one address, and most name no key: the
	// failed-authentication budget would answer 429 after 20 of them. It
	// has tests of its own; here it is off.
	h := newHarness(f, storagetest.MustOpenSQLite(f), func(c *app.Config) { c.AuthFailureBurst = 0 })
	_, token := h.createKey(h.jwt("t1", "root", "admin"), "k", map[string]any{"flow_ids": []string{"f*"}})
	f.Add(`{"api_key": "` + token + `", "resource": {"type": "flow", "id": "f1"}, "action": "execute"}`)
	f.Add(`{"api_key": "` + token + `", "checks": [{"resource": {"type": "flow", "id": "f1"}, "action": "read"}]}`)
	f.Add(`{"api_key": "` + token + `", "resource": {"type": "flow", "id": "f1", "ID": "x"}, "action": "execute"}`)
	f.Add(`{"api_key": "pk_x", "api_key": "` + token + `"}`)
	f.Add("{\"api_key\": \"\xff\"}")
	f.Fuzz(func(t *testing.T, body string) {
		ht := *h
		ht.t = t
		res := ht.do("POST", "/v1/authorize", "", body)
		switch res.status {
		case http.StatusOK:
			if !json.Valid([]byte(body)) || !utf8.ValidString(body) {
				t.Fatalf("decided on %q", body)
			}
			var m map[string]any
			if err := json.Unmarshal(res.body, &m); err != nil || m["code"] == nil {
				t.Fatalf("answer %s", res.body)
			}
		case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q: %s", res.status, body, res.body)
		}
		if strings.Contains(string(res.body), "internal") {
			t.Fatalf("an internal error for %q: %s", body, res.body)
		}
	})
}

// FuzzJWTVerify: any bearer token is an actor or EUNAUTHORIZED, never a
// panic; an actor always names a tenant and a user.
func FuzzJWTVerify(f *testing.F) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cfg := server.JWTConfig{Secret: testSecret, Issuer: "https://idp.test", Audience: "keygate", Now: func() time.Time { return now }}
	v, err := server.NewJWTVerifier(context.Background(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	good, err := server.SignHS256(cfg, "t1", "u1", []string{"admin"}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	crit := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "tenant_id": "t", "exp": now.Add(time.Hour).Unix(), "iss": "https://idp.test", "aud": "keygate"})
	crit.Header["crit"] = []string{"b64"}
	critical, _ := crit.SignedString(testSecret)
	f.Add(good)
	f.Add(critical)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, token string) {
		actor, err := v.Verify(context.Background(), token)
		if err != nil {
			if authz.ErrorCode(err) != authz.EUNAUTHORIZED {
				t.Fatalf("error %v", err)
			}
			return
		}
		if actor.TenantID == "" || actor.UserID == "" {
			t.Fatalf("actor %+v from %q", actor, token)
		}
		if token == critical {
			t.Fatal("a crit header was accepted")
		}
	})
}
