package openapitest_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/openapitest"
)

func BenchmarkCheckAuthorize(b *testing.B) {
	c, err := openapitest.Load()
	if err != nil {
		b.Fatal(err)
	}
	body := `{"api_key":"pk_x","resource":{"type":"flow","id":"f1"},"action":"read"}`
	answer := []byte(`{"allowed":false,"code":"DENIED","reasons":["flow \"f1\" is not in the key's flow_ids"],"decision_id":"d1","principal":{"type":"api_key","key_id":"k","name":"n","tenant_id":"t","user_id":"u"}}`)
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"r1"}, "Cache-Control": {"no-store"}}
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/authorize", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if _, err := c.Check(openapitest.Exchange{Request: req, Body: []byte(body), Status: 200, Header: h, ResponseBody: answer}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckListKeys(b *testing.B) {
	c, err := openapitest.Load()
	if err != nil {
		b.Fatal(err)
	}
	answer := []byte(`{"data":[],"next_cursor":null}`)
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Request-Id": {"r1"}, "Cache-Control": {"no-store"}}
	for b.Loop() {
		req := httptest.NewRequest("GET", "/api/v1/api-keys?limit=5&user_id=u", nil)
		req.Header.Set("Authorization", "Bearer x.y.z")
		if _, err := c.Check(openapitest.Exchange{Request: req, Status: 200, Header: h, ResponseBody: answer}); err != nil {
			b.Fatal(err)
		}
	}
}
