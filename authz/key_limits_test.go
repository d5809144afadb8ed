package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func TestGCRA(t *testing.T) {
	t.Parallel()
	limit := authz.RateLimit{Limit: 3, WindowMS: 3000} // one a second, three at once
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	sec := int64(time.Second)
	tat := int64(0)
	steps := []struct {
		note      string
		at        int64
		allowed   bool
		remaining int64
		retry     time.Duration
	}{
		{"a quiet key may send its limit at once", start, true, 2, 0},
		{"second", start, true, 1, 0},
		{"third", start, true, 0, 0},
		{"the fourth waits a second", start, false, 0, time.Second},
		{"a second later, one more", start + sec, true, 0, 0},
		{"half a second on, none yet", start + sec + sec/2, false, 0, time.Second / 2},
		{"after a whole window, the whole limit again", start + 5*sec, true, 2, 0},
	}
	for _, s := range steps {
		var st authz.RateLimitState
		tat, st = authz.GCRA(tat, s.at, limit)
		if st.Allowed != s.allowed || st.Remaining != s.remaining || st.RetryAfter != s.retry || st.Limit != 3 {
			t.Fatalf("%s: %+v, want allowed %v remaining %d retry %s", s.note, st, s.allowed, s.remaining, s.retry)
		}
		if st.ResetAt.UnixNano() < s.at {
			t.Fatalf("%s: reset at %s lies before now", s.note, st.ResetAt)
		}
	}
}

func TestMemoryRateLimiter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	limit := authz.RateLimit{Limit: 2, WindowMS: 60_000}
	l := authz.NewMemoryRateLimiter(64)
	for _, key := range []string{"a", "b"} {
		for i, want := range []bool{true, true, false} {
			if got := l.Take(ctx, key, limit, now).Allowed; got != want {
				t.Fatalf("key %s request %d: allowed %v, want %v: keys are limited apart", key, i, got, want)
			}
		}
	}
	// Memory is bounded: past 64 keys (two per shard), the limiter forgets.
	for i := range 10_000 {
		l.Take(ctx, string(rune(i)), limit, now)
	}
	if n := l.Keys(); n > 64+32 {
		t.Fatalf("the limiter tracks %d keys, bound 64", n)
	}
}

func TestCreditsValidationAndLimits(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scope := authz.Scope{AgentIDs: []string{"a"}}
	tests := []struct {
		note  string
		in    authz.CreateKeyInput
		field string // "" valid
	}{
		{"every limit within bounds", authz.CreateKeyInput{RateLimit: &authz.RateLimit{Limit: 1, WindowMS: 1000},
			Credits:    &authz.Credits{Remaining: 0, Refill: &authz.CreditRefill{Amount: 1, IntervalMS: 60_000}},
			ExternalID: ptr("cus_1"), Meta: json.RawMessage(`{"plan": "pro"}`)}, ""},
		{"a zero limit", authz.CreateKeyInput{RateLimit: &authz.RateLimit{Limit: 0, WindowMS: 1000}}, "rate_limit.limit"},
		{"a window under a second", authz.CreateKeyInput{RateLimit: &authz.RateLimit{Limit: 1, WindowMS: 999}}, "rate_limit.window_ms"},
		{"a window over a day", authz.CreateKeyInput{RateLimit: &authz.RateLimit{Limit: 1, WindowMS: 86_400_001}}, "rate_limit.window_ms"},
		{"negative credits", authz.CreateKeyInput{Credits: &authz.Credits{Remaining: -1}}, "credits.remaining"},
		{"credits past the bound", authz.CreateKeyInput{Credits: &authz.Credits{Remaining: authz.MaxCredits + 1}}, "credits.remaining"},
		{"a refill of nothing", authz.CreateKeyInput{Credits: &authz.Credits{Refill: &authz.CreditRefill{Amount: 0, IntervalMS: 60_000}}}, "credits.refill.amount"},
		{"a refill every second", authz.CreateKeyInput{Credits: &authz.Credits{Refill: &authz.CreditRefill{Amount: 1, IntervalMS: 1000}}}, "credits.refill.interval_ms"},
		{"an empty external id", authz.CreateKeyInput{ExternalID: ptr("")}, "external_id"},
		{"an external id with a control character", authz.CreateKeyInput{ExternalID: ptr("a\x00b")}, "external_id"},
		{"meta that is not an object", authz.CreateKeyInput{Meta: json.RawMessage(`["plan"]`)}, "meta"},
		{"meta over 4 KiB", authz.CreateKeyInput{Meta: json.RawMessage(`{"a":"` + strings.Repeat("x", 4096) + `"}`)}, "meta"},
		{"meta nested too deep", authz.CreateKeyInput{Meta: json.RawMessage(`{"a":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}`)}, "meta"},
		{"meta that is not UTF-8", authz.CreateKeyInput{Meta: json.RawMessage("{\"a\":\"\xff\"}")}, "meta"},
	}
	for _, tc := range tests {
		tc.in.Name, tc.in.Scope = "k", scope
		err := tc.in.Validate(now)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.note, err)
			}
			continue
		}
		fields := authz.ErrorFields(err)
		if authz.ErrorCode(err) != authz.EINVALID || len(fields) == 0 || fields[0].Field != tc.field {
			t.Errorf("%s: %v (%+v), want EINVALID naming %s", tc.note, err, fields, tc.field)
		}
	}
	// Meta is kept compact; a deeply nested string is not nesting.
	meta, fe := authz.CompactMeta(json.RawMessage(`{ "plan" : "pro", "note": "[[[[[[[[[[[[[[[[[[" }`))
	if fe != nil || string(meta) != `{"plan":"pro","note":"[[[[[[[[[[[[[[[[[["}` {
		t.Fatalf("CompactMeta: %s, %v", meta, fe)
	}
}

// creditStore is an in-memory CreditStore that counts its calls; every
// key's version is version.
type creditStore struct {
	mu      sync.Mutex
	credits map[string]*authz.Credits
	version time.Time
	calls   atomic.Int64
	fail    error
}

func (s *creditStore) SpendCredits(_ context.Context, id string, spend func(*authz.Credits, time.Time)) error {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	c, ok := s.credits[id]
	if !ok {
		return authz.Errorf(authz.ENOTFOUND, "no key")
	}
	spend(c, s.version)
	return nil
}

func (s *creditStore) ReturnCredits(_ context.Context, id string, n int64, version time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	c := s.credits[id]
	if c == nil || !version.Equal(s.version) {
		return false, nil
	}
	c.Remaining += n
	return true, nil
}

func (s *creditStore) set(id string, remaining int64, version time.Time) {
	s.mu.Lock()
	s.credits[id].Remaining, s.version = remaining, version
	s.mu.Unlock()
}

func (s *creditStore) remaining(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credits[id].Remaining
}

func TestCreditSpender(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	t.Run("no credit is spent twice, whatever the concurrency", func(t *testing.T) {
		store := &creditStore{credits: map[string]*authz.Credits{"k": {Remaining: 100}}}
		sp := authz.NewCreditSpender(store, authz.CreditSpenderOptions{Now: now})
		t.Cleanup(func() { _ = sp.Close(ctx) })
		p := &authz.Principal{KeyID: "k", Credits: true}
		var ok atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for range 8 {
					res, err := sp.Spend(ctx, p, 1)
					if err != nil {
						t.Error(err)
					}
					if res.OK {
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if ok.Load() != 100 || store.credits["k"].Remaining != 0 {
			t.Fatalf("%d of 400 requests spent 100 credits; %d left", ok.Load(), store.credits["k"].Remaining)
		}
		if calls := store.calls.Load(); calls > 400 {
			t.Fatalf("%d spends in the store for 400 requests", calls)
		}
	})
	t.Run("a key in heavy use is served from a reserve, and gets it back", func(t *testing.T) {
		const start = 1_000_000
		store := &creditStore{credits: map[string]*authz.Credits{"k": {Remaining: start}}}
		sp := authz.NewCreditSpender(store, authz.CreditSpenderOptions{Now: time.Now})
		p := &authz.Principal{KeyID: "k", Credits: true}
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 500 {
					if res, err := sp.Spend(ctx, p, 1); err != nil || !res.OK {
						t.Errorf("%+v, %v", res, err)
					}
				}
			})
		}
		wg.Wait()
		if calls := store.calls.Load(); calls > 8000/4 {
			t.Fatalf("%d spends in the store for 8,000 requests: the reserve serves too few", calls)
		}
		if left, held := store.remaining("k"), sp.Reserved(); left+held != start-8000 || held > 256 {
			t.Fatalf("the store holds %d and the spender %d reserved; want %d together, at most 256 reserved", left, held, start-8000)
		}
		if err := sp.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if left := store.remaining("k"); left != start-8000 || sp.Reserved() != 0 {
			t.Fatalf("after Close the store holds %d, want %d", left, start-8000)
		}
	})
	t.Run("a change to the key voids what was reserved before it", func(t *testing.T) {
		store := &creditStore{credits: map[string]*authz.Credits{"k": {Remaining: 1_000_000}}}
		sp := authz.NewCreditSpender(store, authz.CreditSpenderOptions{Now: time.Now})
		t.Cleanup(func() { _ = sp.Close(ctx) })
		p := &authz.Principal{KeyID: "k", Credits: true}
		for sp.Reserved() == 0 {
			if _, err := sp.Spend(ctx, p, 1); err != nil {
				t.Fatal(err)
			}
		}
		// An admin sets the balance to 3 (a new version); the key's next
		// principal is a new snapshot.
		store.set("k", 3, time.Now())
		changed := &authz.Principal{KeyID: "k", Credits: true}
		allowed := 0
		for range 10 {
			if res, _ := sp.Spend(ctx, changed, 1); res.OK {
				allowed++
			}
		}
		if allowed != 3 {
			t.Fatalf("%d allowed after the balance was set to 3", allowed)
		}
	})
	t.Run("a batch is all or nothing, in order of arrival", func(t *testing.T) {
		store := &creditStore{credits: map[string]*authz.Credits{"k": {Remaining: 3}}}
		sp := authz.NewCreditSpender(store, authz.CreditSpenderOptions{Now: now})
		t.Cleanup(func() { _ = sp.Close(ctx) })
		p := &authz.Principal{KeyID: "k", Credits: true}
		res, _ := sp.Spend(ctx, p, 5)
		if res.OK || res.Remaining != 3 || !res.Known {
			t.Fatalf("5 of 3: %+v", res)
		}
		res, _ = sp.Spend(ctx, p, 2)
		if !res.OK || res.Remaining != 1 {
			t.Fatalf("2 of 3: %+v", res)
		}
	})
	t.Run("refills top up to the amount", func(t *testing.T) {
		at := now()
		store := &creditStore{credits: map[string]*authz.Credits{"k": {Remaining: 1,
			Refill: &authz.CreditRefill{Amount: 5, IntervalMS: 3_600_000}, RefilledAt: &at}}}
		sp := authz.NewCreditSpender(store, authz.CreditSpenderOptions{Now: now})
		t.Cleanup(func() { _ = sp.Close(ctx) })
		p := &authz.Principal{KeyID: "k", Credits: true}
		if res, _ := sp.Spend(ctx, p, 1); !res.OK || res.Remaining != 0 || !res.NextRefill.Equal(at.Add(time.Hour)) {
			t.Fatalf("first: %+v", res)
		}
		if res, _ := sp.Spend(ctx, p, 1); res.OK {
			t.Fatalf("out of credits: %+v", res)
		}
		advance(2*time.Hour + time.Minute)
		res, _ := sp.Spend(ctx, p, 1)
		if !res.OK || res.Remaining != 4 || !res.NextRefill.Equal(at.Add(3*time.Hour)) {
			t.Fatalf("after two intervals: %+v, want 4 left and the next refill at the third hour", res)
		}
	})
	t.Run("a key without credits passes; a deleted key is invalid; a failing store refuses", func(t *testing.T) {
		store := &creditStore{credits: map[string]*authz.Credits{"none": nil}}
		store.credits["none"] = nil
		sp := authz.NewCreditSpender(&nilCredits{store}, authz.CreditSpenderOptions{Now: now})
		t.Cleanup(func() { _ = sp.Close(ctx) })
		if res, err := sp.Spend(ctx, &authz.Principal{KeyID: "none"}, 1); err != nil || !res.OK || res.Known {
			t.Fatalf("no credits: %+v, %v", res, err)
		}
		if _, err := sp.Spend(ctx, &authz.Principal{KeyID: "gone"}, 1); authz.ErrorCode(err) != authz.KeyInvalid {
			t.Fatalf("deleted key: %v", err)
		}
		store.fail = errors.New("down")
		if _, err := sp.Spend(ctx, &authz.Principal{KeyID: "none"}, 1); err == nil {
			t.Fatal("a failing store let the request through")
		}
	})
}

// nilCredits hands spend nil for the key "none", as a store does for a key
// without credits.
type nilCredits struct{ *creditStore }

func (n *nilCredits) SpendCredits(ctx context.Context, id string, spend func(*authz.Credits, time.Time)) error {
	if id == "none" && n.fail == nil {
		n.calls.Add(1)
		spend(nil, time.Time{})
		return nil
	}
	return n.creditStore.SpendCredits(ctx, id, spend)
}

func TestMetaReachesThePolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	modules := embeddedModules(t)
	// An operator's rule, the plan-tier example beside keygate's policies:
	// vector stores are queried by keys on a paid plan only.
	rule, err := os.ReadFile("../docs/examples/plan-tier/plan_tier.rego")
	if err != nil {
		t.Fatal(err)
	}
	modules["plan_tier.rego"] = string(rule)
	e, err := authz.NewEngine(ctx, modules, authz.EngineOptions{DecisionCacheSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if on, why := e.DecisionCaching(); !on {
		t.Fatalf("a policy reading the principal's meta must stay cacheable: %s", why)
	}
	store := authz.Resource{Type: authz.ResourceVectorStore, ID: "docs"}
	for _, tc := range []struct {
		meta  string
		allow bool
	}{{`{"plan":"pro"}`, true}, {`{"plan":"free"}`, false}, {"", false}, {`{"plan":"pro"}`, true}} {
		p := testPrincipal()
		p.Meta = json.RawMessage(tc.meta)
		for range 2 { // evaluated, then from the cache
			d, err := e.Decide(ctx, p, store, "query", testContext)
			if err != nil || d.Allow != tc.allow {
				t.Fatalf("meta %q: %+v, %v; want allow %v", tc.meta, d, err, tc.allow)
			}
		}
	}
}

func TestInputDocumentCarriesMetaAndExternalID(t *testing.T) {
	t.Parallel()
	e := newEngine(t, echoModules)
	p := testPrincipal()
	p.Meta, p.ExternalID = json.RawMessage(`{"plan":"pro","limits":{"seats":3}}`), "cus_42"
	d, err := e.Decide(context.Background(), p, authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, "read", authz.DecisionContext{})
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		Principal struct {
			Meta       map[string]any `json:"meta"`
			ExternalID string         `json:"external_id"`
		} `json:"principal"`
	}
	if err := json.Unmarshal([]byte(d.Reasons[0]), &in); err != nil {
		t.Fatal(err)
	}
	if in.Principal.ExternalID != "cus_42" || in.Principal.Meta["plan"] != "pro" || in.Principal.Meta["limits"].(map[string]any)["seats"] != 3.0 {
		t.Fatalf("principal in the input: %+v", in.Principal)
	}
}
