package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/mcp"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP traffic: an upstream MCP server inside the harness, registered
// with keygate over the API, and client sessions through keygate's /mcp
// that list and call its tools, some closed, some left to the idle
// timeout.

// upstreamName is the registered upstream; its tools are <name>__<tool>.
const upstreamName = "soak"

// upstream is the MCP server keygate proxies to, on a loopback port.
type upstream struct {
	url string
	srv *http.Server
}

// upstreamSecret is the header keygate sends upstream; the tools refuse a
// call without it, so a call that works shows keygate sealed, kept and
// used it.
const upstreamSecret = "Bearer soak-upstream-credential"

// startUpstream serves three tools: search and lookup, which every soak
// key may call, and delete_repo, which none may.
func startUpstream(ctx context.Context) (*upstream, error) {
	s := sdk.NewServer(&sdk.Implementation{Name: "soak-upstream", Version: "1"}, nil)
	for _, name := range []string{"search", "lookup", "delete_repo"} {
		sdk.AddTool(s, &sdk.Tool{Name: name, Description: "the soak upstream's " + name},
			func(_ context.Context, req *sdk.CallToolRequest, in struct {
				Q string `json:"q"`
			}) (*sdk.CallToolResult, any, error) {
				if req.Extra.Header.Get("Authorization") != upstreamSecret {
					return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: "no upstream credential"}}}, nil, nil
				}
				return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + in.Q}}}, nil, nil
			})
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the upstream MCP server: %w", err)
	}
	u := &upstream{url: "http://" + ln.Addr().String(),
		srv: &http.Server{Handler: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil), ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) close() { _ = u.srv.Close() }

// register adds the upstream to the soak tenant and checks its tools were
// synced.
func (u *upstream) register(ctx context.Context, a *admin) error {
	var srv struct {
		SyncError string `json:"sync_error"`
	}
	_, err := a.send(ctx, http.MethodPost, "/api/v1/mcp-servers",
		map[string]any{"name": upstreamName, "url": u.url, "headers": map[string]string{"Authorization": upstreamSecret}}, http.StatusCreated, &srv)
	if err != nil {
		return fmt.Errorf("register the upstream MCP server: %w", err)
	}
	if srv.SyncError != "" {
		return fmt.Errorf("register the upstream MCP server: its sync failed: %s", srv.SyncError)
	}
	return nil
}

// sessionLoad opens MCP sessions until ctx ends.
type sessionLoad struct {
	x            *exchanger
	endpoint     string // keygate's /mcp
	keys         []soakKey
	interval     time.Duration // between two sessions
	abandonEvery int           // one session in this many is left open
	idle         time.Duration // keygate's session idle timeout
	now          func() time.Time

	mu     sync.Mutex
	active int         // sessions at work now
	left   []time.Time // when each abandoned session got its last answer, oldest first
}

// idleSlack is how long past its idle timeout an abandoned session may
// still be counted open: keygate's timer starts when it has written its
// last answer, a moment before the harness reads it, and closing takes a
// moment too.
const idleSlack = 5 * time.Second

// expected is how many sessions keygate should have open at now: those at
// work and those abandoned less than the idle timeout ago.
func (l *sessionLoad) expected(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := now.Add(-l.idle - idleSlack)
	i := 0
	for i < len(l.left) && l.left[i].Before(cut) {
		i++
	}
	l.left = l.left[i:]
	return l.active + len(l.left)
}

func (l *sessionLoad) begin() {
	l.mu.Lock()
	l.active++
	l.mu.Unlock()
}

// end marks a session no longer at work; abandoned, it is remembered until
// its idle timeout has passed.
func (l *sessionLoad) end(abandoned bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	if abandoned {
		l.left = append(l.left, l.now())
	}
}

// run opens sessions until loop ends; they run with req, so that those
// at work when loop ends finish.
func (l *sessionLoad) run(loop, req context.Context) {
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	busy := make(chan struct{}, 4) // sessions at work at once
	for n := 0; ; n++ {
		select {
		case <-loop.Done():
			return
		case <-tick.C:
		}
		select {
		case busy <- struct{}{}:
		default:
			continue // keygate is slow: skip a session rather than queue them
		}
		key := l.keys[n%len(l.keys)]
		abandon := n%l.abandonEvery == 0
		l.begin()
		wg.Go(func() {
			defer func() { <-busy }()
			defer l.end(abandon) // one that failed half-way may be open all the same
			if abandon {
				l.abandoned(req, key, n)
			} else {
				l.closed(req, key, n)
			}
		})
	}
}

// sessionProblem counts a failed session step as an unexpected answer or a
// transport error, unless the run is over.
func (l *sessionLoad) sessionProblem(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	kind := &l.x.tally.c.unexpected
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		kind = &l.x.tally.c.transport
	}
	l.x.tally.problem(kind, "MCP session: "+what+": "+redactURL(err.Error()))
}

// wantTools is what a soak key lists: the two tools of its scope.
var wantTools = []string{upstreamName + "__lookup", upstreamName + "__search"}

// closed runs a session as the SDK's client does (with its event stream),
// lists the tools, calls an allowed and a denied one, and closes it.
func (l *sessionLoad) closed(ctx context.Context, key soakKey, n int) {
	client := sdk.NewClient(&sdk.Implementation{Name: "keygate-soak", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: l.endpoint, MaxRetries: -1,
		HTTPClient: &http.Client{Transport: bearer{key.Token, l.x.client.Transport, l.x.tally}}}, nil)
	if err != nil {
		l.sessionProblem(ctx, "connect", err)
		return
	}
	defer func() {
		if err := cs.Close(); err != nil {
			l.sessionProblem(ctx, "close", err)
			return
		}
		l.x.tally.add(func(c *counts) { c.closed++ })
	}()
	listed, err := cs.ListTools(ctx, nil)
	if err != nil {
		l.sessionProblem(ctx, "tools/list", err)
		return
	}
	var names []string
	for _, t := range listed.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, wantTools) {
		l.sessionProblem(ctx, "tools/list", fmt.Errorf("tools %v, want %v", names, wantTools))
	}
	q := fmt.Sprint("q", n)
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: upstreamName + "__search", Arguments: map[string]any{"q": q}})
	if err != nil {
		l.sessionProblem(ctx, "tools/call", err)
		return
	}
	if text := toolText(res); res.IsError || text != "search:"+q {
		l.sessionProblem(ctx, "tools/call", fmt.Errorf("answer %q, want %q", text, "search:"+q))
	}
	_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: upstreamName + "__delete_repo"})
	if rpc := (*jsonrpc.Error)(nil); !errors.As(err, &rpc) || rpc.Code != mcp.CodeToolDenied {
		l.sessionProblem(ctx, "a tool outside the scope", fmt.Errorf("want the call denied with %d, got %w", mcp.CodeToolDenied, err))
	}
}

func toolText(res *sdk.CallToolResult) string {
	if len(res.Content) == 0 {
		return ""
	}
	if t, ok := res.Content[0].(*sdk.TextContent); ok {
		return t.Text
	}
	return ""
}

// bearer adds a key to every request of an MCP client, and counts the
// requests and any 5xx answer.
type bearer struct {
	token string
	base  http.RoundTripper
	tally *tally
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	b.tally.add(func(c *counts) { c.requests++ })
	res, err := b.base.RoundTrip(r)
	if err == nil && res.StatusCode >= 500 {
		b.tally.problem(&b.tally.c.status5xx, fmt.Sprintf("MCP session: %s %s: %s", r.Method, r.URL.Path, res.Status))
	}
	return res, err
}

// abandonedProtocol is the protocol version the abandoned sessions speak.
const abandonedProtocol = "2025-06-18"

// abandoned opens a session with plain HTTP requests, lists the tools and
// calls one, then leaves without a DELETE, as a client that crashed or
// forgot: keygate closes it after its idle timeout.
func (l *sessionLoad) abandoned(ctx context.Context, key soakKey, n int) {
	post := func(id int, method string, params any, session string) (answer, error) {
		msg := map[string]any{"jsonrpc": "2.0", "method": method}
		if id > 0 {
			msg["id"] = id
		}
		if params != nil {
			msg["params"] = params
		}
		h := map[string]string{"Authorization": "Bearer " + key.Token, "Accept": "application/json, text/event-stream"}
		if session != "" {
			h["Mcp-Session-Id"] = session
			h["Mcp-Protocol-Version"] = abandonedProtocol
		}
		want := http.StatusOK
		if id == 0 { // a notification
			want = http.StatusAccepted
		}
		a, ok := l.x.do(ctx, call{method: http.MethodPost, url: l.endpoint, body: mustJSON(msg), header: h, what: "abandoned MCP session: " + method}, wantStatus(want))
		if !ok {
			return a, errors.New("counted")
		}
		return a, nil
	}
	a, err := post(1, "initialize", map[string]any{"protocolVersion": abandonedProtocol, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "keygate-soak-abandoned", "version": "1"}}, "")
	if err != nil {
		return
	}
	session := a.header.Get("Mcp-Session-Id")
	if session == "" {
		l.sessionProblem(ctx, "initialize", errors.New("no Mcp-Session-Id in the answer"))
		return
	}
	if _, err := post(0, "notifications/initialized", nil, session); err != nil {
		return
	}
	if a, err = post(2, "tools/list", map[string]any{}, session); err != nil {
		return
	}
	var listed struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		} `json:"result"`
	}
	if err := decodeRPC(a, &listed); err != nil {
		l.sessionProblem(ctx, "tools/list", err)
		return
	}
	if len(listed.Result.Tools) != len(wantTools) {
		l.sessionProblem(ctx, "tools/list", fmt.Errorf("want %d tools in %.200s", len(wantTools), a.body))
		return
	}
	q := fmt.Sprint("q", n)
	if a, err = post(3, "tools/call", map[string]any{"name": upstreamName + "__lookup", "arguments": map[string]any{"q": q}}, session); err != nil {
		return
	}
	if !bytes.Contains(a.body, []byte(`"lookup:`+q+`"`)) {
		l.sessionProblem(ctx, "tools/call", fmt.Errorf("want lookup:%s in %.200s", q, a.body))
		return
	}
	l.x.tally.add(func(c *counts) { c.abandoned++ })
}

// decodeRPC decodes a JSON-RPC answer sent as JSON or as one event of an
// event stream.
func decodeRPC(a answer, out any) error {
	body := a.body
	if strings.HasPrefix(a.header.Get("Content-Type"), "text/event-stream") {
		body = nil
		sc := bufio.NewScanner(bytes.NewReader(a.body))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data:"); ok {
				body = []byte(strings.TrimSpace(data))
				break
			}
		}
		if body == nil {
			return errors.New("an event stream without data")
		}
	}
	return json.Unmarshal(body, out)
}
