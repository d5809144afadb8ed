package authz

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keygate/keygate/internal/heaptest"
)

// TestBoundedCachesStayBoundedInBytes drives the decision cache and the
// policy-input memo through millions of replacements and checks that the
// heap they hold levels off near the size of their live entries instead of
// growing with the number of replacements, as a plain Go map's tables do.
// Not parallel: it reads the process's heap.
func TestBoundedCachesStayBoundedInBytes(t *testing.T) {
	const size = 10_000
	rounds := []int{250_000, 1_000_000, 2_000_000}
	if testing.Short() || raceEnabled {
		rounds = []int{40_000, 160_000, 320_000}
	}
	principals := make([]*Principal, 64)
	for i := range principals {
		principals[i] = &Principal{KeyID: fmt.Sprint("k", i)}
	}
	term := ast.StringTerm("x")
	tests := []struct {
		note string
		// churn makes a structure and puts n distinct entries in it.
		churn func(n int) any
		// most is the documented bound on what it holds, in bytes.
		most uint64
	}{
		{"decision cache of 10,000 answers", func(n int) any {
			c := newDecisionCache(size)
			d := Decision{Allow: true, Reasons: []string{"r"}}
			for i := range n {
				c.put(decisionKey{principal: principals[i%len(principals)], gen: uint64(i), rtype: ResourceFlow, id: "f", action: "read"}, d)
			}
			return c
		}, size * 250},
		{"policy inputs of the last 1,024 principals", func(n int) any {
			var c principalTerms
			c.m = newChurnMap[any, *ast.Term](maxPrincipalTerms)
			for range n {
				c.put(&Principal{KeyID: "k"}, term)
			}
			return &c
		}, maxPrincipalTerms * 300},
		{"failed-authentication budgets of 10,000 addresses", func(n int) any {
			l := NewFailureLimiter(FailureLimiterOptions{MaxAddresses: 10_000})
			for i := range n {
				l.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String())
			}
			return l
		}, 10_000 * 250},
		{"key cache of 10,000 keys", func(n int) any {
			c := NewKeyCache(churnStore{}, KeyCacheOptions{MaxEntries: 10_000, Principals: 1})
			for i := range n {
				_, _ = c.KeyByHash(context.Background(), fmt.Sprintf("%064x", i))
			}
			return c
		}, 10_000 * 700},
		{"unknown tokens of the last 5 seconds, 10,000 at most", func(n int) any {
			c := NewKeyCache(churnStore{unknown: true}, KeyCacheOptions{NegativeMaxEntries: 10_000})
			for i := range n {
				_, _ = c.KeyByHash(context.Background(), fmt.Sprintf("%064x", i))
			}
			return c
		}, 10_000 * 250},
		{"refusals counted for 1,000 addresses a minute", func(n int) any {
			clk := time.Unix(0, 0)
			rec := discardRecorder{}
			a := NewRefusalAggregator(rec, RefusalAggregatorOptions{MaxEntries: 1000, Now: func() time.Time { return clk }})
			// Closed, its timer is stopped; reopened, the test flushes by hand.
			_ = a.Close(context.Background())
			a.closed = false
			for i := range n {
				if i > 0 && i%2000 == 0 { // a minute passes every 2,000 refusals
					clk = clk.Add(time.Minute)
					a.Flush()
				}
				a.Record(AuditEvent{Action: AuditAuthFailed, IP: fmt.Sprint("10.0.", i%5000), Reason: "unknown key", OccurredAt: clk})
			}
			if a.Pending() < 1000 {
				panic(fmt.Sprintf("%d refusals pending, want the cap", a.Pending()))
			}
			return a
		}, 1000 * 1000},
	}
	for _, tc := range tests {
		var sizes []uint64
		for _, n := range rounds {
			got := heaptest.Retained(func() any { return tc.churn(n) })
			sizes = append(sizes, got)
		}
		t.Logf("%s: retains %v bytes after %v insertions", tc.note, sizes, rounds)
		last := sizes[len(sizes)-1]
		if last > tc.most {
			t.Errorf("%s: holds %d bytes after %d insertions; the bound is %d", tc.note, last, rounds[len(rounds)-1], tc.most)
		}
		if last > sizes[0]*3/2+64<<10 {
			t.Errorf("%s: grows with churn: %v bytes after %v insertions", tc.note, sizes, rounds)
		}
	}
}

type discardRecorder struct{}

func (discardRecorder) Record(AuditEvent) {}

// churnStore makes up a small key for any hash, or knows none.
type churnStore struct{ unknown bool }

func (s churnStore) KeyByHash(_ context.Context, hash string) (*APIKey, error) {
	if s.unknown {
		return nil, Errorf(ENOTFOUND, "no key has this hash")
	}
	return &APIKey{ID: "01890000-0000-7000-8000-" + hash[52:], Name: "k", TenantID: "t", UserID: "u", Hash: hash, Enabled: true,
		Scope: Scope{FlowIDs: []string{"f-" + hash[56:]}}}, nil
}
