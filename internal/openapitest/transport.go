package openapitest

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
)

// Transport is an http.RoundTripper that checks every exchange it carries
// against the document, failing the test on any mismatch, and remembers
// which operations it saw. An event stream is passed on as it comes; only
// its status and headers are checked.
type Transport struct {
	t        testing.TB
	contract *Contract
	next     http.RoundTripper

	mu   sync.Mutex
	seen map[string]bool
}

// NewTransport wraps next (http.DefaultTransport when nil).
func NewTransport(t testing.TB, next http.RoundTripper) *Transport {
	t.Helper()
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &Transport{t: t, contract: c, next: next, seen: map[string]bool{}}
}

// Client is an http.Client on a new Transport.
func Client(t testing.TB) *http.Client {
	t.Helper()
	return &http.Client{Transport: NewTransport(t, nil)}
}

// RoundTrip sends the request and checks the exchange.
func (tr *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	res, err := tr.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	ex := Exchange{Request: req, Body: body, Status: res.StatusCode, Header: res.Header}
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt == "text/event-stream" {
		ex.SkipResponseBody = true
	} else {
		data, err := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if err != nil {
			return nil, err
		}
		ex.ResponseBody = data
		res.Body = io.NopCloser(bytes.NewReader(data))
	}
	op, err := tr.contract.Check(ex)
	if err != nil {
		tr.t.Errorf("OpenAPI: %s %s → %d: %v\nanswer: %.600s", req.Method, req.URL.RequestURI(), res.StatusCode, err, ex.ResponseBody)
	}
	if op != "" {
		tr.mu.Lock()
		tr.seen[op] = true
		tr.mu.Unlock()
	}
	return res, nil
}

// Seen lists the operation ids of the exchanges carried so far, sorted.
func (tr *Transport) Seen() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for op := range tr.seen {
		out = append(out, op)
	}
	slices.Sort(out)
	return out
}

// Proxy serves, until the test ends, a reverse proxy to target that checks
// every exchange through it, for programs whose HTTP client a test cannot
// reach (the command line). It returns the proxy's URL.
func Proxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = NewTransport(t, nil)
	rp.FlushInterval = -1 // event streams pass at once
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.URL
}
