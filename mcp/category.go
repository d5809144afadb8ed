package mcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Categories of an upstream that could not be reached, as sync_error, the
// audit trail and logs name them. They are short on purpose: a raw dialer
// or HTTP error ("connection refused" on one port, "EOF" on another,
// "Forbidden" from a metadata address) would let whoever reads them map the
// network keygate sits in.
const (
	categoryBlocked     = "unreachable: the address is not public (" + AllowedNetworksSetting + ")"
	categoryUnreachable = "unreachable"
	categoryTimeout     = "timeout"
	categoryTLS         = "tls"
	categoryNotMCP      = "not an MCP server"
	categoryTooLarge    = "too large"
	categoryError       = "error"
)

// notMCPText are the go-sdk's words for an answer that is not the MCP
// protocol (it has no sentinel errors for them).
var notMCPText = []string{
	"unsupported content type", "failed to decode", "invalid message version", "malformed event",
	"unsupported protocol version", "missing session ID", "invalid character",
}

// category names why err kept keygate from an upstream, in one of the
// categories above, "http NNN" for an HTTP error status, or "upstream
// error N" for a JSON-RPC error the upstream answered with (its message is
// never repeated: the upstream may be an internal server, and its words an
// oracle).
func category(err error) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if err == nil {
		return ""
	}
	if rpcErr, ok := upstreamAnswer(err); ok {
		return fmt.Sprintf("upstream error %d", rpcErr.Code)
	}
	switch {
	case strings.Contains(err.Error(), "too large"):
		// The bound on answer sizes says so in its error text, which the
		// go-sdk keeps where it hides the error chain.
		return categoryTooLarge
	case errors.Is(err, ErrBlockedAddress):
		return categoryBlocked
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return categoryTimeout
	case isTLSError(err):
		return categoryTLS
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return categoryUnreachable
	}
	msg := err.Error()
	if code := httpStatusIn(msg); code != 0 {
		return fmt.Sprintf("http %d", code)
	}
	for _, text := range notMCPText {
		if strings.Contains(msg, text) {
			return categoryNotMCP
		}
	}
	return categoryError
}

func isTLSError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	var alert tls.AlertError
	return errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) ||
		errors.As(err, &invalid) || errors.As(err, &recordErr) || errors.As(err, &alert)
}

// httpStatusIn finds the HTTP error status the go-sdk reports only by its
// text (`sending "initialize": Forbidden`), 0 when there is none.
func httpStatusIn(msg string) int {
	for code := 300; code < 600; code++ {
		text := http.StatusText(code)
		if text != "" && (strings.HasSuffix(msg, ": "+text) || strings.Contains(msg, ": "+text+":")) {
			return code
		}
	}
	return 0
}
