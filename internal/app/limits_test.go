package app

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

func TestValidateLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		note    string
		change  func(*Config)
		setting string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"limit off", func(c *Config) { c.AuthFailureBurst, c.AuthFailureRate = 0, 0 }, ""},
		{"keep audit events forever", func(c *Config) { c.AuditRetention = 0 }, ""},
		{"negative burst", func(c *Config) { c.AuthFailureBurst = -1 }, "KEYGATE_AUTH_FAILURE_BURST"},
		{"no refill", func(c *Config) { c.AuthFailureRate = 0 }, "KEYGATE_AUTH_FAILURE_RATE"},
		{"no addresses", func(c *Config) { c.AuthFailureMaxAddresses = 0 }, "KEYGATE_AUTH_FAILURE_MAX_ADDRESSES"},
		{"retention of a minute", func(c *Config) { c.AuditRetention = time.Minute }, "KEYGATE_AUDIT_RETENTION"},
		{"tiny answers", func(c *Config) { c.MCPMaxResponseBytes = 100 }, "KEYGATE_MCP_MAX_RESPONSE_BYTES"},
		{"no sessions", func(c *Config) { c.MCPMaxSessionsPerKey = 0 }, "KEYGATE_MCP_MAX_SESSIONS_PER_KEY"},
		{"total under per key", func(c *Config) { c.MCPMaxSessions = 10 }, "KEYGATE_MCP_MAX_SESSIONS"},
		{"no idle time", func(c *Config) { c.MCPSessionIdleTimeout = 0 }, "KEYGATE_MCP_SESSION_IDLE_TIMEOUT"},
		{"no write time", func(c *Config) { c.HTTPWriteTimeout = 0 }, "KEYGATE_HTTP_WRITE_TIMEOUT"},
		{"no connections", func(c *Config) { c.HTTPMaxConnections = 0 }, "KEYGATE_HTTP_MAX_CONNECTIONS"},
		{"keep usage forever", func(c *Config) { c.UsageRetention = 0 }, ""},
		{"usage kept a minute", func(c *Config) { c.UsageRetention = time.Minute }, "KEYGATE_USAGE_RETENTION"},
		{"no time for Redis", func(c *Config) { c.RedisTimeout = 0 }, "KEYGATE_REDIS_TIMEOUT"},
		{"seconds for Redis", func(c *Config) { c.RedisTimeout = 2 * time.Second }, "KEYGATE_REDIS_TIMEOUT"},
	}
	for _, tc := range tests {
		c := Defaults()
		tc.change(&c)
		err := c.Validate()
		switch {
		case tc.setting == "" && err != nil:
			t.Errorf("%s: %v", tc.note, err)
		case tc.setting != "" && (err == nil || !strings.Contains(err.Error(), tc.setting)):
			t.Errorf("%s: %v, want an error naming %s", tc.note, err, tc.setting)
		}
	}
}

// TestLimitListener: past its cap a connection waits to be accepted until
// one closes.
func TestLimitListener(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := newLimitListener(inner, 1, metricnoop.NewMeterProvider(), "keygate.http.connections", "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	select {
	case <-accepted:
		t.Fatal("a second connection was accepted past the cap of 1")
	case <-time.After(100 * time.Millisecond):
	}
	if ln.open.Load() != 1 {
		t.Fatalf("%d open", ln.open.Load())
	}
	_ = first.Close()
	select {
	case second := <-accepted:
		_ = second.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting connection was not accepted after one closed")
	}
}

// TestServeBoundsSlowClients: Serve applies the settings: a client that
// does not finish its headers in time is disconnected, and past
// HTTPMaxConnections a connection waits until one closes.
func TestServeBoundsSlowClients(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.JWTSecret = "limits-test-secret-of-at-least-32-bytes"
	cfg.HTTPReadHeaderTimeout = 200 * time.Millisecond
	cfg.HTTPMaxConnections = 1
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		_ = a.Close(context.Background())
	})

	slow, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = slow.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")) // and never the end
	// The only connection is taken: another waits.
	waiting := make(chan int, 1)
	go func() {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			waiting <- 0
			return
		}
		res.Body.Close()
		waiting <- res.StatusCode
	}()
	select {
	case status := <-waiting:
		t.Fatalf("a second client was served (%d) while the only connection was taken", status)
	case <-time.After(100 * time.Millisecond):
	}
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(slow)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the slow client's connection was not closed within 5s")
			}
			break // closed (after Go's 408, if it sent one)
		}
	}
	if status := <-waiting; status != http.StatusOK {
		t.Fatalf("the waiting client got %d once the slow one was gone", status)
	}
}

// TestWriteDeadline: a client that stops reading has the write deadline to
// take an answer, except an MCP event stream, which lives as long as its
// session.
func TestWriteDeadline(t *testing.T) {
	t.Parallel()
	failed := make(chan time.Duration, 1)
	h := withWriteDeadline(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		start := time.Now()
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				failed <- time.Since(start)
				return
			}
		}
	}), 200*time.Millisecond)
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		stream       bool
	}{{"GET", "/v1/whoami", false}, {"POST", "/mcp", false}, {"GET", "/mcp", true}} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
		// Never read: the answer fills the socket's buffers.
		select {
		case took := <-failed:
			if tc.stream || tc.path == "/mcp" {
				t.Fatalf("%s %s: the write failed after %s; it has no deadline this short", tc.method, tc.path, took)
			}
		case <-time.After(1500 * time.Millisecond):
			if !tc.stream && tc.path != "/mcp" {
				t.Fatalf("%s %s: still writing to a client that does not read", tc.method, tc.path)
			}
		}
		_ = c.Close()
		if tc.stream || tc.path == "/mcp" {
			<-failed // the closed connection ends it
		}
	}
}
