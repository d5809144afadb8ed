package mcp_test

// The gateway's cost, measured as a client sees it: the same tools/list and
// tools/call straight to an upstream and through keygate's /mcp (the real
// router, API-key authentication with the key cache, one policy evaluation,
// the audit event, the pooled upstream session), all over loopback HTTP in
// one run. Each sub-benchmark reports its median and 90th percentile; the
// difference of the medians is keygate's overhead.
//
//	go test -run '^$' -bench 'ToolsList|ToolsCall' -benchtime 2000x ./mcp/

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// benchTools is how many tools the upstream offers: a catalog of a size a
// real server has, so tools/list has something to filter.
const benchTools = 20

func benchUpstream(b *testing.B) string {
	b.Helper()
	s := sdk.NewServer(&sdk.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	for i := range benchTools {
		name := fmt.Sprintf("tool_%02d", i)
		sdk.AddTool(s, &sdk.Tool{Name: name, Description: "echoes its text (" + name + ")"},
			func(_ context.Context, _ *sdk.CallToolRequest, in echoArgs) (*sdk.CallToolResult, any, error) {
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: in.Text}}}, nil, nil
			})
	}
	ts := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	b.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts.URL
}

// benchSession opens a client session on url, as token when set.
func benchSession(b *testing.B, url, token string) *sdk.ClientSession {
	b.Helper()
	transport := &sdk.StreamableClientTransport{Endpoint: url, MaxRetries: -1}
	if token != "" {
		transport.HTTPClient = &http.Client{Transport: &bearer{token: token, base: http.DefaultTransport}}
	}
	cl := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	cs, err := cl.Connect(context.Background(), transport, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cs.Close() })
	return cs
}

// targets returns the sessions to compare: straight to the upstream, and
// through keygate with a key whose glob allows every tool, so both answers
// are the same size and keygate decides each of the 20 tools (one
// evaluation) without the client paying less for a shorter list.
func targets(b *testing.B) (direct, gateway *sdk.ClientSession, prefix string) {
	b.Helper()
	upstream := benchUpstream(b)
	k := newKeygate(b, nil)
	k.register("bench", upstream)
	token := k.createKey("bench", "bench__tool_*")
	return benchSession(b, upstream, ""), benchSession(b, k.mcpURL(), token), "bench__"
}

// measure runs op b.N times and reports the median and 90th percentile.
func measure(b *testing.B, op func() error) {
	b.Helper()
	for range 50 { // warm connections, caches and the pooled session
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
	took := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := op(); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(took[len(took)*9/10].Microseconds()), "p90-µs")
}

func BenchmarkToolsList(b *testing.B) {
	direct, gateway, _ := targets(b)
	for _, tc := range []struct {
		name string
		cs   *sdk.ClientSession
		want int
	}{{"direct", direct, benchTools}, {"keygate", gateway, benchTools}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			measure(b, func() error {
				res, err := tc.cs.ListTools(ctx, nil)
				if err == nil && len(res.Tools) != tc.want {
					err = fmt.Errorf("listed %d tools, want %d", len(res.Tools), tc.want)
				}
				return err
			})
		})
	}
}

func BenchmarkToolsCall(b *testing.B) {
	direct, gateway, prefix := targets(b)
	for _, tc := range []struct {
		name, tool string
		cs         *sdk.ClientSession
	}{{"direct", "tool_03", direct}, {"keygate", prefix + "tool_03", gateway}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			params := &sdk.CallToolParams{Name: tc.tool, Arguments: map[string]any{"text": "ping"}}
			measure(b, func() error {
				res, err := tc.cs.CallTool(ctx, params)
				if err == nil && (res.IsError || len(res.Content) != 1) {
					err = fmt.Errorf("result %+v", res)
				}
				return err
			})
		})
	}
}
