package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	mrand "math/rand/v2"

	"github.com/keygate/keygate/authz"
)

// The management churn: every tick a key is created, another changed,
// one rotated when keygate can, the oldest deleted, and the lists read, as
// a platform provisioning its customers' agents does all day. Each step is
// checked with a decision.

// admin calls the management API with the soak tenant's admin JWT.
type admin struct {
	client *http.Client
	base   string
	jwt    string
}

// send makes one management request outside the measured traffic (set-up
// and probes) and decodes an answer of status want into out.
func (a *admin) send(ctx context.Context, method, path string, body any, want int, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.jwt)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return res.StatusCode, err
	}
	if res.StatusCode != want {
		return res.StatusCode, fmt.Errorf("%s %s answered %d, want %d: %.300s", method, path, res.StatusCode, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return res.StatusCode, nil
}

// createKey creates the key owning owner's ids.
func (a *admin) createKey(ctx context.Context, name string, owner int) (soakKey, error) {
	var k soakKey
	if _, err := a.send(ctx, http.MethodPost, "/api/v1/api-keys", map[string]any{"name": name, "permission_scope": keyScope(owner)}, http.StatusCreated, &k); err != nil {
		return k, err
	}
	if !authz.ValidTokenFormat(k.Token) {
		return k, errors.New("create a key: the answer holds no token")
	}
	k.owner = owner
	return k, nil
}

// mgmtCall is a management request of the churn.
func (a *admin) mgmtCall(method, path string, body any, what string) call {
	c := call{method: method, url: a.base + path, header: map[string]string{"Authorization": "Bearer " + a.jwt}, what: what}
	if body != nil {
		c.body = mustJSON(body)
	}
	return c
}

// decodeKey is a check for an answer of status want that holds a key with
// a token, decoded into k.
func decodeKey(want int, k *soakKey) func(answer) error {
	return func(a answer) error {
		if err := statusIs(a, want); err != nil {
			return err
		}
		if err := json.Unmarshal(a.body, k); err != nil || !authz.ValidTokenFormat(k.Token) {
			return fmt.Errorf("no key with a token in %.200s", a.body)
		}
		return nil
	}
}

// churn is the management traffic.
type churn struct {
	x        *exchanger
	admin    *admin
	rotate   bool // keygate has POST /api/v1/api-keys/{id}/rotate
	interval time.Duration
	keep     int // churn keys alive at once; the oldest is deleted past it
	owner    int // owner number of the next key: past every decision key's
	live     []soakKey
	rng      *mrand.Rand
}

// run churns until loop ends, with requests made with req.
func (c *churn) run(loop, req context.Context) {
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-loop.Done():
			return
		case <-tick.C:
		}
		c.tick(req, n)
	}
}

// churnAddress is where the churn's decisions come from: a refused key is
// a failed authentication, which 127.0.0.1 must not be charged with.
func churnAddress(n int) string { return fmt.Sprintf("10.30.%d.%d", n/256%256, n%256) }

func (c *churn) tick(ctx context.Context, n int) {
	from := churnAddress(n)
	count := func() { c.x.tally.add(func(t *counts) { t.management++ }) }

	// A new key, which works at once.
	var k soakKey
	count()
	if _, ok := c.x.do(ctx, c.admin.mgmtCall(http.MethodPost, "/api/v1/api-keys",
		map[string]any{"name": fmt.Sprintf("churn-%d", c.owner), "permission_scope": keyScope(c.owner)}, "create a key"), decodeKey(http.StatusCreated, &k)); ok {
		k.owner = c.owner
		c.live = append(c.live, k)
		c.decide(ctx, k, from, true)
	}
	c.owner++

	// Another disabled, refused, enabled again with a wider scope.
	if len(c.live) > 1 {
		k := c.live[c.rng.IntN(len(c.live)-1)]
		path := "/api/v1/api-keys/" + k.ID
		count()
		if _, ok := c.x.do(ctx, c.admin.mgmtCall(http.MethodPatch, path, map[string]any{"enabled": false}, "disable a key"), wantStatus(http.StatusOK)); ok {
			c.x.do(ctx, c.decision(k, question{kind: &kinds[0], id: fmt.Sprintf("agent-%d-1", k.owner)}, from), wantRefusal(authz.KeyDisabled, false))
		}
		scope := keyScope(k.owner)
		scope.FlowIDs = append(scope.FlowIDs, fmt.Sprintf("extra-flow-%d", n))
		count()
		if _, ok := c.x.do(ctx, c.admin.mgmtCall(http.MethodPatch, path, map[string]any{"enabled": true, "name": fmt.Sprintf("churn-%d-v%d", k.owner, n), "permission_scope": scope}, "change a key"), wantStatus(http.StatusOK)); ok {
			c.x.do(ctx, c.decision(k, question{kind: &kinds[1], id: fmt.Sprintf("extra-flow-%d", n), allow: true}, from), wantDecision(true))
		}
	}

	// One rotated: the new token works.
	if c.rotate && len(c.live) > 0 {
		i := c.rng.IntN(len(c.live))
		var r soakKey
		count()
		if _, ok := c.x.do(ctx, c.admin.mgmtCall(http.MethodPost, "/api/v1/api-keys/"+c.live[i].ID+"/rotate", map[string]any{"grace_period_seconds": 0}, "rotate a key"), decodeKey(http.StatusOK, &r)); ok {
			c.live[i].Token = r.Token
			c.decide(ctx, c.live[i], from, true)
		}
	}

	// The oldest deleted: its token stops working at once.
	if len(c.live) > c.keep {
		old := c.live[0]
		c.live = c.live[1:]
		count()
		if _, ok := c.x.do(ctx, c.admin.mgmtCall(http.MethodDelete, "/api/v1/api-keys/"+old.ID, nil, "delete a key"), wantStatus(http.StatusNoContent)); ok {
			c.x.do(ctx, c.decision(old, question{kind: &kinds[0], id: fmt.Sprintf("agent-%d-1", old.owner)}, from), wantRefusal(authz.KeyInvalid, false))
		}
	}

	// The lists an operator's console reads.
	for _, path := range []string{"/api/v1/api-keys?limit=20", "/api/v1/audit-events?limit=20"} {
		count()
		c.x.do(ctx, c.admin.mgmtCall(http.MethodGet, path, nil, "GET "+path), wantStatus(http.StatusOK))
	}
}

// decide checks that k is allowed (or denied) an id of its own.
func (c *churn) decide(ctx context.Context, k soakKey, from string, allow bool) {
	q := question{kind: &kinds[0], id: fmt.Sprintf("agent-%d-%d", k.owner, c.rng.IntN(100)), allow: allow}
	c.x.do(ctx, c.decision(k, q, from), wantDecision(allow))
}

func (c *churn) decision(k soakKey, q question, from string) call {
	return call{method: http.MethodPost, url: c.admin.base + "/v1/authorize", body: singleBody(k.Token, q),
		header: map[string]string{"X-Forwarded-For": from}, what: "decision of a churned key"}
}

// probeRotation reports whether keygate can rotate a key, trying it on a
// key made for the purpose and deleted after.
func probeRotation(ctx context.Context, a *admin) (bool, error) {
	k, err := a.createKey(ctx, "rotation-probe", 999_999)
	if err != nil {
		return false, err
	}
	status, rerr := a.send(ctx, http.MethodPost, "/api/v1/api-keys/"+k.ID+"/rotate", map[string]any{"grace_period_seconds": 0}, http.StatusOK, nil)
	if _, err := a.send(ctx, http.MethodDelete, "/api/v1/api-keys/"+k.ID, nil, http.StatusNoContent, nil); err != nil {
		return false, err
	}
	switch {
	case rerr == nil:
		return true, nil
	case status == http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("probe key rotation: %w", rerr)
}

// probeForwardAuth reports whether keygate answers /v1/forward-auth: 200
// for an allowed request, 404 when the endpoint is not there.
func probeForwardAuth(ctx context.Context, x *exchanger, base string, k soakKey) (bool, error) {
	c := forwardCall(base, k.Token, question{kind: &kinds[0], id: fmt.Sprintf("agent-%d-1", k.owner), action: 1, allow: true}, "")
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, nil)
	if err != nil {
		return false, err
	}
	for h, v := range c.header {
		req.Header.Set(h, v)
	}
	res, err := x.client.Do(req)
	if err != nil {
		return false, err
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	_ = res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("probe forward auth: GET /v1/forward-auth answered %d: %.300s", res.StatusCode, body)
}
