package mcp

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/authz"
)

// writeRateLimited answers 429 with Retry-After and the RFC 9457 problem
// keygate's other surfaces answer with.
func writeRateLimited(w http.ResponseWriter, err error, requestID string) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/problem+json")
	wait := authz.ErrorRetryAfter(err)
	h.Set("Retry-After", strconv.FormatInt(max(1, int64((wait+time.Second-1)/time.Second)), 10))
	w.WriteHeader(http.StatusTooManyRequests)
	body, _ := json.Marshal(map[string]any{
		"type":       "urn:keygate:problem:" + authz.ERATELIMIT,
		"title":      http.StatusText(http.StatusTooManyRequests),
		"status":     http.StatusTooManyRequests,
		"detail":     authz.ErrorMessage(err),
		"code":       authz.ERATELIMIT,
		"request_id": requestID,
	})
	_, _ = w.Write(body)
}

// peerIP is the address of the connection's other end.
func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
