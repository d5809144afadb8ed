package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// entryLog keeps the entries a KeyService hands to its decision log.
type entryLog struct {
	mu      sync.Mutex
	entries []authz.DecisionLogEntry
}

func (l *entryLog) Sampled() bool { return true }

func (l *entryLog) LogDecision(en authz.DecisionLogEntry) {
	l.mu.Lock()
	l.entries = append(l.entries, en)
	l.mu.Unlock()
}

// loggedService is a KeyService deciding with the embedded policies (and
// extra modules), logging every decision to the returned log.
func loggedService(t *testing.T, extra map[string]string) (*authz.KeyService, *authz.Engine, *entryLog, string) {
	t.Helper()
	engine, err := authz.NewEngineFromSet(context.Background(), with(embeddedSet(t), extra), authz.EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := mustToken(t)
	store := newLookupStore(0)
	store.put(authz.APIKey{ID: "key-1", Hash: authz.HashToken(token), TenantID: "t1", UserID: "u1", Enabled: true,
		Scope: authz.Scope{FlowIDs: []string{"f1"}}})
	cache, _ := newTestCache(store, authz.KeyCacheOptions{})
	log := &entryLog{}
	svc := &authz.KeyService{Lookup: cache, Policy: engine, DecisionLog: log, Now: func() time.Time { return fixedTime }}
	return svc, engine, log, token
}

func encodeEvent(t *testing.T, engine *authz.Engine, en authz.DecisionLogEntry) (string, map[string]any) {
	t.Helper()
	ev, err := engine.DecisionLogEvent(context.Background(), en)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return string(data), m
}

// TestDecisionLogEvents: allowed, denied, batch and refused decisions
// become events in OPA's shape, and neither the token nor its hash is ever
// part of one.
func TestDecisionLogEvents(t *testing.T) {
	t.Parallel()
	svc, engine, log, token := loggedService(t, nil)
	ctx := authz.NewContextWithRequestInfo(context.Background(), authz.RequestInfo{IP: "192.0.2.7", RequestID: "req-1"})
	flow := func(id string) authz.Check {
		return authz.Check{Resource: authz.Resource{Type: authz.ResourceFlow, ID: id}, Action: "read"}
	}
	for _, req := range []authz.DecisionRequest{
		{Token: token, Checks: []authz.Check{flow("f1")}, Source: authz.SourceAuthorize},
		{Token: token, Checks: []authz.Check{flow("f2")}, Source: authz.SourceMiddleware},
		{Token: token, Checks: []authz.Check{flow("f1"), flow("f2")}, Batch: true, Source: authz.SourceAuthorize},
		{Token: token, Checks: []authz.Check{flow("f1")}, Listing: true, Source: authz.SourceMCP},
		{Token: mustToken(t), Checks: []authz.Check{flow("f1")}, Source: authz.SourceAuthorize},
	} {
		if _, err := svc.Decide(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if len(log.entries) != 5 {
		t.Fatalf("%d entries, want one per decision", len(log.entries))
	}
	hash := authz.HashToken(token)
	for i, tc := range []struct {
		note   string
		path   string
		code   string
		result string
	}{
		{"allowed", authz.DecisionLogPath, authz.CodeAllowed, `{"allow":true,"reasons":["flow \"f1\" matches \"f1\" in the key's flow_ids"]}`},
		{"denied", authz.DecisionLogPath, authz.CodeDenied, `{"allow":false,"reasons":["flow \"f2\" is not in the key's flow_ids"]}`},
		{"batch", authz.DecisionLogBatchPath, authz.CodeDenied, `[{"allow":true,"reasons":["flow \"f1\" matches \"f1\" in the key's flow_ids"]},{"allow":false,"reasons":["flow \"f2\" is not in the key's flow_ids"]}]`},
		{"listing", authz.DecisionLogBatchPath, authz.CodeAllowed, `[{"allow":true,"reasons":["flow \"f1\" matches \"f1\" in the key's flow_ids"]}]`},
		{"refused key", "", authz.KeyInvalid, `{"allow":false,"reasons":["the API key is not valid"]}`},
	} {
		t.Run(tc.note, func(t *testing.T) {
			raw, ev := encodeEvent(t, engine, log.entries[i])
			if strings.Contains(raw, token) || strings.Contains(raw, hash) || strings.Contains(raw, token[:12]) {
				t.Fatalf("the event holds the token or its hash: %s", raw)
			}
			path, _ := ev["path"].(string)
			custom, _ := ev["custom"].(map[string]any)
			result, _ := json.Marshal(ev["result"])
			if path != tc.path || custom["code"] != tc.code || string(result) != tc.result || custom["request_id"] != "req-1" {
				t.Errorf("path %q, custom %v, result %s", path, custom, result)
			}
			input, _ := ev["input"].(map[string]any)
			ctxDoc, _ := input["context"].(map[string]any)
			if ev["decision_id"] == "" || ev["timestamp"] != "2026-11-25T12:00:00Z" || ctxDoc["ip"] != "192.0.2.7" {
				t.Errorf("decision_id %v, timestamp %v, input.context %v", ev["decision_id"], ev["timestamp"], ctxDoc)
			}
			if tc.path != "" {
				principal, _ := input["principal"].(map[string]any)
				bundles, _ := ev["bundles"].(map[string]any)
				if principal["key_id"] != "key-1" || bundles["keygate"].(map[string]any)["revision"] != engine.Revision() {
					t.Errorf("principal %v, bundles %v", principal, bundles)
				}
			} else if input["principal"] != nil || ev["bundles"] != nil {
				t.Errorf("a refused key has no principal and no policy: %s", raw)
			}
		})
	}
	if !log.entries[3].Listing || log.entries[3].Source != authz.SourceMCP {
		t.Errorf("listing entry %+v", log.entries[3])
	}
}

// TestDecisionLogMasking: data.system.log.mask removes and replaces parts
// of the input and the result, as OPA's masking does.
func TestDecisionLogMasking(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		note   string
		mask   string
		check  func(t *testing.T, ev map[string]any)
		erased []any
		masked []any
		err    bool
	}{
		{
			note: "remove and upsert",
			mask: `mask contains "/input/context/ip"
mask contains {"op": "upsert", "path": "/input/principal/user_id", "value": "someone"}
mask contains "/input/principal/scope/flow_ids/0"
mask contains "/result/reasons"
mask contains "/input/nowhere/at/all"`,
			check: func(t *testing.T, ev map[string]any) {
				input := ev["input"].(map[string]any)
				p := input["principal"].(map[string]any)
				flows := p["scope"].(map[string]any)["flow_ids"].([]any)
				result := ev["result"].(map[string]any)
				if _, ok := input["context"].(map[string]any)["ip"]; ok || p["user_id"] != "someone" || len(flows) != 1 || flows[0] != "f*" || result["reasons"] != nil {
					t.Errorf("masked input %v, result %v", input, result)
				}
			},
			erased: []any{"/input/context/ip", "/input/principal/scope/flow_ids/0", "/result/reasons"},
			masked: []any{"/input/principal/user_id"},
		},
		{
			note:   "the whole input",
			mask:   `mask contains "/input" if input.custom.source == "authorize"`,
			check:  func(t *testing.T, ev map[string]any) { _, ok := ev["input"]; assertFalse(t, ok, "input kept") },
			erased: []any{"/input"},
		},
		{note: "a prefix other than input and result", mask: `mask contains "/labels/id"`, err: true},
		{note: "an unknown op", mask: `mask contains {"op": "hash", "path": "/input/action"}`, err: true},
	} {
		t.Run(tc.note, func(t *testing.T) {
			t.Parallel()
			_, engine, _, _ := loggedService(t, map[string]string{"log.rego": "package system.log\n\n" + tc.mask + "\n"})
			p := &authz.Principal{KeyID: "key-1", TenantID: "t1", UserID: "u1", Scope: authz.Scope{FlowIDs: []string{"f1", "f*"}}}
			en := authz.DecisionLogEntry{DecisionID: "d1", Time: fixedTime, Source: authz.SourceAuthorize, Principal: p, Code: authz.CodeAllowed,
				Checks:    []authz.Check{{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "f1"}, Action: "read"}},
				Context:   authz.DecisionContext{Time: fixedTime, IP: "192.0.2.7"},
				Decisions: []authz.Decision{{Allow: true, Reasons: []string{"r"}}}}
			ev, err := engine.DecisionLogEvent(context.Background(), en)
			if tc.err {
				if err == nil {
					t.Fatalf("a bad mask rule must fail the event (it is then not logged), got %+v", ev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(ev)
			var m map[string]any
			_ = json.Unmarshal(data, &m)
			tc.check(t, m)
			if !reflect.DeepEqual(m["erased"], nilIfEmpty(tc.erased)) || !reflect.DeepEqual(m["masked"], nilIfEmpty(tc.masked)) {
				t.Errorf("erased %v, masked %v; want %v, %v", m["erased"], m["masked"], tc.erased, tc.masked)
			}
		})
	}
}

func nilIfEmpty(v []any) any {
	if len(v) == 0 {
		return nil
	}
	return v
}

func assertFalse(t *testing.T, b bool, msg string) {
	t.Helper()
	if b {
		t.Error(msg)
	}
}

// memorySink keeps what a writer writes; while blocked, it holds the
// writer's goroutine.
type memorySink struct {
	mu     sync.Mutex
	events []json.RawMessage
	block  chan struct{}
	fail   bool
	closed bool
}

func (s *memorySink) WriteDecisions(_ context.Context, events []json.RawMessage) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("collector down")
	}
	s.events = append(s.events, events...)
	return nil
}

func (s *memorySink) Close() error {
	s.closed = true
	return nil
}

func TestDecisionLogWriter(t *testing.T) {
	t.Parallel()
	_, engine, _, _ := loggedService(t, nil)
	en := authz.DecisionLogEntry{DecisionID: "d1", Time: fixedTime, Source: authz.SourceAuthorize, Code: authz.CodeDenied,
		Principal: testPrincipal(), Checks: []authz.Check{{Resource: authz.Resource{Type: authz.ResourceFlow, ID: "x"}, Action: "read"}},
		Decisions: []authz.Decision{{Allow: false, Reasons: []string{"no"}}}}

	t.Run("writes every entry with the labels, then closes the sink", func(t *testing.T) {
		sink := &memorySink{}
		w := authz.NewDecisionLogWriter(engine, sink, authz.DecisionLogWriterOptions{Batch: 2, Interval: time.Hour,
			Labels: map[string]string{"id": "i1", "version": "v"}})
		for range 5 {
			w.LogDecision(en)
		}
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(sink.events) != 5 || !sink.closed || w.Stats().Written != 5 {
			t.Fatalf("%d events, closed %v, stats %+v", len(sink.events), sink.closed, w.Stats())
		}
		var ev map[string]any
		_ = json.Unmarshal(sink.events[0], &ev)
		if !reflect.DeepEqual(ev["labels"], map[string]any{"id": "i1", "version": "v"}) {
			t.Errorf("labels %v", ev["labels"])
		}
	})

	t.Run("a full queue drops, never blocks", func(t *testing.T) {
		sink := &memorySink{block: make(chan struct{})}
		w := authz.NewDecisionLogWriter(engine, sink, authz.DecisionLogWriterOptions{Buffer: 2, Batch: 1, Interval: time.Hour})
		for range 50 {
			w.LogDecision(en) // the sink holds the writer: the queue fills
		}
		if st := w.Stats(); st.Dropped < 47 || st.Dropped > 48 {
			t.Errorf("dropped %d of 50 with a queue of 2 and one event in the sink's hands", st.Dropped)
		}
		close(sink.block)
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.Written+st.Dropped != 50 {
			t.Errorf("stats %+v: every decision is written or counted as dropped", st)
		}
	})

	t.Run("a failing sink is counted", func(t *testing.T) {
		sink := &memorySink{fail: true}
		w := authz.NewDecisionLogWriter(engine, sink, authz.DecisionLogWriterOptions{Interval: time.Hour})
		w.LogDecision(en)
		_ = w.Close(context.Background())
		if st := w.Stats(); st.Failed != 1 || st.Written != 0 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("sampling", func(t *testing.T) {
		w := authz.NewDecisionLogWriter(engine, &memorySink{}, authz.DecisionLogWriterOptions{Sample: 0.25})
		defer w.Close(context.Background())
		n := 0
		for range 10000 {
			if w.Sampled() {
				n++
			}
		}
		if n < 2200 || n > 2800 {
			t.Errorf("%d of 10000 sampled at 0.25", n)
		}
	})
}
