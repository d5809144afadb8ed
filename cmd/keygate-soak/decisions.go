package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
)

// The decision traffic: keys whose scopes each own a family of ids, and
// questions drawn from a space too large for the decision cache to hold, a
// fifth of them about another key's ids and so denied.

// soakKey is a key the harness created over the API.
type soakKey struct {
	ID    string `json:"id"`
	Token string `json:"token"`
	owner int    // the number in its scope's ids
}

// keyScope is the scope of the key that owns the ids numbered owner: one
// glob per list, and the upstream MCP tools the sessions may call.
func keyScope(owner int) authz.Scope {
	return authz.Scope{
		AgentIDs:       []string{fmt.Sprintf("agent-%d-*", owner)},
		FlowIDs:        []string{fmt.Sprintf("flow-%d-*", owner)},
		MCPToolIDs:     []string{fmt.Sprintf("tool-%d-*", owner), upstreamName + "__search", upstreamName + "__lookup"},
		VectorStoreIDs: []string{fmt.Sprintf("store-%d-*", owner)},
	}
}

// kind is a resource type, the prefix of its ids, its actions and the
// path and method forward auth maps to each action.
type kind struct {
	rtype, prefix, path string
	actions             []string
	methods             []string // per action
}

var kinds = []kind{
	{"agent", "agent", "/agents/", []string{"execute", "read"}, []string{http.MethodPost, http.MethodGet}},
	{"flow", "flow", "/flows/", []string{"execute", "read"}, []string{http.MethodPost, http.MethodGet}},
	{"mcp_tool", "tool", "/mcp-tools/", []string{"call", "read"}, []string{http.MethodPost, http.MethodGet}},
	{"vector_store", "store", "/vector-stores/", []string{"query", "read", "write"}, []string{http.MethodPost, http.MethodGet, http.MethodPut}},
}

// question is one check and the answer the policy must give.
type question struct {
	kind   *kind
	id     string
	action int // index into kind.actions
	allow  bool
}

// newQuestion draws a question for the key owning owner's ids: an id of
// its own (allowed) four times in five, else one of another of the keys
// (denied); ids are numbered up to idSpace.
func newQuestion(rng *mrand.Rand, owner, keys, idSpace int) question {
	k := &kinds[rng.IntN(len(kinds))]
	q := question{kind: k, action: rng.IntN(len(k.actions)), allow: true}
	if keys > 1 && rng.IntN(5) == 0 {
		owner = (owner + 1 + rng.IntN(keys-1)) % keys
		q.allow = false
	}
	q.id = fmt.Sprintf("%s-%d-%d", k.prefix, owner, rng.IntN(idSpace))
	return q
}

type resourceBody struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type checkBody struct {
	Resource resourceBody `json:"resource"`
	Action   string       `json:"action"`
}

func (q question) check() checkBody {
	return checkBody{Resource: resourceBody{Type: q.kind.rtype, ID: q.id}, Action: q.kind.actions[q.action]}
}

// singleBody is a /v1/authorize body of one check.
func singleBody(token string, q question) []byte {
	c := q.check()
	return mustJSON(struct {
		APIKey   string       `json:"api_key"`
		Resource resourceBody `json:"resource"`
		Action   string       `json:"action"`
	}{token, c.Resource, c.Action})
}

// batchBody is a /v1/authorize body of several checks.
func batchBody(token string, qs []question) []byte {
	checks := make([]checkBody, len(qs))
	for i, q := range qs {
		checks[i] = q.check()
	}
	return mustJSON(struct {
		APIKey string      `json:"api_key"`
		Checks []checkBody `json:"checks"`
	}{token, checks})
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the harness's own plain structs are encoded
	}
	return data
}

var allowedTrue = []byte(`"allowed":true`)

// wantDecision checks a single answer: 200, allowed as the policy must say.
func wantDecision(allow bool) func(answer) error {
	return func(a answer) error {
		if err := statusIs(a, http.StatusOK); err != nil {
			return err
		}
		if got := bytes.Contains(a.body, allowedTrue); got != allow {
			return fmt.Errorf("allowed %v, want %v: %.200s", got, allow, a.body)
		}
		return nil
	}
}

// wantBatch checks a batch answer: 200 and as many checks allowed as the
// policy must allow (each result carries its own "allowed").
func wantBatch(allowed int) func(answer) error {
	return func(a answer) error {
		if err := statusIs(a, http.StatusOK); err != nil {
			return err
		}
		if got := bytes.Count(a.body, allowedTrue); got != allowed {
			return fmt.Errorf("%d checks allowed, want %d: %.200s", got, allowed, a.body)
		}
		return nil
	}
}

// wantRefusal checks the answer to a key keygate must refuse: 200 with
// code, or 429 where the address may be past its failed-authentication
// budget.
func wantRefusal(code string, limitedOK bool) func(answer) error {
	want := []byte(`"code":"` + code + `"`)
	return func(a answer) error {
		switch {
		case a.status == http.StatusTooManyRequests && limitedOK:
			return errLimited
		case a.status != http.StatusOK:
			return fmt.Errorf("status %d, want 200 with %s: %.200s", a.status, code, a.body)
		case !bytes.Contains(a.body, want) || bytes.Contains(a.body, allowedTrue):
			return fmt.Errorf("want a refusal with %s: %.200s", code, a.body)
		}
		return nil
	}
}

// wantForward checks a forward-auth answer: 200 when allowed, 403 when not.
func wantForward(allow bool) func(answer) error {
	if allow {
		return wantStatus(http.StatusOK)
	}
	return wantStatus(http.StatusForbidden)
}

// decisionMix is the shares of the decision traffic, in requests.
type decisionMix struct {
	rate        int     // requests a second, all kinds
	workers     int     // requests in flight at most
	badShare    float64 // with a malformed or unknown key
	batchShare  float64 // batches of batchChecks checks
	forwardAuth float64 // forward-auth requests, when keygate has the endpoint
	idSpace     int     // ids per key and resource type
}

// batchChecks is the checks in one batch request.
const batchChecks = 10

// Addresses bad keys come from (X-Forwarded-For, believed from 127.0.0.1):
// most from a pool wide enough that each stays within its budget of failed
// authentications, one in noisyEvery from a single address that goes past
// it and gets 429s, as a scanner would.
const (
	badAddresses = 1000
	noisyEvery   = 8
	noisyAddress = "10.99.0.1"
)

// decisionLoad drives the decision traffic until ctx ends.
type decisionLoad struct {
	x       *exchanger
	base    string
	keys    []soakKey
	mix     decisionMix
	forward bool // keygate has /v1/forward-auth
}

// run drives the traffic until loop ends; requests are made with req, so
// that those in flight when loop ends are answered, not cut off.
func (d *decisionLoad) run(loop, req context.Context) {
	tokens := make(chan struct{}, d.mix.workers)
	var wg sync.WaitGroup
	for w := range d.mix.workers {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for n := 0; ; n++ {
				select {
				case <-loop.Done():
					return
				case <-tokens:
				}
				d.one(req, rng, n)
			}
		})
	}
	pace(loop, d.mix.rate, tokens)
	wg.Wait()
}

// pace hands out rate tokens a second until ctx ends; tokens the workers
// are too busy to take are dropped, so a saturated keygate sees the
// workers' concurrency, never a backlog.
func pace(ctx context.Context, rate int, tokens chan<- struct{}) {
	const every = 10 * time.Millisecond
	tick := time.NewTicker(every)
	defer tick.Stop()
	per, carry := float64(rate)*every.Seconds(), 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for carry += per; carry >= 1; carry-- {
			select {
			case tokens <- struct{}{}:
			default:
			}
		}
	}
}

// one sends one request of the mix.
func (d *decisionLoad) one(ctx context.Context, rng *mrand.Rand, n int) {
	key := d.keys[rng.IntN(len(d.keys))]
	keys := len(d.keys)
	url := d.base + "/v1/authorize"
	switch p := rng.Float64(); {
	case p < d.mix.badShare:
		d.badKey(ctx, rng, n)
	case p < d.mix.badShare+d.mix.batchShare:
		qs := make([]question, batchChecks)
		allowed := 0
		for i := range qs {
			qs[i] = newQuestion(rng, key.owner, keys, d.mix.idSpace)
			if qs[i].allow {
				allowed++
			}
		}
		began := time.Now()
		if _, ok := d.x.do(ctx, call{method: http.MethodPost, url: url, body: batchBody(key.Token, qs), what: "batch decision"}, wantBatch(allowed)); ok {
			d.x.tally.latency(time.Since(began))
		}
		d.x.tally.add(func(c *counts) { c.decisions++; c.batches++ })
	case d.forward && p < d.mix.badShare+d.mix.batchShare+d.mix.forwardAuth:
		q := newQuestion(rng, key.owner, keys, d.mix.idSpace)
		d.x.do(ctx, forwardCall(d.base, key.Token, q, ""), wantForward(q.allow))
		d.x.tally.add(func(c *counts) { c.forwardAuth++ })
	default:
		q := newQuestion(rng, key.owner, keys, d.mix.idSpace)
		began := time.Now()
		if _, ok := d.x.do(ctx, call{method: http.MethodPost, url: url, body: singleBody(key.Token, q), what: "decision"}, wantDecision(q.allow)); ok {
			d.x.tally.latency(time.Since(began))
		}
		d.x.tally.add(func(c *counts) { c.decisions++ })
	}
}

// badKey sends a decision with a malformed or an unknown key.
func (d *decisionLoad) badKey(ctx context.Context, rng *mrand.Rand, n int) {
	token := fmt.Sprintf("pk_not-a-key-%d", rng.IntN(1_000_000))
	if rng.IntN(2) == 0 {
		token = unknownToken()
	}
	addr := noisyAddress
	if n%noisyEvery != 0 {
		i := rng.IntN(badAddresses)
		addr = fmt.Sprintf("10.20.%d.%d", i/256, i%256)
	}
	q := newQuestion(rng, 0, 1, d.mix.idSpace)
	d.x.do(ctx, call{method: http.MethodPost, url: d.base + "/v1/authorize", body: singleBody(token, q),
		header: map[string]string{"X-Forwarded-For": addr}, what: "decision with a bad key"}, wantRefusal(authz.KeyInvalid, true))
	d.x.tally.add(func(c *counts) { c.badKeys++ })
}

// unknownToken is a token of keygate's format that no key has.
func unknownToken() string {
	token, err := authz.NewToken(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return token
}

// forwardCall is a forward-auth request for q, as Traefik sends one; from,
// when set, is the client's address.
func forwardCall(base, token string, q question, from string) call {
	h := map[string]string{
		"Authorization":      "Bearer " + token,
		"X-Forwarded-Method": q.kind.methods[q.action],
		"X-Forwarded-Uri":    q.kind.path + q.id,
	}
	if from != "" {
		h["X-Forwarded-For"] = from
	}
	return call{method: http.MethodGet, url: base + "/v1/forward-auth", header: h, what: "forward auth"}
}
