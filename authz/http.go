package authz

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Bounds on a request a gateway forwards (forward auth, Envoy ext_authz).
const (
	MaxHTTPURILen    = 8192 // bytes of the forwarded URI, query included
	MaxHTTPMethodLen = 32
	MaxHTTPSegments  = 64 // path segments
)

// HTTPRequest is a request a gateway asks about before it forwards it:
// the policy data.keygate.http.decision says which check it means.
type HTTPRequest struct {
	Method string
	// URI is the request target as the gateway saw it: the path, with its
	// query (ignored) or in absolute form (http://host/path).
	URI string
	// Refused, when set, is why the surface could not tell which request
	// the gateway forwards (two headers naming different ones, say): the
	// request is denied with it once the key is known.
	Refused string
}

// HTTPMapping is what the http policy made of a request: the check it
// means, or, when it means none, the reasons it is denied.
type HTTPMapping struct {
	Check   *Check
	Reasons []string
}

// httpInput is a forwarded request as the http policy reads it: the method
// and the path, decoded, with its segments.
type httpInput struct {
	method   string
	path     string
	segments []string
}

// parseHTTPRequest checks and decodes a forwarded request, or says why it
// is refused. The path is refused rather than guessed at wherever the
// server behind the gateway might read it otherwise than keygate: dot
// segments, an encoded slash or backslash, control characters and invalid
// escapes never reach the policy, so "/agents/a1/..%2Fb2" cannot be allowed
// as agent a1 and served as agent b2.
func parseHTTPRequest(r HTTPRequest) (httpInput, string) {
	if r.Refused != "" {
		return httpInput{}, r.Refused
	}
	if msg := validMethod(r.Method); msg != "" {
		return httpInput{}, msg
	}
	if len(r.URI) > MaxHTTPURILen {
		return httpInput{}, "the forwarded URI is over 8192 bytes"
	}
	raw := r.URI
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if !strings.HasPrefix(raw, "/") {
		rest, ok := cutScheme(raw)
		if !ok {
			return httpInput{}, "the forwarded URI is neither a path nor an http(s) URL"
		}
		raw = "/"
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			raw = rest[i:]
		}
	}
	parts := strings.Split(raw[1:], "/")
	if len(parts) > MaxHTTPSegments {
		return httpInput{}, "the forwarded path has more than 64 segments"
	}
	for i, p := range parts {
		seg, err := url.PathUnescape(p)
		switch {
		case err != nil:
			return httpInput{}, "the forwarded path holds an invalid percent escape"
		case strings.ContainsAny(seg, `/\`):
			return httpInput{}, "the forwarded path holds an encoded slash or a backslash"
		case seg == "." || seg == "..":
			return httpInput{}, "the forwarded path holds a dot segment"
		case !utf8.ValidString(seg) || strings.IndexFunc(seg, isControlOrBidi) >= 0:
			return httpInput{}, "the forwarded path holds invalid UTF-8, control or bidirectional formatting characters"
		}
		parts[i] = seg
	}
	return httpInput{method: r.Method, path: "/" + strings.Join(parts, "/"), segments: parts}, ""
}

// cutScheme returns what follows "http://" or "https://" in s.
func cutScheme(s string) (string, bool) {
	for _, scheme := range []string{"http://", "https://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return s[len(scheme):], true
		}
	}
	return "", false
}

// validMethod checks an HTTP method: a token (RFC 9110) of at most
// MaxHTTPMethodLen bytes. Methods are case-sensitive; the policy decides
// what each means.
func validMethod(m string) string {
	if m == "" || len(m) > MaxHTTPMethodLen {
		return "the forwarded method must be 1 to 32 bytes"
	}
	for i := 0; i < len(m); i++ {
		if !isTokenChar(m[i]) {
			return "the forwarded method is not an HTTP token"
		}
	}
	return ""
}

func isTokenChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
