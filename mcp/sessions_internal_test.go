package mcp

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/keygate/keygate/internal/heaptest"
)

// TestSessionCountsStayBoundedInBytes opens and closes sessions of many
// keys, thousands open at a time and ending in no particular order, as a
// busy gateway does for weeks: the per-key counts hold a few thousand
// entries at any moment, and the heap they keep must stay near the size of
// a map freshly made with those entries instead of growing with every
// session that ever ended. Not parallel: it reads the process's heap.
func TestSessionCountsStayBoundedInBytes(t *testing.T) {
	const (
		keys = 100_000 // distinct keys over the run, each coming back now and then
		open = 5_000   // sessions open at once, one per key
	)
	rounds := []int{300_000, 1_000_000, 3_000_000}
	if testing.Short() {
		rounds = []int{100_000, 300_000, 1_000_000}
	}
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("01JZ%022d", i) // as long as a key id
	}
	newLimiter := func() *sessionLimiter {
		l, err := newSessionLimiter(Options{MaxSessionsPerKey: 32, MaxSessions: 10_000}, noop.NewMeterProvider().Meter(""), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// churn opens a session for each of cycles keys in turn; past the
	// first open, each opening follows the end of an open session picked
	// at random, so open stays constant while the keys turn over.
	churn := func(cycles int) any {
		l := newLimiter()
		rng := rand.New(rand.NewPCG(1, 2))
		ring := make([]string, 0, open)
		for i := range cycles {
			key := names[i%keys]
			if len(ring) < open {
				ring = append(ring, key)
			} else {
				j := rng.IntN(open)
				l.release(ring[j])
				ring[j] = key
			}
			if why := l.acquire(key); why != "" {
				panic(fmt.Sprintf("cycle %d refused: %s", i, why))
			}
		}
		if total, _ := l.open(""); total != open {
			panic(fmt.Sprintf("%d sessions counted open, want %d", total, open))
		}
		for _, key := range ring { // every rebuild kept every count
			if _, mine := l.open(key); mine != 1 {
				panic(fmt.Sprintf("key %s counted with %d sessions open, want 1", key, mine))
			}
		}
		return l
	}
	fresh := heaptest.Retained(func() any { return churn(open) }) // no session ended yet
	var sizes []uint64
	for _, n := range rounds {
		sizes = append(sizes, heaptest.Retained(func() any { return churn(n) }))
	}
	t.Logf("session counts of %d open sessions over %d keys: %d bytes fresh; %v bytes after %v open/close cycles", open, keys, fresh, sizes, rounds)
	for i, got := range sizes {
		if most := fresh*5/4 + 8<<10; got > most {
			t.Errorf("the session counts hold %d bytes after %d cycles, more than 1.25 times the %d bytes of a fresh map of the same sessions", got, rounds[i], fresh)
		}
	}
}
