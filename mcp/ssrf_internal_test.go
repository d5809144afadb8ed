package mcp

import (
	"net/http"
	"testing"
)

// TestDefaultTransport_NoProxy: a proxy from the environment would be all
// the dial guard sees, so the upstream transport uses none.
func TestDefaultTransport_NoProxy(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	tr, ok := defaultTransport(nil).(*http.Transport)
	if !ok || tr.Proxy != nil || tr.DialContext == nil {
		t.Fatalf("transport %T: proxy set %v, guarded dial %v", tr, ok && tr.Proxy != nil, ok && tr.DialContext != nil)
	}
}
