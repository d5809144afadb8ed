package authz_test

import (
	"context"
	"testing"

	"github.com/keygate/keygate/authz"
)

// BenchmarkAuthenticate is a token to a principal: format and checksum,
// SHA-256, then the key cache (hit), a cache miss served by the store (an
// in-memory map here, so only keygate's own cost shows), and a well-formed
// token no key has, answered by the negative cache.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	token, err := authz.NewToken(nil)
	if err != nil {
		b.Fatal(err)
	}
	store := &lookupStore{keys: map[string]authz.APIKey{}}
	store.put(authz.APIKey{ID: "k1", Hash: authz.HashToken(token), TenantID: "t1", UserID: "u1", Enabled: true,
		Scope: benchPrincipal().Scope})
	unknown, err := authz.NewToken(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		token  string
		cached bool
		code   string
	}{
		{"cache-hit", token, true, ""},
		{"cache-miss", token, false, ""},
		{"unknown-token", unknown, true, authz.KeyInvalid},
		{"malformed-token", "pk_nope", true, authz.KeyInvalid},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var lookup authz.KeyLookup = store
			if bc.cached {
				lookup = authz.NewKeyCache(store, authz.KeyCacheOptions{})
			}
			svc := &authz.KeyService{Lookup: lookup}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := svc.Authenticate(ctx, bc.token); authz.ErrorCode(err) != bc.code {
					b.Fatal(err)
				}
			}
		})
	}
}
