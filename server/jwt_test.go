package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/server"
)

// jwksServer serves a key set holding an RSA and an EC public key.
func jwksServer(t *testing.T, rsaKey *rsa.PrivateKey, ecKey *ecdsa.PrivateKey) string {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	pad := func(n *big.Int) []byte { return n.FillBytes(make([]byte, 32)) }
	set := map[string]any{"keys": []map[string]any{
		{"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig",
			"n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "ec-1", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(pad(ecKey.X)), "y": b64(pad(ecKey.Y))},
	}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestJWKSVerification(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	jwks := jwksServer(t, rsaKey, ecKey)
	for _, cfg := range []server.JWTConfig{{JWKSURL: jwks, Audience: "keygate"}, {JWKSURL: jwks, Issuer: "https://idp.test"}} {
		if _, err := server.NewJWTVerifier(ctx, cfg); err == nil {
			t.Fatalf("a JWKS verifier without issuer or audience: %+v", cfg)
		}
	}
	v, err := server.NewJWTVerifier(ctx, server.JWTConfig{JWKSURL: jwks, Issuer: "https://idp.test", Audience: "keygate", Leeway: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "alice", "tenant_id": "t1", "roles": "admin ops", "iss": "https://idp.test", "aud": "keygate",
			"exp": time.Now().Add(time.Hour).Unix()}
	}
	var crit bool
	sign := func(method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = kid
		if crit {
			tok.Header["crit"] = []string{"exp"}
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	expired := claims()
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	wrongIss := claims()
	wrongIss["iss"] = "https://evil.test"
	noAud, wrongAud := claims(), claims()
	delete(noAud, "aud")
	wrongAud["aud"] = "another-service"
	future, skewed := claims(), claims()
	future["iat"] = time.Now().Add(10 * time.Minute).Unix()
	skewed["iat"] = time.Now().Add(30 * time.Second).Unix()
	crit = true
	critical := sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, claims())
	crit = false
	tests := []struct {
		note  string
		token string
		ok    bool
	}{
		{"RS256 from the key set", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, claims()), true},
		{"ES256 from the key set", sign(jwt.SigningMethodES256, "ec-1", ecKey, claims()), true},
		{"RS256 by a key not in the set, same kid", sign(jwt.SigningMethodRS256, "rsa-1", otherRSA, claims()), false},
		{"unknown kid", sign(jwt.SigningMethodRS256, "rsa-9", rsaKey, claims()), false},
		{"HS256 with no secret configured", sign(jwt.SigningMethodHS256, "rsa-1", []byte("some-secret-of-at-least-32-bytes!!"), claims()), false},
		{"alg none", sign(jwt.SigningMethodNone, "rsa-1", jwt.UnsafeAllowNoneSignatureType, claims()), false},
		{"expired", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, expired), false},
		{"wrong issuer", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, wrongIss), false},
		{"no audience", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, noAud), false},
		{"wrong audience", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, wrongAud), false},
		{"issued in the future", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, future), false},
		{"issued within the leeway", sign(jwt.SigningMethodRS256, "rsa-1", rsaKey, skewed), true},
		{"a crit header", critical, false},
	}
	for _, tc := range tests {
		actor, err := v.Verify(ctx, tc.token)
		if tc.ok {
			if err != nil || actor.UserID != "alice" || actor.TenantID != "t1" || !actor.HasRole("admin") || !actor.HasRole("ops") {
				t.Errorf("%s: %+v %v", tc.note, actor, err)
			}
			continue
		}
		if authz.ErrorCode(err) != authz.EUNAUTHORIZED {
			t.Errorf("%s: got %v, want EUNAUTHORIZED", tc.note, err)
		}
	}
}
