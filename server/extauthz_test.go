package server_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/app"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/storage/storagetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// extAuthzClient serves the harness's ext_authz on an in-memory connection
// and returns a client of it, on go-control-plane's types as Envoy uses them.
func extAuthzClient(t *testing.T, h *harness) authv3.AuthorizationClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, h.srv.ExtAuthz())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// checkRequest is what Envoy sends about a request from 192.0.2.7.
func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Headers: headers}},
	}}
}

func headerValues(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			m["append:"+o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

// TestExtAuthzCheck: Envoy's Check is answered as forward auth answers:
// allowed with the identity for the upstream and without the key; refused
// with the HTTP status, headers and problem Envoy sends the client.
func TestExtAuthzCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, storagetest.MustOpenSQLite(t), func(c *app.Config) { c.AuthFailureBurst = 4 })
	keyID, token := h.createKey(h.jwt("t1", "alice"), "envoy", forwardScope)
	client := extAuthzClient(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	check := func(method, path string, headers map[string]string) *authv3.CheckResponse {
		t.Helper()
		res, err := client.Check(ctx, checkRequest(method, path, headers))
		if err != nil {
			t.Fatalf("Check %s %s: %v", method, path, err)
		}
		return res
	}

	for _, tc := range []struct {
		note    string
		headers map[string]string
		remove  string
	}{
		{"bearer", map[string]string{"authorization": "Bearer " + token, "x-request-id": "req-1"}, "authorization"},
		{"X-API-Key", map[string]string{"x-api-key": token}, "x-api-key"},
	} {
		res := check("POST", "/agents/a1/run?x=1", tc.headers)
		ok := res.GetOkResponse()
		got := headerValues(ok.GetHeaders())
		if res.GetStatus().GetCode() != int32(codes.OK) || got["x-keygate-key-id"] != keyID || got["x-keygate-tenant-id"] != "t1" ||
			got["x-keygate-user-id"] != "alice" || !authz.ValidID(got["x-keygate-decision-id"]) || len(got) != 4 {
			t.Fatalf("%s: status %v, headers %v; want OK and the key's identity, overwriting", tc.note, res.GetStatus(), got)
		}
		if rm := ok.GetHeadersToRemove(); len(rm) != 1 || rm[0] != tc.remove {
			t.Fatalf("%s: headers to remove %v, want the key's (%s)", tc.note, rm, tc.remove)
		}
	}

	// Headers as Envoy sends them with encode_raw_headers.
	raw := checkRequest("GET", "/vector-stores/docs", nil)
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer " + token)}}}
	if res, err := client.Check(ctx, raw); err != nil || res.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("raw headers: %v, %v", res.GetStatus(), err)
	}

	for _, tc := range []struct {
		note, method, path string
		headers            map[string]string
		status             typev3.StatusCode
		code               codes.Code
		problem            string
	}{
		{"denied by the scope", "GET", "/agents/a2", map[string]string{"authorization": "Bearer " + token}, typev3.StatusCode_Forbidden, codes.PermissionDenied, "forbidden"},
		{"not mapped", "PATCH", "/flows/report-x", map[string]string{"authorization": "Bearer " + token}, typev3.StatusCode_Forbidden, codes.PermissionDenied, "forbidden"},
		{"a dot segment", "GET", "/agents/a1/../a2", map[string]string{"authorization": "Bearer " + token}, typev3.StatusCode_Forbidden, codes.PermissionDenied, "forbidden"},
		{"no key", "GET", "/agents/a1", map[string]string{}, typev3.StatusCode_Unauthorized, codes.Unauthenticated, "unauthorized"},
		{"malformed key", "GET", "/agents/a1", map[string]string{"x-api-key": "pk_nope"}, typev3.StatusCode_Unauthorized, codes.Unauthenticated, authz.KeyInvalid},
	} {
		res := check(tc.method, tc.path, tc.headers)
		d := res.GetDeniedResponse()
		got := headerValues(d.GetHeaders())
		var p server.Problem
		if err := json.Unmarshal([]byte(d.GetBody()), &p); err != nil {
			t.Fatalf("%s: body %q: %v", tc.note, d.GetBody(), err)
		}
		if d.GetStatus().GetCode() != tc.status || res.GetStatus().GetCode() != int32(tc.code) || p.Code != tc.problem ||
			got["content-type"] != "application/problem+json" || p.RequestID == "" || res.GetOkResponse() != nil {
			t.Fatalf("%s: HTTP %v, gRPC %v, problem %+v, headers %v", tc.note, d.GetStatus(), res.GetStatus(), p, got)
		}
		if (tc.status == typev3.StatusCode_Unauthorized) != (got["www-authenticate"] != "") {
			t.Fatalf("%s: WWW-Authenticate %q", tc.note, got["www-authenticate"])
		}
	}

	// The failed-authentication budget is kept per address Envoy names:
	// the malformed key above and three more spend 192.0.2.7's four (a
	// request without a key costs nothing).
	for range 3 {
		check("GET", "/agents/a1", map[string]string{"x-api-key": "pk_nope"})
	}
	res := check("GET", "/agents/a1", map[string]string{"x-api-key": "pk_nope"})
	d := res.GetDeniedResponse()
	if d.GetStatus().GetCode() != typev3.StatusCode_TooManyRequests || res.GetStatus().GetCode() != int32(codes.ResourceExhausted) ||
		headerValues(d.GetHeaders())["retry-after"] == "" {
		t.Fatalf("over budget: HTTP %v, gRPC %v, headers %v", d.GetStatus(), res.GetStatus(), headerValues(d.GetHeaders()))
	}
	if res := check("GET", "/agents/a1", map[string]string{"x-api-key": token}); res.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("a live key from the address over budget: %v", res.GetStatus())
	}
}
