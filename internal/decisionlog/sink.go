// Package decisionlog holds the sinks of keygate's decision log: the
// console, an append-only file and an HTTP collector. authz.DecisionLogWriter
// builds, masks, batches and encodes the events; a sink only carries them.
package decisionlog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/authz"
)

// Config is where decision logs go: KEYGATE_DECISION_LOG.
type Config struct {
	Kind string // "console", "file" or "http"
	Path string // file: the file
	URL  string // http: the collector
}

// Parse reads KEYGATE_DECISION_LOG: "" or "off", "console", "file:PATH",
// "http:URL" (or a bare http:// or https:// URL). The zero Config is off.
func Parse(s string) (Config, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || s == "off":
		return Config{}, nil
	case s == "console":
		return Config{Kind: "console"}, nil
	case strings.HasPrefix(s, "file:"):
		p := strings.TrimPrefix(s, "file:")
		if p == "" {
			return Config{}, errors.New("KEYGATE_DECISION_LOG=file:PATH needs a path")
		}
		return Config{Kind: "file", Path: p}, nil
	case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
		return parseHTTP(s)
	case strings.HasPrefix(s, "http:"):
		return parseHTTP(strings.TrimPrefix(s, "http:"))
	}
	return Config{}, fmt.Errorf("KEYGATE_DECISION_LOG must be console, file:PATH or http:URL, got %q", s)
}

func parseHTTP(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Config{}, fmt.Errorf("KEYGATE_DECISION_LOG=http:URL needs an absolute http or https URL, got %q", redactURL(raw))
	}
	return Config{Kind: "http", URL: u.String()}, nil
}

// redactURL drops credentials and the query from a URL for a message.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}

// Options tune the sinks.
type Options struct {
	Stdout  io.Writer     // the console; nil: os.Stdout
	Gzip    bool          // the HTTP sink compresses its posts
	Timeout time.Duration // one HTTP post; 10s
	Retries int           // HTTP posts after the first that failed; 2
	Client  *http.Client  // nil: one with Timeout
}

// Open opens the sink cfg names.
func Open(cfg Config, opts Options) (authz.DecisionLogSink, error) {
	switch cfg.Kind {
	case "console":
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		return &lineSink{w: w, typ: true}, nil
	case "file":
		f, err := os.OpenFile(cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open the decision log (KEYGATE_DECISION_LOG): %w", err)
		}
		// A file made earlier with looser permissions is tightened: decisions
		// name keys, tenants and resources.
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("decision log %s (KEYGATE_DECISION_LOG): %w", cfg.Path, err)
		}
		return &lineSink{w: f, closer: f}, nil
	case "http":
		return newHTTPSink(cfg.URL, opts), nil
	}
	return nil, fmt.Errorf("no decision log sink %q", cfg.Kind)
}

// lineSink writes one JSON object a line. The console's lines carry OPA's
// event type, as OPA's console logger does.
type lineSink struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	typ    bool
}

var consoleType = []byte(`{"type":"openpolicyagent.org/decision_logs",`)

func (s *lineSink) WriteDecisions(_ context.Context, events []json.RawMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A bufio.Writer keeps its first error and returns it from Flush.
	bw := bufio.NewWriterSize(s.w, 64<<10)
	for _, ev := range events {
		if s.typ && len(ev) > 1 && ev[0] == '{' {
			_, _ = bw.Write(consoleType)
			ev = ev[1:]
		}
		_, _ = bw.Write(ev)
		_ = bw.WriteByte('\n')
	}
	return bw.Flush()
}

func (s *lineSink) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// httpSink posts each batch as a JSON array, as OPA posts to its decision
// log service, gzip-compressed when asked; a failed post is tried again
// with backoff, a bounded number of times.
type httpSink struct {
	url     string
	client  *http.Client
	gzip    bool
	timeout time.Duration
	retries int
}

func newHTTPSink(u string, opts Options) *httpSink {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	} else if opts.Retries == 0 {
		opts.Retries = 2
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: opts.Timeout}
	}
	return &httpSink{url: u, client: client, gzip: opts.Gzip, timeout: opts.Timeout, retries: opts.Retries}
}

func (s *httpSink) WriteDecisions(ctx context.Context, events []json.RawMessage) error {
	body, err := jsonArray(events, s.gzip)
	if err != nil {
		return err
	}
	for attempt := 0; attempt <= s.retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt*attempt) * 200 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err = s.post(ctx, body); err == nil {
			return nil
		}
	}
	return err
}

// jsonArray is events as one JSON array, gzip-compressed when asked.
func jsonArray(events []json.RawMessage, compress bool) ([]byte, error) {
	size := 2
	for _, ev := range events {
		size += len(ev) + 1
	}
	raw := make([]byte, 0, size)
	raw = append(raw, '[')
	for i, ev := range events {
		if i > 0 {
			raw = append(raw, ',')
		}
		raw = append(raw, ev...)
	}
	raw = append(raw, ']')
	if !compress {
		return raw, nil
	}
	var buf bytes.Buffer
	// The fastest level: logs compress well at any level, and a post is
	// made for every batch of decisions.
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (s *httpSink) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := s.client.Do(req)
	if err != nil {
		// The error may quote the URL, which may carry a credential.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("post decision logs to %s: %w", redactURL(s.url), uerr.Err)
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	_ = res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("post decision logs to %s: HTTP %d", redactURL(s.url), res.StatusCode)
	}
	return nil
}

func (s *httpSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
