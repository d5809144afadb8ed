// Package client is the Go client of keygate's HTTP API: key management
// (rotation and usage history included), the audit trail, users, tenants
// and scope ceilings, upstream MCP servers and tools, the policy an instance
// serves, decisions (forward auth's too, as a gateway asks), health. It
// imports the standard library only.
//
// Every call takes a context.Context. An answer that is not a success is an
// *Error carrying the RFC 9457 problem: status, code, detail, request id,
// the fields at fault, the id of what holds a taken name, Retry-After.
//
// Calls that may be sent again are retried with backoff when the network
// fails or keygate answers 429, 502, 503 or 504, waiting as long as
// Retry-After says: GET, PUT and DELETE, and POST /v1/authorize, which
// decides and changes no key (a decision sent again after its answer was
// lost counts twice against the key's rate limit and credits). POST and
// PATCH management calls are sent once: a create answered 503 wrote nothing
// and may be sent again by the caller, and one whose answer was lost
// answers 409 with ExistingID; a rotation sent again would replace the
// token the first one returned.
//
// The API is described by the OpenAPI document served at /openapi.json
// (docs/api.md); this package's tests check every call against it.
package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultURL is where `keygate serve` listens by default.
const DefaultURL = "http://127.0.0.1:8080"

// MaxAnswerBytes bounds an answer's body: a page of 100 MCP tools, each up
// to 256 KiB, fits.
const MaxAnswerBytes = 64 << 20

// Client calls one keygate. It is safe for concurrent use.
type Client struct {
	base  string // scheme://host[/prefix], no trailing slash
	token string
	http  *http.Client
	retry Retry
	agent string
	sleep func(ctx context.Context, d time.Duration) error // waits between attempts; tests record instead
}

// Option configures a Client.
type Option func(*Client)

// WithToken sets the management JWT sent as `Authorization: Bearer`.
func WithToken(jwt string) Option { return func(c *Client) { c.token = jwt } }

// WithHTTPClient sets the HTTP client (default: one with a 30 s timeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithRetry sets the retry policy; Retry{Attempts: 1} turns retries off.
func WithRetry(r Retry) Option { return func(c *Client) { c.retry = r } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.agent = ua } }

// New returns a client of the keygate at baseURL, such as DefaultURL or
// https://keygate.internal/prefix.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("keygate: the URL %q must be http(s)://host[:port][/prefix] without credentials, query or fragment", baseURL)
	}
	c := &Client{
		base:  strings.TrimRight(u.String(), "/"),
		http:  &http.Client{Timeout: 30 * time.Second},
		retry: DefaultRetry,
		agent: "keygate-go-client/1",
		sleep: sleep,
	}
	for _, opt := range opts {
		opt(c)
	}
	c.retry = c.retry.withDefaults()
	return c, nil
}

// call is one operation.
type call struct {
	method, path string
	query        url.Values
	body         any
	header       http.Header  // sent besides the client's own
	bearer       string       // instead of the client's token, such as an API key
	anonymous    bool         // send no credential
	idempotent   bool         // may be sent again
	out          any          // the 2xx body is decoded into it; *[]byte takes it raw
	outHeader    *http.Header // a 2xx answer's headers are kept in it
	errOut       any          // an error answer's body is decoded into it too, when it can be
}

// do sends a call, retrying it when it may be, and decodes the answer.
func (c *Client) do(ctx context.Context, cl call) error {
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return fmt.Errorf("keygate: %s %s: %w", cl.method, cl.path, err)
		}
	}
	target := c.base + cl.path
	if len(cl.query) > 0 {
		target += "?" + cl.query.Encode()
	}
	attempts := 1
	if cl.idempotent {
		attempts = c.retry.Attempts
	}
	uncertain := false // an earlier attempt may have been carried out
	for attempt := 1; ; attempt++ {
		status, header, answer, err := c.send(ctx, cl, target, body)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil || attempt >= attempts {
				return fmt.Errorf("keygate: %s %s: %w", cl.method, cl.path, err)
			}
			uncertain = true
			wait = c.retry.backoff(attempt)
		case status >= 200 && status < 300:
			if cl.outHeader != nil {
				*cl.outHeader = header
			}
			return decode(cl, status, answer)
		default:
			e := newError(status, header, answer)
			if cl.errOut != nil {
				_ = json.Unmarshal(answer, cl.errOut)
			}
			if cl.method == http.MethodDelete && status == http.StatusNotFound && uncertain {
				return nil // the attempt whose answer was lost deleted it
			}
			if !e.Retryable() || attempt >= attempts {
				return e
			}
			if wait = e.RetryAfter; wait == 0 {
				wait = c.retry.backoff(attempt)
			} else if wait > c.retry.MaxRetryAfter {
				return e
			}
		}
		if err := c.sleep(ctx, wait); err != nil {
			return fmt.Errorf("keygate: %s %s: %w", cl.method, cl.path, err)
		}
	}
}

// send makes one attempt and reads the whole (bounded) answer.
func (c *Client) send(ctx context.Context, cl call, target string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, target, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for name, values := range cl.header {
		req.Header[name] = values
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", c.agent)
	if bearer := cmp.Or(cl.bearer, c.token); bearer != "" && !cl.anonymous {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer func() { _ = res.Body.Close() }() // everything needed was read
	answer, err := io.ReadAll(io.LimitReader(res.Body, MaxAnswerBytes+1))
	if err != nil {
		return 0, nil, nil, err
	}
	if len(answer) > MaxAnswerBytes {
		return 0, nil, nil, fmt.Errorf("the answer is larger than %d bytes", MaxAnswerBytes)
	}
	return res.StatusCode, res.Header, answer, nil
}

func decode(cl call, status int, answer []byte) error {
	switch out := cl.out.(type) {
	case nil:
		return nil
	case *[]byte:
		*out = answer
		return nil
	default:
		if status == http.StatusNoContent {
			return nil
		}
		if err := json.Unmarshal(answer, out); err != nil {
			return fmt.Errorf("keygate: %s %s: the answer is not the JSON expected: %w", cl.method, cl.path, err)
		}
		return nil
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pathOf joins escaped path segments to a fixed prefix.
func pathOf(prefix string, ids ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, id := range ids {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(id))
	}
	return b.String()
}

// errEmptyID is returned, without a request, for an empty id.
var errEmptyID = errors.New("keygate: an id is required")
