package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync/atomic"
)

// DefaultMaxResponseBytes bounds one upstream answer unless
// Options.MaxResponseBytes says otherwise.
const DefaultMaxResponseBytes = 10 << 20

// maxErrorBody bounds the body of an upstream's error status, which the
// SDK reads only to look for a JSON-RPC error in it.
const maxErrorBody = 64 << 10

// ErrResponseTooLarge is an upstream answer longer than the gateway's
// bound (KEYGATE_MCP_MAX_RESPONSE_BYTES).
var ErrResponseTooLarge = errors.New("upstream answer too large")

// sizeProbe tells a caller that an answer to its request was cut: the SDK
// reports a cut event stream only as "request terminated without
// response", so the transport marks the probe the request's context
// carries.
type sizeProbe struct{ tripped atomic.Bool }

type probeKey struct{}

func withSizeProbe(ctx context.Context) (context.Context, *sizeProbe) {
	p := &sizeProbe{}
	return context.WithValue(ctx, probeKey{}, p), p
}

func (p *sizeProbe) Tripped() bool { return p != nil && p.tripped.Load() }

func trip(ctx context.Context) {
	if p, ok := ctx.Value(probeKey{}).(*sizeProbe); ok {
		p.tripped.Store(true)
	}
}

// limitTransport bounds every answer to a POST (every JSON-RPC request
// the gateway sends upstream) to max bytes: a JSON answer is read here, up
// to max, and refused beyond it, so the SDK never buffers more; an event
// stream is cut once it has carried max bytes in all. Nothing is retried:
// the tool has run, and the answer is thrown away. An error status's body
// is cut at 64 KiB. The standalone event stream (GET) lives as long as
// the session; the SDK's per-event bound (MaxEventSize) holds it.
//
// Memory per call stays a small multiple of max: this buffer, the SDK's
// copy and its decoding.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil || r.Method != http.MethodPost {
		return resp, err
	}
	tooLarge := func() (*http.Response, error) {
		_ = resp.Body.Close()
		trip(r.Context())
		return nil, t.tooLarge()
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxErrorBody), resp.Body}
		return resp, nil
	}
	if resp.ContentLength > t.max {
		return tooLarge()
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "text/event-stream" {
		resp.Body = &capReader{rc: resp.Body, left: t.max, ctx: r.Context(), err: t.tooLarge()}
		return resp, nil
	}
	buf, err := readBounded(resp.Body, t.max)
	if errors.Is(err, errOverBound) {
		return tooLarge()
	}
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(buf)), int64(len(buf))
	return resp, nil
}

var errOverBound = errors.New("over the bound")

// readBounded reads r whole, up to max bytes, in chunks, so an answer
// found too large costs no more than max: growing one buffer by appending
// would allocate several times that before the end.
func readBounded(r io.Reader, max int64) ([]byte, error) {
	const chunk = 64 << 10
	var chunks [][]byte
	var n int64
	for {
		c := make([]byte, chunk)
		m, err := io.ReadFull(r, c)
		if m > 0 {
			chunks = append(chunks, c[:m])
			n += int64(m)
		}
		if n > max {
			return nil, errOverBound
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return bytes.Join(chunks, nil), nil
}

func (t *limitTransport) tooLarge() error { return &tooLargeError{max: t.max} }

// tooLargeReason says why an answer was dropped, naming the setting that
// bounds it; false when err is not about an answer's size.
func tooLargeReason(err error) (string, bool) {
	var tle *tooLargeError
	if !errors.As(err, &tle) {
		return "", false
	}
	return fmt.Sprintf("the upstream's answer is larger than %d bytes (KEYGATE_MCP_MAX_RESPONSE_BYTES)", tle.max), true
}

// tooLargeError is ErrResponseTooLarge with the bound that was passed.
type tooLargeError struct{ max int64 }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("%s: more than %d bytes (KEYGATE_MCP_MAX_RESPONSE_BYTES)", ErrResponseTooLarge, e.max)
}

func (e *tooLargeError) Is(target error) bool { return target == ErrResponseTooLarge }

// capReader ends an event stream with err once it has carried its bound.
type capReader struct {
	rc   io.ReadCloser
	left int64
	ctx  context.Context
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var one [1]byte // exactly the bound, then the end, is within it
		if n, err := c.rc.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		trip(c.ctx)
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *capReader) Close() error { return c.rc.Close() }
