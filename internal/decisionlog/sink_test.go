package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note, in string
		want     Config
		err      string
	}{
		{note: "off", in: "", want: Config{}},
		{note: "off, said", in: "off", want: Config{}},
		{note: "console", in: "console", want: Config{Kind: "console"}},
		{note: "file", in: "file:/var/log/keygate/decisions.log", want: Config{Kind: "file", Path: "/var/log/keygate/decisions.log"}},
		{note: "http with its prefix", in: "http:https://logs.example.com/v1/logs", want: Config{Kind: "http", URL: "https://logs.example.com/v1/logs"}},
		{note: "a bare URL", in: "http://127.0.0.1:9000/logs", want: Config{Kind: "http", URL: "http://127.0.0.1:9000/logs"}},
		{note: "file without a path", in: "file:", err: "needs a path"},
		{note: "http without a host", in: "http:/logs", err: "absolute http or https URL"},
		{note: "unknown", in: "syslog", err: "must be console, file:PATH or http:URL"},
		{note: "a URL's secret is not repeated", in: "http:ftp://user:secret@host/x?token=t", err: "absolute http or https URL"},
	} {
		got, err := Parse(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "token=") {
				t.Errorf("%s: %v, want an error with %q and no credential", tc.note, err, tc.err)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: %+v, %v; want %+v", tc.note, got, err, tc.want)
		}
	}
}

var batch = []json.RawMessage{json.RawMessage(`{"decision_id":"a"}`), json.RawMessage(`{"decision_id":"b"}`)}

func TestConsoleAndFileSinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var out bytes.Buffer
	console, err := Open(Config{Kind: "console"}, Options{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if err := console.WriteDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"openpolicyagent.org/decision_logs","decision_id":"a"}` + "\n" + `{"type":"openpolicyagent.org/decision_logs","decision_id":"b"}` + "\n"
	if out.String() != want {
		t.Errorf("console wrote %q", out.String())
	}

	path := filepath.Join(t.TempDir(), "decisions.log")
	if err := os.WriteFile(path, []byte(`{"decision_id":"old"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	file, err := Open(Config{Kind: "file", Path: path}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := file.WriteDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != `{"decision_id":"old"}`+"\n"+`{"decision_id":"a"}`+"\n"+`{"decision_id":"b"}`+"\n" {
		t.Errorf("file holds %q: lines are appended", data)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
	if _, err := Open(Config{Kind: "file", Path: filepath.Join(t.TempDir(), "no", "such", "dir", "x.log")}, Options{}); err == nil || !strings.Contains(err.Error(), "KEYGATE_DECISION_LOG") {
		t.Errorf("a file that cannot be opened: %v", err)
	}
}

func TestHTTPSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var calls atomic.Int32
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable) // the first post fails: retried
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Error(err)
				return
			}
			body = zr
		}
		data, _ := io.ReadAll(body)
		got.Store(r.Header.Get("Content-Type") + " " + r.Header.Get("Content-Encoding") + " " + string(data))
	}))
	defer srv.Close()

	sink, err := Open(Config{Kind: "http", URL: srv.URL + "/logs"}, Options{Gzip: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.WriteDecisions(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || got.Load() != `application/json gzip [{"decision_id":"a"},{"decision_id":"b"}]` {
		t.Errorf("%d posts, the last %q", calls.Load(), got.Load())
	}

	plain, _ := Open(Config{Kind: "http", URL: srv.URL + "/logs"}, Options{})
	if err := plain.WriteDecisions(ctx, batch); err != nil || got.Load() != `application/json  [{"decision_id":"a"},{"decision_id":"b"}]` {
		t.Errorf("uncompressed post: %v, %q", err, got.Load())
	}
}

func TestHTTPSinkGivesUp(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(hang)
	sink := newHTTPSink("http://user:secret@"+strings.TrimPrefix(srv.URL, "http://")+"/logs?token=t", Options{Timeout: 50 * time.Millisecond, Retries: 1})
	err := sink.WriteDecisions(context.Background(), batch)
	if err == nil || calls.Load() != 2 {
		t.Fatalf("%v after %d posts: a collector that never answers fails the batch after its retries", err, calls.Load())
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "token=t") {
		t.Errorf("the error repeats the URL's credentials: %v", err)
	}
}
