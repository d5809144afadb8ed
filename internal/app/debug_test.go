package app

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

func TestDebugListener(t *testing.T) {
	t.Parallel()
	if addr, err := startDebug(context.Background(), "", slog.New(slog.DiscardHandler)); addr != "" || err != nil {
		t.Fatalf("no address must mean off: %q %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := startDebug(ctx, "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for path, want := range map[string]int{
		"/debug/pprof/": 200, "/debug/pprof/heap": 200, "/debug/pprof/symbol": 200,
		// The command line may carry secrets (--jwt-secret …): never served.
		"/debug/pprof/cmdline": 404,
	} {
		res, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("%s: %s, want %d", path, res.Status, want)
		}
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := client.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			break // closed with its context
		}
		_ = res.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the profiler still answers after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
