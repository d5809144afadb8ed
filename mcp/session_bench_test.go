package mcp_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkSessionMemory opens client sessions on keygate's /mcp, as
// keygate serve wires it, with a raw initialize each (a flood needs no
// more), 32 per key as the default bound allows, and reports what a
// session costs while it is open: live heap, goroutine stacks and
// goroutines. The sub-benchmark "at-the-cap" opens the default total of
// 10,000.
//
//	go test -run '^$' -bench SessionMemory -benchtime 1x ./mcp/
func BenchmarkSessionMemory(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		name := fmt.Sprint(n)
		if n == 10_000 {
			name = "at-the-cap"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				k := newKeygate(b, slog.New(slog.DiscardHandler))
				tokens := make([]string, (n+31)/32)
				for i := range tokens {
					tokens[i] = k.createKey(fmt.Sprintf("k%d", i))
				}
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
				heap0, stack0, g0 := liveMemory(), stackInUse(), runtime.NumGoroutine()
				for i := range n {
					req, _ := http.NewRequest("POST", k.mcpURL(), strings.NewReader(initialize))
					req.Header.Set("Authorization", "Bearer "+tokens[i/32])
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json, text/event-stream")
					res, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						b.Fatalf("session %d: %d", i, res.StatusCode)
					}
				}
				heap1, stack1, g1 := liveMemory(), stackInUse(), runtime.NumGoroutine()
				if total, _ := k.gw.OpenSessions(""); total != n {
					b.Fatalf("%d sessions open, want %d", total, n)
				}
				b.ReportMetric(float64(heap1-heap0)/float64(n), "heap-B/session")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/session")
				b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-B/session")
				b.ReportMetric(float64(heap1-heap0+stack1-stack0)/(1<<20), "MiB-in-all")
				k.gw.EndSessions()
			}
		})
	}
}

// liveMemory is the live heap after a collection.
func liveMemory() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// stackInUse is the memory of goroutine stacks.
func stackInUse() int64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.StackInuse)
}
