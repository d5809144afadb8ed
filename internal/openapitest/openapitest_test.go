package openapitest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/openapitest"
)

// TestCheck shows that the rules catch drift both ways: an answer the
// document does not describe, and a document stricter than keygate.
func TestCheck(t *testing.T) {
	t.Parallel()
	c, err := openapitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	problem := `{"type":"urn:keygate:problem:not_found","title":"Not Found","status":404,"detail":"no such endpoint","code":"not_found","request_id":"r1"}`
	h := func(kv ...string) http.Header {
		out := http.Header{"X-Request-Id": {"r1"}}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	js := h("Content-Type", "application/json; charset=utf-8")
	allowed := h("Cache-Control", "no-store", "X-Keygate-Key-Id", "k1", "X-Keygate-Tenant-Id", "t1", "X-Keygate-User-Id", "u1",
		"X-Keygate-Decision-Id", "d1", "X-Envoy-Auth-Headers-To-Remove", "authorization")
	for _, tc := range []struct {
		note         string
		method, path string
		auth, body   string
		status       int
		header       http.Header
		answer       string
		op, wantErr  string
	}{
		{"a documented answer", "GET", "/healthz", "", "", 200, js, `{"status":"ok","version":"v1"}`, "health", ""},
		{"a member missing", "GET", "/healthz", "", "", 200, js, `{"status":"ok"}`, "health", "does not match"},
		{"a member the document lacks", "GET", "/healthz", "", "", 200, js, `{"status":"ok","version":"v1","uptime":3}`, "health", "does not match"},
		{"an undocumented status", "GET", "/healthz", "", "", 418, js, `{}`, "health", "status 418 is not documented"},
		{"a required header missing", "GET", "/healthz", "", "", 200, http.Header{"Content-Type": {"application/json"}}, `{"status":"ok","version":"v1"}`, "health", "X-Request-Id"},
		{"an undocumented media type", "GET", "/healthz", "", "", 200, h("Content-Type", "text/html"), `<p>ok</p>`, "health", "does not match"},
		{"a refused request answered 4xx", "GET", "/api/v1/api-keys", "", "", 401,
			h("Content-Type", "application/problem+json", "WWW-Authenticate", `Bearer realm="keygate"`), strings.ReplaceAll(problem, "404", "401"), "listKeys", ""},
		{"a request the document refuses answered 2xx", "GET", "/api/v1/api-keys", "", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"data":[],"next_cursor":null}`, "listKeys", "the document refuses the request"},
		{"an API key where a JWT goes", "GET", "/api/v1/api-keys", "pk_x", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"data":[],"next_cursor":null}`, "listKeys", "the document refuses the request"},
		{"a parameter the document refuses answered 2xx", "GET", "/api/v1/api-keys?limit=0", "x.y.z", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"data":[],"next_cursor":null}`, "listKeys", "the document refuses the request"},
		{"a parameter of the wrong type answered 2xx", "GET", "/api/v1/api-keys?enabled=yes", "x.y.z", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"data":[],"next_cursor":null}`, "listKeys", "the document refuses the request"},
		{"a documented listing", "GET", "/api/v1/api-keys?limit=5&enabled=true", "x.y.z", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"data":[],"next_cursor":null}`, "listKeys", ""},
		{"a header that breaks its schema", "GET", "/api/v1/api-keys", "x.y.z", "", 200,
			h("Content-Type", "application/json", "Cache-Control", "max-age=60"), `{"data":[],"next_cursor":null}`, "listKeys", "Cache-Control"},
		{"a body without a documented one", "DELETE", "/api/v1/api-keys/k1", "x.y.z", "", 204, h(), `{}`, "deleteKey", "no documented body"},
		{"a body the document refuses answered 2xx", "POST", "/v1/authorize", "", `{"api_key":"pk_x","action":"read"}`, 200,
			h("Content-Type", "application/json", "Cache-Control", "no-store"), `{"allowed":false,"code":"KEY_INVALID","reasons":["x"],"decision_id":"d"}`, "authorize", "the document refuses the request"},
		{"an undocumented path answered 404", "GET", "/nope", "", "", 404, h("Content-Type", "application/problem+json"), problem, "", ""},
		{"an undocumented path answered 200", "GET", "/nope", "", "", 200, js, `{}`, "", "not in the document"},
		{"an undocumented method answered 405", "PUT", "/healthz", "", "", 405, h("Content-Type", "application/problem+json"),
			strings.ReplaceAll(strings.ReplaceAll(problem, "404", "405"), `"not_found"`, `"method_not_allowed"`), "", ""},
		{"a path a rest-of-path parameter takes whole", "POST", "/v1/forward-auth/agents/a1/run", "pk_x", "", 200, allowed, "", "forwardAuthPathPost", ""},
		{"the same answer without a header it needs", "POST", "/v1/forward-auth/agents/a1/run", "pk_x", "", 200,
			h("Cache-Control", "no-store"), "", "forwardAuthPathPost", "X-Keygate-Key-Id"},
		{"an answer to HEAD, without its body", "HEAD", "/v1/forward-auth/agents/a1", "pk_x", "", 403,
			h("Content-Type", "application/problem+json"), "", "forwardAuthPathHead", ""},
		{"an undocumented path answered text", "GET", "/nope", "", "", 404, h("Content-Type", "text/plain"), "404 page not found", "", "problem document"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", "Bearer "+tc.auth)
		}
		op, err := c.Check(openapitest.Exchange{Request: req, Body: []byte(tc.body), Status: tc.status, Header: tc.header, ResponseBody: []byte(tc.answer)})
		if op != tc.op {
			t.Errorf("%s: operation %q, want %q", tc.note, op, tc.op)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.note, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", tc.note, err, tc.wantErr)
		}
	}
}
