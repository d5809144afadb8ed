package authz_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
)

func newTestLimiter(opts authz.FailureLimiterOptions) (*authz.FailureLimiter, *authztest.Clock) {
	clk := authztest.NewClock(fixedTime)
	opts.Now = clk.Now
	return authz.NewFailureLimiter(opts), clk
}

func TestFailureLimiterBudget(t *testing.T) {
	t.Parallel()
	l, clk := newTestLimiter(authz.FailureLimiterOptions{Burst: 3, Rate: 0.5})
	const addr = "203.0.113.7"
	for i := range 3 {
		if wait := l.Over(addr); wait != 0 {
			t.Fatalf("failure %d: over budget (%s) within the burst", i, wait)
		}
		l.Fail(addr)
	}
	if wait := l.Over(addr); wait != 2*time.Second {
		t.Fatalf("after the burst: wait %s, want 2s (one failure at 0.5/s)", wait)
	}
	if l.Over("203.0.113.8") != 0 {
		t.Fatal("another address shares the budget")
	}
	clk.Advance(time.Second)
	if wait := l.Over(addr); wait != time.Second {
		t.Fatalf("half refilled: wait %s, want 1s", wait)
	}
	clk.Advance(time.Second)
	if wait := l.Over(addr); wait != 0 {
		t.Fatalf("one failure earned back: still over (%s)", wait)
	}
	l.Fail(addr)
	if l.Over(addr) == 0 {
		t.Fatal("the earned failure spent: not over budget")
	}
	// A full budget again is forgotten: no memory for it.
	clk.Advance(time.Minute)
	if l.Over(addr) != 0 || l.Addresses() != 0 {
		t.Fatalf("refilled address still tracked: %d addresses", l.Addresses())
	}
}

func TestFailureLimiterAddressKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ note, addr, want string }{
		{"ipv4 as is", "203.0.113.7", "203.0.113.7"},
		{"ipv6 by /64", "2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"same /64", "2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"},
		{"mapped ipv4", "::ffff:203.0.113.7", "203.0.113.7"},
		{"zone dropped", "fe80::1%eth0", "fe80::/64"},
		{"not an address", "unix:sock", "unix:sock"},
		{"empty", "", ""},
		{"bounded", strings.Repeat("x", 300), strings.Repeat("x", 64)},
	}
	for _, tc := range tests {
		if got := authz.AddressKey(tc.addr); got != tc.want {
			t.Errorf("%s: AddressKey(%q) = %q, want %q", tc.note, tc.addr, got, tc.want)
		}
	}
	l, _ := newTestLimiter(authz.FailureLimiterOptions{Burst: 1})
	l.Fail("2001:db8:1:2::1")
	if l.Over("2001:db8:1:2::99") == 0 {
		t.Fatal("a host's /64 is one budget")
	}
}

func TestFailureLimiterMemoryIsBounded(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(authz.FailureLimiterOptions{Burst: 1, MaxAddresses: 640})
	for i := range 100_000 {
		l.Fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	// Each of 64 shards holds its share, one over at most.
	if n := l.Addresses(); n > 640+64 {
		t.Fatalf("%d addresses tracked after a flood of 100000, want at most about 640", n)
	}
	// The most recent are the ones kept.
	if l.Over("10.1.134.159") == 0 { // the last address of the flood
		t.Fatal("the most recent address was forgotten")
	}
}

func TestFailureLimiterRefuseLogsOncePerInterval(t *testing.T) {
	t.Parallel()
	logs := &authztest.SyncBuffer{}
	var counted []string
	l, clk := newTestLimiter(authz.FailureLimiterOptions{
		Burst: 1, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		OnLimited: func(_ context.Context, credential string) { counted = append(counted, credential) },
	})
	const addr = "198.51.100.1"
	l.Fail(addr)
	for range 50 {
		err := l.Refuse(context.Background(), addr, authz.CredentialJWT, l.Over(addr))
		if authz.ErrorCode(err) != authz.ERATELIMIT || authz.ErrorRetryAfter(err) <= 0 {
			t.Fatalf("refusal %v, want ERATELIMIT with a retry-after", err)
		}
	}
	if n := strings.Count(logs.String(), "too many failed authentications"); n != 1 {
		t.Fatalf("%d log lines for 50 refusals within a minute, want 1", n)
	}
	if len(counted) != 50 || counted[0] != authz.CredentialJWT || l.Refused() != 50 {
		t.Fatalf("counted %d refusals (%v), want 50", len(counted), l.Refused())
	}
	clk.Advance(61 * time.Second)
	l.Fail(addr)
	l.Fail(addr)
	_ = l.Refuse(context.Background(), addr, authz.CredentialAPIKey, l.Over(addr))
	if n := strings.Count(logs.String(), "too many failed authentications"); n != 2 {
		t.Fatalf("%d log lines after a minute, want 2", n)
	}
}

// limitedService is a KeyService over a counting store and a key cache,
// with a failed-authentication budget of 3, at a fixed address.
func limitedService(t *testing.T) (*authz.KeyService, *lookupStore, *authz.FailureLimiter, context.Context) {
	t.Helper()
	store := newLookupStore(0)
	cache, _ := newTestCache(store, authz.KeyCacheOptions{})
	limiter, _ := newTestLimiter(authz.FailureLimiterOptions{Burst: 3})
	svc := &authz.KeyService{Lookup: cache, Limiter: limiter, Now: func() time.Time { return fixedTime }}
	ctx := authz.NewContextWithRequestInfo(context.Background(), authz.RequestInfo{IP: "192.0.2.10"})
	return svc, store, limiter, ctx
}

func TestAuthenticateOverBudgetBeforeAnyLookup(t *testing.T) {
	t.Parallel()
	svc, store, _, ctx := limitedService(t)
	for i := range 3 {
		tok, _ := authz.NewToken(nil)
		if _, err := svc.Authenticate(ctx, tok); authz.ErrorCode(err) != authz.KeyInvalid {
			t.Fatalf("unknown token %d: %v, want KEY_INVALID", i, err)
		}
	}
	looked := store.calls.Load()
	for _, tok := range []string{"pk_malformed", mustToken(t)} {
		_, err := svc.Authenticate(ctx, tok)
		if authz.ErrorCode(err) != authz.ERATELIMIT || authz.ErrorRetryAfter(err) <= 0 {
			t.Fatalf("over budget: %v, want ERATELIMIT with a retry-after", err)
		}
	}
	if store.calls.Load() != looked {
		t.Fatal("an address over its budget cost a lookup")
	}
	other := authz.NewContextWithRequestInfo(context.Background(), authz.RequestInfo{IP: "192.0.2.11"})
	if _, err := svc.Authenticate(other, mustToken(t)); authz.ErrorCode(err) != authz.KeyInvalid {
		t.Fatalf("another address: %v, want KEY_INVALID", err)
	}
}

func TestAuthenticateServesLiveCachedKeysOverBudget(t *testing.T) {
	t.Parallel()
	svc, store, _, ctx := limitedService(t)
	live, disabled := mustToken(t), mustToken(t)
	store.put(authz.APIKey{ID: "live", Hash: authz.HashToken(live), TenantID: "t1", UserID: "u1", Enabled: true})
	store.put(authz.APIKey{ID: "off", Hash: authz.HashToken(disabled), TenantID: "t1", UserID: "u1", Enabled: false})
	if _, err := svc.Authenticate(ctx, live); err != nil {
		t.Fatal(err)
	}
	// The disabled key is cached too, and its refusals are charged.
	for range 3 {
		if _, err := svc.Authenticate(ctx, disabled); authz.ErrorCode(err) != authz.KeyDisabled {
			t.Fatalf("disabled key: %v", err)
		}
	}
	if _, err := svc.Authenticate(ctx, disabled); authz.ErrorCode(err) != authz.ERATELIMIT {
		t.Fatalf("a cached but disabled key over budget: %v, want ERATELIMIT", err)
	}
	looked := store.calls.Load()
	for range 5 {
		if p, err := svc.Authenticate(ctx, live); err != nil || p.KeyID != "live" {
			t.Fatalf("a live cached key over budget: %v, %v", p, err)
		}
	}
	if store.calls.Load() != looked {
		t.Fatal("the live key cost a lookup")
	}
	// A valid key the cache does not hold is refused like any other.
	fresh := mustToken(t)
	store.put(authz.APIKey{ID: "fresh", Hash: authz.HashToken(fresh), TenantID: "t1", UserID: "u1", Enabled: true})
	if _, err := svc.Authenticate(ctx, fresh); authz.ErrorCode(err) != authz.ERATELIMIT {
		t.Fatalf("an uncached key over budget: %v, want ERATELIMIT", err)
	}
}

func TestDecideAnswersRateLimitedAsAnError(t *testing.T) {
	t.Parallel()
	svc, _, limiter, ctx := limitedService(t)
	for range 3 {
		limiter.Fail("192.0.2.10")
	}
	_, err := svc.Decide(ctx, authz.DecisionRequest{Token: mustToken(t), Source: authz.SourceAuthorize,
		Checks: []authz.Check{{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f"}, Action: "read"}}})
	if authz.ErrorCode(err) != authz.ERATELIMIT {
		t.Fatalf("Decide over budget: %v, want ERATELIMIT", err)
	}
}

func mustToken(t *testing.T) string {
	t.Helper()
	tok, err := authz.NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
