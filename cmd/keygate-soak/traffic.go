package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// counts are what the traffic did, in all or between two samples.
type counts struct {
	requests   int64 // HTTP requests sent, every kind
	status5xx  int64 // answered with a 5xx status
	unexpected int64 // answered otherwise than the harness expects
	transport  int64 // no answer: refused, reset, timed out
	limited    int64 // 429 where one is expected (bad keys past their address's budget)

	decisions   int64 // /v1/authorize requests with a good key, batches included
	batches     int64
	badKeys     int64 // /v1/authorize requests with a malformed or unknown key
	forwardAuth int64
	management  int64 // management API requests of the churn
	closed      int64 // MCP sessions used and closed
	abandoned   int64 // MCP sessions used and left to expire
}

func (c counts) minus(o counts) counts {
	return counts{requests: c.requests - o.requests, status5xx: c.status5xx - o.status5xx,
		unexpected: c.unexpected - o.unexpected, transport: c.transport - o.transport, limited: c.limited - o.limited,
		decisions: c.decisions - o.decisions, batches: c.batches - o.batches, badKeys: c.badKeys - o.badKeys,
		forwardAuth: c.forwardAuth - o.forwardAuth, management: c.management - o.management,
		closed: c.closed - o.closed, abandoned: c.abandoned - o.abandoned}
}

// maxProblems bounds the examples of each problem the report shows.
const maxProblems = 8

// tally collects counts, decision latencies and examples of what went
// wrong from every traffic goroutine.
type tally struct {
	mu        sync.Mutex
	c         counts
	latencies []time.Duration // of good-key decisions since the last take
	problems  *byKind         // examples of what went wrong
}

func newTally() *tally { return &tally{problems: newByKind(maxProblems, "(other problems)")} }

// byKind counts lines by kind, keeping the first few kinds in the order
// first seen; later kinds are counted together under other.
type byKind struct {
	n     map[string]int
	order []string
	most  int
	other string
}

func newByKind(most int, other string) *byKind {
	return &byKind{n: map[string]int{}, most: most, other: other}
}

func (k *byKind) add(kind string) {
	if _, seen := k.n[kind]; !seen && len(k.order) >= k.most {
		kind = k.other
	}
	if _, seen := k.n[kind]; !seen {
		k.order = append(k.order, kind)
	}
	k.n[kind]++
}

// list is every kind with its count, "3× kind", in the order first seen.
func (k *byKind) list() []string {
	out := make([]string, len(k.order))
	for i, kind := range k.order {
		out[i] = fmt.Sprintf("%d× %s", k.n[kind], kind)
	}
	return out
}

func (t *tally) add(f func(*counts)) {
	t.mu.Lock()
	f(&t.c)
	t.mu.Unlock()
}

// problem records an unexpected answer, a 5xx or a transport error, with
// an example of it.
func (t *tally) problem(kind *int64, example string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	*kind = *kind + 1
	t.problems.add(example)
}

func (t *tally) latency(d time.Duration) {
	t.mu.Lock()
	t.latencies = append(t.latencies, d)
	t.mu.Unlock()
}

// take returns the counts so far and the median and 99th percentile of the
// decision latencies since the last take.
func (t *tally) take() (counts, time.Duration, time.Duration) {
	t.mu.Lock()
	lat := t.latencies
	t.latencies = make([]time.Duration, 0, len(lat))
	c := t.c
	t.mu.Unlock()
	if len(lat) == 0 {
		return c, 0, 0
	}
	slices.Sort(lat)
	return c, lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
}

// examples are the problems seen, each with how often.
func (t *tally) examples() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.problems.list()
}

// answer is what came back for one request.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// call is one HTTP request of the traffic.
type call struct {
	method, url string
	body        []byte
	header      map[string]string
	what        string // for examples of problems: the kind of request
}

// exchanger sends the traffic's requests and counts what went wrong: a
// transport error or a 5xx always, anything else as its check decides.
type exchanger struct {
	client *http.Client
	tally  *tally
}

// do sends c; check says whether the answer is the expected one (nil),
// an expected refusal (errLimited) or a problem. It reports whether the
// request got an expected answer.
func (x *exchanger) do(ctx context.Context, c call, check func(answer) error) (answer, bool) {
	x.tally.add(func(n *counts) { n.requests++ })
	var rd io.Reader
	if c.body != nil {
		rd = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, rd)
	if err != nil {
		x.tally.problem(&x.tally.c.transport, c.what+": "+err.Error())
		return answer{}, false
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	res, err := x.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, false // the run is over, not a problem of keygate's
		}
		x.tally.problem(&x.tally.c.transport, c.what+": "+redactURL(err.Error()))
		return answer{}, false
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	_ = res.Body.Close()
	if err != nil {
		if ctx.Err() != nil {
			return answer{}, false
		}
		x.tally.problem(&x.tally.c.transport, c.what+": reading the answer: "+err.Error())
		return answer{}, false
	}
	a := answer{status: res.StatusCode, header: res.Header, body: body}
	if a.status >= 500 {
		x.tally.problem(&x.tally.c.status5xx, fmt.Sprintf("%s: %d %.200s", c.what, a.status, body))
		return a, false
	}
	switch err := check(a); {
	case err == nil:
		return a, true
	case errors.Is(err, errLimited):
		x.tally.add(func(n *counts) { n.limited++ })
		return a, true
	default:
		x.tally.problem(&x.tally.c.unexpected, fmt.Sprintf("%s: %v", c.what, err))
		return a, false
	}
}

// errLimited is a check's answer for a 429 where one may come.
var errLimited = errors.New("rate limited, as expected")

// wantStatus is a check for a status and nothing more.
func wantStatus(want int) func(answer) error {
	return func(a answer) error { return statusIs(a, want) }
}

func statusIs(a answer, want int) error {
	if a.status != want {
		return fmt.Errorf("status %d, want %d: %.200s", a.status, want, a.body)
	}
	return nil
}

// redactURL keeps an error's text short: Go's client errors repeat the
// URL, which says nothing the kind of request does not.
func redactURL(s string) string {
	if i := strings.Index(s, "http://"); i >= 0 {
		if j := strings.IndexAny(s[i:], "\": "); j > 0 {
			return s[:i] + "URL" + s[i+j:]
		}
	}
	return s
}
