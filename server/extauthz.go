package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/keygate/keygate/authz"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// extAuthz answers Envoy's ext_authz over gRPC
// (envoy.service.auth.v3.Authorization/Check) as /v1/forward-auth answers
// over HTTP: the same mapping, the same decision, the same refusals.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	s      *Server
	logger *slog.Logger
}

// ExtAuthz is the ext_authz service to register on a gRPC server
// (authv3.RegisterAuthorizationServer).
func (s *Server) ExtAuthz() authv3.AuthorizationServer {
	return &extAuthz{s: s, logger: s.logger}
}

// Check decides the request Envoy describes. Every outcome is an answer,
// never a gRPC error: Envoy would turn an error into its own status.
func (x *extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := checkHeaders(h)
	id := headers["x-request-id"]
	if !saneRequestID(id) {
		id = newRequestID()
	}
	info := authz.RequestInfo{UserAgent: authz.Truncate(headers["user-agent"], 256), RequestID: id}
	if ip, err := netip.ParseAddr(attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()); err == nil {
		info.IP = ip.Unmap().String()
	}
	ctx = authz.NewContextWithRequestInfo(ctx, info)
	token, from := bearerCredential(headers["authorization"]), "authorization"
	if token == "" {
		token, from = strings.TrimSpace(headers["x-api-key"]), "x-api-key"
	}
	a := x.s.decideForwarded(ctx, x.logger.With(slog.String("request_id", id)), token,
		authz.HTTPRequest{Method: h.GetMethod(), URI: h.GetPath()}, authz.SourceGRPC, id)
	if a.status == http.StatusOK {
		ok := &authv3.OkHttpResponse{HeadersToRemove: []string{from}} // the key goes no further
		for _, kv := range a.upstream {
			ok.Headers = append(ok.Headers, headerOption(kv))
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}, nil
	}
	body, err := json.Marshal(a.problem)
	if err != nil {
		return nil, err
	}
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(a.status)},
		Headers: []*corev3.HeaderValueOption{headerOption([2]string{"content-type", problemContentType})},
		Body:    string(body),
	}
	for _, kv := range a.header {
		denied.Headers = append(denied.Headers, headerOption(kv))
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(grpcCode(a.status)), Message: a.problem.Detail},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
	}, nil
}

// checkHeaders are the request's headers by lower-case name: Envoy sends
// them in headers, or in header_map with encode_raw_headers.
func checkHeaders(h *authv3.AttributeContext_HttpRequest) map[string]string {
	if m := h.GetHeaders(); len(m) > 0 {
		return m
	}
	m := map[string]string{}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if v == "" {
			v = string(hv.GetRawValue())
		}
		k := strings.ToLower(hv.GetKey())
		if prev, ok := m[k]; ok {
			v = prev + "," + v // as Envoy joins repeated headers in headers
		}
		m[k] = v
	}
	return m
}

func headerOption(kv [2]string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(kv[0]), Value: kv[1]},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcCode is the status of a Check refused with an HTTP status.
func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}
