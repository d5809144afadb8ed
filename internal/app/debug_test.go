package app

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestDebugListener(t *testing.T) {
	t.Parallel()
	if addr, err := startDebug(context.Background(), debugOptions{}, slog.New(slog.DiscardHandler)); addr != "" || err != nil {
		t.Fatalf("no address must mean off: %q %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := startDebug(ctx, debugOptions{Addr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler))
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

// TestDebugContentionProfiles is not parallel: the profile rates are the
// process's.
func TestDebugContentionProfiles(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := startDebug(ctx, debugOptions{Addr: "127.0.0.1:0", MutexFraction: 7, BlockRate: time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := runtime.SetMutexProfileFraction(-1); got != 7 {
		t.Fatalf("mutex profile fraction %d, want 7", got)
	}
	before := blockEvents()
	wait := make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(wait) })
	<-wait // 20 ms blocked: past the 1 ms rate, so always recorded
	if blockEvents() <= before {
		t.Fatal("a 20 ms wait was not recorded in the block profile")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/debug/pprof/mutex", "/debug/pprof/block"} {
		res, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s: %s", path, res.Status)
		}
	}
	cancel()
	for deadline := time.Now().Add(5 * time.Second); runtime.SetMutexProfileFraction(-1) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the mutex profile stays on after the listener stopped")
		}
	}
	// The block rate has no getter; it is turned off just after the mutex
	// fraction, so a wait now may be recorded no more once it is.
	time.Sleep(10 * time.Millisecond)
	after := blockEvents()
	wait = make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(wait) })
	<-wait
	if blockEvents() != after {
		t.Fatal("the block profile stays on after the listener stopped")
	}
}

// blockEvents is how many blocking events the block profile has recorded.
func blockEvents() int64 {
	n, _ := runtime.BlockProfile(nil)
	records := make([]runtime.BlockProfileRecord, n+64)
	n, _ = runtime.BlockProfile(records)
	var sum int64
	for _, r := range records[:n] {
		sum += r.Count
	}
	return sum
}

func TestDebugProfileSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note     string
		addr     string
		fraction int
		rate     time.Duration
		want     string // what the error names; "": valid
	}{
		{"off", "", 0, 0, ""},
		{"on, with the listener", "127.0.0.1:6060", 5, 10 * time.Microsecond, ""},
		{"without the listener", "", 5, 0, "KEYGATE_DEBUG_ADDR"},
		{"a block rate without the listener", "", 0, time.Microsecond, "KEYGATE_DEBUG_ADDR"},
		{"a negative fraction", "127.0.0.1:6060", -1, 0, "must not be negative"},
		{"a negative rate", "127.0.0.1:6060", 0, -time.Second, "must not be negative"},
	} {
		c := Defaults()
		c.DebugAddr, c.DebugMutexFraction, c.DebugBlockRate = tc.addr, tc.fraction, tc.rate
		err := c.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.note, err, tc.want)
		}
	}
}
