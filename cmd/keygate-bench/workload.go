package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
)

// The key every decision of the main table is made with lives in this
// tenant, owned by this admin.
const (
	benchTenant = "bench"
	benchUser   = "admin"
	// batchSize is the checks of one batch request, the first batchSize
	// requests of the mix: 100, keygate's maximum.
	batchSize = 100
	// verifyMax bounds how many requests of the mix verify sends to both
	// servers; past the first few hundred, a larger -distinct only
	// changes ids.
	verifyMax = 400
)

// benchScope is a realistic scope: 20 entries in each list, 3 of them
// globs, the globs last, as people append wildcards after naming ids.
func benchScope() authz.Scope {
	list := func(prefix string, globs ...string) []string {
		var ids []string
		for i := range 20 - len(globs) {
			ids = append(ids, fmt.Sprintf("%s-%02d", prefix, i+1))
		}
		return append(ids, globs...)
	}
	return authz.Scope{
		AgentIDs:       list("support-agent", "research-*", "ops-agent-*", "sandbox-*"),
		FlowIDs:        list("report-flow", "triage-*", "nightly-*", "etl-*"),
		MCPToolIDs:     list("slack__tool", "jira__*", "notion__*", "github__*"),
		VectorStoreIDs: list("kb-docs", "kb-tickets-*", "kb-wiki-*", "tmp-*"),
	}
}

// resource and check are the request fields keygate and OPA both receive.
type resource struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	TenantID string `json:"tenant_id,omitempty"`
}

type check struct {
	Resource resource `json:"resource"`
	Action   string   `json:"action"`
}

// mixEntry is one request of the mix and the answer the policy must give.
type mixEntry struct {
	name  string
	check check
	allow bool
}

// requestMix is what every target is driven with, one after the other: an
// exact-id allow, a glob allow (the last glob of its list), a deny that
// scans the whole list and every glob, and a deny on an action the type
// does not support. With distinct > 1 the four repeat with other ids of
// the same kind, distinct of each, so that few requests repeat a decision
// (a decision cache then shows in the figures only as far as it has hits).
// Without denials, only the two allows: keygate then writes no audit event,
// which shows what recording refusals costs.
func requestMix(distinct int, denials bool) []mixEntry {
	mix := make([]mixEntry, 0, 4*distinct)
	for k := range distinct {
		suffix := ""
		if k > 0 {
			suffix = fmt.Sprintf("-%d", k)
		}
		mix = append(mix,
			mixEntry{"exact-id allow", check{resource{Type: "agent", ID: fmt.Sprintf("support-agent-%02d", (10+k)%17+1)}, "execute"}, true},
			mixEntry{"glob allow", check{resource{Type: "mcp_tool", ID: "github__create_issue" + suffix}, "call"}, true})
		if denials {
			mix = append(mix,
				mixEntry{"deny: not in scope", check{resource{Type: "flow", ID: "billing-export" + suffix}, "execute"}, false},
				mixEntry{"deny: unsupported action", check{resource{Type: "vector_store", ID: fmt.Sprintf("kb-docs-%02d", (2+k)%17+1)}, "delete"}, false})
		}
	}
	return mix
}

// createdKey is what POST /api/v1/api-keys answers, the token included.
type createdKey struct {
	ID       string      `json:"id"`
	Token    string      `json:"token"`
	TenantID string      `json:"tenant_id"`
	UserID   string      `json:"user_id"`
	Scope    authz.Scope `json:"permission_scope"`
}

// createKey creates a key over the REST API, as a user would.
func createKey(ctx context.Context, base, jwt, name string, scope authz.Scope) (*createdKey, error) {
	return createKeyWith(ctx, base, jwt, name, scope, nil)
}

// doJSON sends req and decodes a JSON answer of status want into out.
func doJSON(req *http.Request, want int, out any) error {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != want {
		return fmt.Errorf("%s %s answered %d, want %d: %s", req.Method, req.URL.Path, res.StatusCode, want, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the harness's own plain structs are encoded
	}
	return data
}

// keygateBodies are the single-check /v1/authorize bodies of the mix.
func keygateBodies(token string, mix []mixEntry) [][]byte {
	out := make([][]byte, len(mix))
	for i, m := range mix {
		out[i] = keygateBody(token, m.check)
	}
	return out
}

// keygateBody is the single-check /v1/authorize body of c made with token.
func keygateBody(token string, c check) []byte {
	return mustJSON(map[string]any{"api_key": token, "resource": c.Resource, "action": c.Action})
}

// batchBody is one /v1/authorize body holding the first batchSize
// requests of the mix, as a caller would send them one by one.
func batchBody(token string, mix []mixEntry) []byte {
	checks := make([]check, batchSize)
	for i := range checks {
		checks[i] = mix[i%len(mix)].check
	}
	return mustJSON(map[string]any{"api_key": token, "checks": checks})
}

// opaInput is the policy's input as keygate builds it, here built by the
// caller: the key's scope travels in every request.
type opaInput struct {
	Principal opaPrincipal      `json:"principal"`
	Resource  resource          `json:"resource"`
	Action    string            `json:"action"`
	Context   map[string]string `json:"context"`
}

type opaPrincipal struct {
	Type     string      `json:"type"`
	KeyID    string      `json:"key_id"`
	TenantID string      `json:"tenant_id"`
	UserID   string      `json:"user_id"`
	Scope    authz.Scope `json:"scope"`
}

// opaBodies are the bodies of POST /v1/data/keygate/authz/decision for the
// mix, made by key.
func opaBodies(key *createdKey, mix []mixEntry, at time.Time) [][]byte {
	out := make([][]byte, len(mix))
	for i, m := range mix {
		out[i] = opaBody(key, m.check, at)
	}
	return out
}

// opaBody is the body of POST /v1/data/keygate/authz/decision asking c of
// key at a time: the key's scope travels in the input.
func opaBody(key *createdKey, c check, at time.Time) []byte {
	p := opaPrincipal{Type: authz.PrincipalTypeAPIKey, KeyID: key.ID, TenantID: key.TenantID, UserID: key.UserID, Scope: key.Scope}
	in := opaInput{Principal: p, Resource: c.Resource, Action: c.Action, Context: map[string]string{"time": at.UTC().Format(time.RFC3339)}}
	return mustJSON(map[string]any{"input": in})
}

// The answers are checked by looking for the allow flag in the raw bytes,
// which costs the load generator little: verify has already decoded every
// answer of the mix in full and compared keygate's with OPA's.
var (
	keygateAllowed = []byte(`"allowed":true`)
	opaAllowed     = []byte(`"allow":true`)
)

// allowCheck accepts a 200 whose allow flag is the one expected of body i.
func allowCheck(flag []byte, want func(i int) bool) func(i, status int, body []byte) error {
	return func(i, status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", status, body)
		}
		if got := bytes.Contains(body, flag); got != want(i) {
			return fmt.Errorf("request %d: allowed=%v, want %v: %.200s", i, got, want(i), body)
		}
		return nil
	}
}

// mixAllow says what the policy answers request i of a workload cycling
// through mix.
func mixAllow(mix []mixEntry) func(i int) bool {
	return func(i int) bool { return mix[i%len(mix)].allow }
}

// batchCheck accepts a 200 with as many allows as the batch should have.
func batchCheck(mix []mixEntry) func(i, status int, body []byte) error {
	want := 0
	for i := range batchSize {
		if mix[i%len(mix)].allow {
			want++
		}
	}
	return func(_, status int, body []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %.200s", status, body)
		}
		if got := bytes.Count(body, keygateAllowed); got != want {
			return fmt.Errorf("batch: %d allowed, want %d", got, want)
		}
		return nil
	}
}

// statusCheck accepts any 200, for the floor, whose answer is fixed.
func statusCheck(_, status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return nil
}

// verify asks keygate and OPA every request of the mix, and the batch, and
// fails unless both give the expected allow or deny with the same reasons:
// the comparison is only fair if they make the same decisions.
func verify(ctx context.Context, keygateURL, opaURL string, key *createdKey, mix []mixEntry) error {
	sample := mix[:min(len(mix), verifyMax)]
	kg, opa := keygateBodies(key.Token, sample), opaBodies(key, sample, time.Now())
	for i, m := range sample {
		var k struct {
			Allowed bool     `json:"allowed"`
			Code    string   `json:"code"`
			Reasons []string `json:"reasons"`
		}
		if err := post(ctx, keygateURL+"/v1/authorize", kg[i], &k); err != nil {
			return err
		}
		var o struct {
			Result *struct {
				Allow   bool     `json:"allow"`
				Reasons []string `json:"reasons"`
			} `json:"result"`
		}
		if err := post(ctx, opaURL+"/v1/data/keygate/authz/decision", opa[i], &o); err != nil {
			return err
		}
		switch {
		case o.Result == nil:
			return fmt.Errorf("%s: OPA's decision is undefined", m.name)
		case k.Allowed != m.allow || o.Result.Allow != m.allow:
			return fmt.Errorf("%s: keygate allowed=%v (%s), OPA allow=%v, want %v", m.name, k.Allowed, k.Code, o.Result.Allow, m.allow)
		case !slices.Equal(k.Reasons, o.Result.Reasons):
			return fmt.Errorf("%s: keygate's reasons %q differ from OPA's %q", m.name, k.Reasons, o.Result.Reasons)
		}
	}
	var b struct {
		Results []struct {
			Allowed bool     `json:"allowed"`
			Reasons []string `json:"reasons"`
		} `json:"results"`
	}
	if err := post(ctx, keygateURL+"/v1/authorize", batchBody(key.Token, mix), &b); err != nil {
		return err
	}
	if len(b.Results) != batchSize {
		return fmt.Errorf("batch: %d results, want %d", len(b.Results), batchSize)
	}
	for i, r := range b.Results {
		if m := mix[i%len(mix)]; r.Allowed != m.allow {
			return fmt.Errorf("batch check %d (%s): allowed=%v, want %v", i, m.name, r.Allowed, m.allow)
		}
	}
	return nil
}

// post sends a JSON body and decodes a 200 answer into out.
func post(ctx context.Context, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(req, http.StatusOK, out)
}

// describeMix lists the mix for the report.
func describeMix(mix []mixEntry) string {
	var parts []string
	for _, m := range mix[:min(4, len(mix))] {
		parts = append(parts, fmt.Sprintf("%s (`%s` `%s` `%s`)", m.name, m.check.Resource.Type, m.check.Resource.ID, m.check.Action))
	}
	out := strings.Join(parts, ", ")
	if len(mix) > 4 {
		out += fmt.Sprintf("; then the same four kinds with other ids, %d requests before the sequence starts over "+
			"(the exact-id allows and the unsupported-action denies cycle through 17 ids each, the others never repeat)", len(mix))
	}
	return out
}
