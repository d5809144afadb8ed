package client

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fake answers each attempt with the next of answers (the last repeats);
// an answer of 0 drops the connection.
type fake struct {
	statuses []int
	header   http.Header
	body     string
	attempts atomic.Int32
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(f.attempts.Add(1)) - 1
	status := f.statuses[min(n, len(f.statuses)-1)]
	if status == 0 {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
		return
	}
	for k, v := range f.header {
		w.Header()[k] = v
	}
	if status >= 400 && f.body == "" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"type":"urn:keygate:problem:x","title":"t","status":` + strconv.Itoa(status) + `,"detail":"why","code":"x","request_id":"r1"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(cmp.Or(f.body, `{"status":"ok","version":"v"}`)))
}

// newFake serves f and returns a client of it whose waits are recorded.
func newFake(t *testing.T, f *fake) (*Client, *[]time.Duration) {
	t.Helper()
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	c, err := New(ts.URL, WithToken("jwt"))
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return c, &waits
}

// TestRetries: calls that may be sent again are, after a failure that may
// pass; others are sent once.
func TestRetries(t *testing.T) {
	t.Parallel()
	authorize := func(c *Client) error {
		_, err := c.Authorize(context.Background(), AuthorizeRequest{APIKey: "pk_x", Resource: Resource{Type: "flow", ID: "f"}, Action: "read"})
		return err
	}
	get := func(c *Client) error { _, err := c.Health(context.Background()); return err }
	for _, tc := range []struct {
		note     string
		statuses []int
		header   http.Header
		call     func(*Client) error
		attempts int32
		waits    []time.Duration // exact waits; nil: as many backoffs as retries
		status   int             // of the *Error returned; 0: success
	}{
		{"GET after 503s", []int{503, 503, 200}, nil, get, 3, nil, 0},
		{"GET after a dropped connection", []int{0, 200}, nil, get, 2, nil, 0},
		{"GET gives up after 4 attempts", []int{502}, nil, get, 4, nil, 502},
		{"Retry-After is waited for", []int{429, 200}, http.Header{"Retry-After": {"7"}}, get, 2, []time.Duration{7 * time.Second}, 0},
		{"a Retry-After too long is not", []int{429}, http.Header{"Retry-After": {"120"}}, get, 1, []time.Duration{}, 429},
		{"400 is not retried", []int{400}, nil, get, 1, []time.Duration{}, 400},
		{"500 is not retried", []int{500}, nil, get, 1, []time.Duration{}, 500},
		{"authorize decides, so it is retried", []int{503, 200}, nil, authorize, 2, nil, 0},
		{"a create is sent once", []int{503}, nil, func(c *Client) error {
			_, err := c.CreateKey(context.Background(), CreateKeyRequest{Name: "k"})
			return err
		}, 1, []time.Duration{}, 503},
		{"a create is sent once, even when the connection drops", []int{0, 201}, nil, func(c *Client) error {
			_, err := c.CreateKey(context.Background(), CreateKeyRequest{Name: "k"})
			return err
		}, 1, []time.Duration{}, -1},
		{"a PATCH is sent once", []int{503}, nil, func(c *Client) error {
			_, err := c.DisableKey(context.Background(), "k1")
			return err
		}, 1, []time.Duration{}, 503},
		{"a sync is sent once", []int{503}, nil, func(c *Client) error {
			_, err := c.SyncMCPServer(context.Background(), "s1")
			return err
		}, 1, []time.Duration{}, 503},
		{"PUT is retried", []int{503, 200}, nil, func(c *Client) error {
			_, err := c.PutScopeCeiling(context.Background(), "u", Scope{})
			return err
		}, 2, nil, 0},
		{"a DELETE whose answer was lost and then 404s succeeded", []int{0, 404}, nil, func(c *Client) error {
			return c.DeleteKey(context.Background(), "k1")
		}, 2, nil, 0},
		{"a DELETE that 404s at once did not", []int{404}, nil, func(c *Client) error {
			return c.DeleteKey(context.Background(), "k1")
		}, 1, []time.Duration{}, 404},
		{"the readiness probe is asked once", []int{503}, nil, func(c *Client) error {
			_, err := c.Ready(context.Background())
			return err
		}, 1, []time.Duration{}, 503},
	} {
		f := &fake{statuses: tc.statuses, header: tc.header}
		c, waits := newFake(t, f)
		err := tc.call(c)
		if got := f.attempts.Load(); got != tc.attempts {
			t.Errorf("%s: %d attempts, want %d", tc.note, got, tc.attempts)
		}
		if tc.waits != nil && !slices.Equal(*waits, tc.waits) {
			t.Errorf("%s: waited %v, want %v", tc.note, *waits, tc.waits)
		}
		if tc.waits == nil && len(*waits) != int(tc.attempts)-1 {
			t.Errorf("%s: waited %v, want a backoff before each retry", tc.note, *waits)
		}
		var e *Error
		switch {
		case tc.status == 0 && err != nil:
			t.Errorf("%s: %v", tc.note, err)
		case tc.status == -1 && (err == nil || errors.As(err, &e)):
			t.Errorf("%s: %v, want the network error", tc.note, err)
		case tc.status > 0 && (!errors.As(err, &e) || e.Status != tc.status):
			t.Errorf("%s: %v, want a %d", tc.note, err, tc.status)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := DefaultRetry
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 5: 1600 * time.Millisecond, 9: 2 * time.Second, 60: 2 * time.Second} {
		for range 50 {
			if d := r.backoff(attempt); d < want/2 || d > want {
				t.Fatalf("backoff after attempt %d: %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		"0":                             0,
		"-4":                            0,
		"soon":                          0,
		"Wed, 25 Nov 2026 12:00:10 GMT": 10 * time.Second,
		"Wed, 25 Nov 2026 11:00:00 GMT": 0,
		"99999999":                      24 * time.Hour,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

// TestErrors: a problem document fills the error; another answer is kept
// short and printable.
func TestErrors(t *testing.T) {
	t.Parallel()
	h := http.Header{"Content-Type": {"application/problem+json"}, "X-Request-Id": {"h1"}, "Retry-After": {"2"}}
	e := newError(409, h, []byte(`{"type":"urn:keygate:problem:conflict","title":"Conflict","status":409,"detail":"the name is taken","code":"conflict","request_id":"r1","existing_id":"k1","errors":[{"field":"name","message":"is taken"}]}`))
	if e.Code != CodeConflict || e.ExistingID != "k1" || e.RequestID != "r1" || e.RetryAfter != 2*time.Second || len(e.Fields) != 1 {
		t.Fatalf("%+v", e)
	}
	if msg := e.Error(); msg != "keygate: 409 conflict: the name is taken (existing id k1) (request r1)" {
		t.Fatalf("%q", msg)
	}
	e = newError(502, http.Header{"Content-Type": {"text/html"}, "X-Request-Id": {"h1"}}, []byte("<html>\n"+strings.Repeat("x", 500)))
	if e.Code != "" || e.RequestID != "h1" || len(e.Detail) > 210 || strings.Contains(e.Detail, "\n") || !e.Retryable() {
		t.Fatalf("%+v", e)
	}
}

// TestAnswerBound: an answer over MaxAnswerBytes is refused, not read.
func TestAnswerBound(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat(" ", 1<<20))
		for range MaxAnswerBytes>>20 + 1 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(ts.Close)
	c, err := New(ts.URL, WithRetry(Retry{Attempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("%v, want the answer refused", err)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "127.0.0.1:8080", "ftp://h", "http://user:pw@h", "http://h/?q=1", "http://h/#f"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) must be refused", u)
		}
	}
	c, err := New("https://keygate.internal/prefix/")
	if err != nil || c.base != "https://keygate.internal/prefix" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := c.GetKey(context.Background(), ""); !errors.Is(err, errEmptyID) {
		t.Fatalf("an empty id is refused before any request: %v", err)
	}
}
