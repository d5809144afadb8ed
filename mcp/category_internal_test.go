package mcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

func TestCategory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note string
		err  error
		want string
	}{
		{"blocked address", fmt.Errorf("Post %q: dial tcp 127.0.0.1:5432: %w: 127.0.0.1", "http://x", ErrBlockedAddress), categoryBlocked},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}, "unreachable"},
		{"no such host", &net.DNSError{Err: "no such host", Name: "internal.example", IsNotFound: true}, "unreachable"},
		{"deadline", fmt.Errorf("calling: %w", context.DeadlineExceeded), "timeout"},
		{"forbidden", errors.New(`calling "initialize": sending "initialize": Forbidden`), "http 403"},
		{"bad gateway", errors.New(`rejected by transport: sending "initialize": Bad Gateway`), "http 502"},
		{"html", errors.New(`sending "initialize": unsupported content type "text/html"`), "not an MCP server"},
		{"over the bound", errors.New("rejected by transport: upstream response too large (more than 10485760 bytes)"), "too large"},
		{"an answer, whatever it says", fmt.Errorf("calling: %w", &jsonrpc.Error{Code: -32001, Message: "payload too large; db 10.0.0.5 down"}), "upstream error -32001"},
		{"anything else", errors.New("EOF-ish mystery at 10.0.0.5:22"), "error"},
	} {
		if got := category(tc.err); got != tc.want {
			t.Errorf("%s: category = %q, want %q", tc.note, got, tc.want)
		}
	}
}
