package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPConn(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body)
		case "/chunked":
			for _, part := range strings.Fields(string(body)) {
				_, _ = io.WriteString(w, part)
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	tests := []struct {
		note, path, body, want string
		status                 int
	}{
		{"content length", "/echo", `{"a":1}`, `{"a":1}`, 201},
		{"chunked", "/chunked", "one two three", "onetwothree", 200},
		{"the server closes", "/close", "x", "x", 200},
		{"a new connection after a close", "/echo", strings.Repeat("y", 40<<10), strings.Repeat("y", 40<<10), 201},
	}
	conn := &httpConn{timeout: 5 * time.Second}
	var buf bytes.Buffer
	for _, tc := range tests {
		addr, reqs, err := preparedRequests(srv.URL+tc.path, [][]byte{[]byte(tc.body)})
		if err != nil {
			t.Fatal(err)
		}
		conn.addr = addr
		status, err := conn.do(ctx, reqs[0], &buf)
		if err != nil || status != tc.status || buf.String() != tc.want {
			t.Errorf("%s: status %d, body %.40q, err %v; want %d %.40q", tc.note, status, buf.String(), err, tc.status, tc.want)
		}
	}
	if _, _, err := preparedRequests("https://example.com/", nil); err == nil {
		t.Error("https:// must be refused")
	}
}
