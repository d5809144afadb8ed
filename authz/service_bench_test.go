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

// BenchmarkDecideWithLimits is one allowed check of a cached key answered
// from the decision cache, as on keygate's fast path, for a key without
// limits and for one with a rate limit (counted in memory) and credits
// (spent from the instance's reserve), many requests at once. The
// difference is what the limits cost a decision.
func BenchmarkDecideWithLimits(b *testing.B) {
	ctx := context.Background()
	engine, err := authz.NewEngine(ctx, embeddedModules(b), authz.EngineOptions{DecisionCacheSize: 1000})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		edit func(*authz.APIKey)
	}{
		{"plain", func(*authz.APIKey) {}},
		{"rate-limit-and-credits", func(k *authz.APIKey) {
			k.RateLimit = &authz.RateLimit{Limit: authz.MaxRateLimit, WindowMS: 1000}
			k.Credits = &authz.Credits{Remaining: authz.MaxCredits}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			token, err := authz.NewToken(nil)
			if err != nil {
				b.Fatal(err)
			}
			key := authz.APIKey{ID: "k1", Hash: authz.HashToken(token), TenantID: "t1", UserID: "u1", Enabled: true, Scope: benchPrincipal().Scope}
			bc.edit(&key)
			store := &lookupStore{keys: map[string]authz.APIKey{}}
			store.put(key)
			credits := &creditStore{credits: map[string]*authz.Credits{"k1": {Remaining: authz.MaxCredits}}}
			spender := authz.NewCreditSpender(credits, authz.CreditSpenderOptions{})
			rollups := authz.NewUsageRollupWriter(&usageStore{}, authz.UsageRollupWriterOptions{})
			b.Cleanup(func() { _ = spender.Close(ctx); _ = rollups.Close(ctx) })
			svc := &authz.KeyService{Lookup: authz.NewKeyCache(store, authz.KeyCacheOptions{}), Policy: engine,
				RateLimiter: authz.NewMemoryRateLimiter(0), Credits: spender, Rollups: rollups}
			req := authz.DecisionRequest{Token: token, Source: authz.SourceAuthorize,
				Checks: []authz.Check{{Resource: authz.Resource{Type: authz.ResourceAgent, ID: benchPrincipal().Scope.AgentIDs[0]}, Action: "execute"}}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := svc.Decide(ctx, req)
					if err != nil || !res.Allowed() {
						b.Fatalf("%+v, %v", res, err)
					}
				}
			})
		})
	}
}
