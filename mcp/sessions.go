package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// sessionLimiter bounds the client sessions open at once, per key and in
// all. Only an initialize can leave a session behind (the SDK closes the
// session any other request without a session id makes before it
// answers), so only an initialize is counted: it takes a slot, refused
// with 429 when the key's or the instance's are all taken, never by
// closing another session; the slot is given back when the session ends
// however it ends (DELETE, the idle timeout, shutdown), which
// ServerSession.Wait reports.
type sessionLimiter struct {
	maxPerKey, maxTotal int
	refused             metric.Int64Counter
	logger              func(msg string, args ...any)

	mu     sync.Mutex
	perKey map[string]int // sessions open per key; a key with none has no entry
	total  int
	// deleted counts perKey's deletions since it was last rebuilt. A Go
	// map's tables never shrink and, under steady delete-and-insert churn,
	// keep growing while the entries stay few (authz/churnmap.go has the
	// measurement): perKey is copied into a fresh map once it has deleted
	// as many entries as it holds, at an amortized cost of one copy per
	// deletion.
	deleted int

	lastLog atomic.Int64 // Unix nanoseconds of the last refusal logged
}

// Reasons a session is refused, the reason attribute of
// keygate.mcp.sessions.refused.
const (
	refusedPerKey = "per_key"
	refusedTotal  = "total"
)

func newSessionLimiter(opts Options, meter metric.Meter, logger *slog.Logger) (*sessionLimiter, error) {
	refused, err := meter.Int64Counter("keygate.mcp.sessions.refused",
		metric.WithDescription("MCP initialize requests refused for too many open sessions, by reason (per_key, total)"),
		metric.WithUnit("{session}"))
	if err != nil {
		return nil, err
	}
	l := &sessionLimiter{maxPerKey: opts.MaxSessionsPerKey, maxTotal: opts.MaxSessions, refused: refused,
		logger: logger.Warn, perKey: map[string]int{}}
	_, err = meter.Int64ObservableGauge("keygate.mcp.sessions",
		metric.WithDescription("MCP client sessions open on this instance"), metric.WithUnit("{session}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			total, _ := l.open("")
			o.Observe(int64(total))
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *sessionLimiter) acquire(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.perKey[key] >= l.maxPerKey:
		return refusedPerKey
	case l.total >= l.maxTotal:
		return refusedTotal
	}
	l.total++
	l.perKey[key]++
	return ""
}

func (l *sessionLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.perKey[key] - 1; n > 0 {
		l.perKey[key] = n
		return
	}
	delete(l.perKey, key)
	if l.deleted++; l.deleted >= max(len(l.perKey), minRebuildDeletions) {
		fresh := make(map[string]int, len(l.perKey))
		for k, n := range l.perKey {
			fresh[k] = n
		}
		l.perKey, l.deleted = fresh, 0
	}
}

// minRebuildDeletions is the fewest deletions between two rebuilds of the
// per-key counts, so that a nearly empty map is not copied at every one.
const minRebuildDeletions = 64

// OpenSessions returns how many client sessions are open, in all and of
// the key with keyID.
func (g *Gateway) OpenSessions(keyID string) (total, ofKey int) { return g.sessions.open(keyID) }

// open returns the sessions open now, in all and of key.
func (l *sessionLimiter) open(key string) (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.perKey[key]
}

// sessionSlot receives the session an initialize made, from the receiving
// middleware of the tenant's server.
type sessionSlot struct {
	mu sync.Mutex
	ss *sdk.ServerSession
}

type slotKey struct{}

func (s *sessionSlot) set(ss *sdk.ServerSession) {
	s.mu.Lock()
	if s.ss == nil {
		s.ss = ss
	}
	s.mu.Unlock()
}

func (s *sessionSlot) get() *sdk.ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ss
}

// captureSession hands the session of an initialize to its slot. Every
// method handler of a session sees the values of the context of the
// request that created it, slot included.
func captureSession(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		if slot, ok := ctx.Value(slotKey{}).(*sessionSlot); ok {
			if ss, ok := req.GetSession().(*sdk.ServerSession); ok {
				slot.set(ss)
			}
		}
		return next(ctx, method, req)
	}
}

// limit counts the sessions next opens. It sits behind the bearer check,
// whose key (TokenInfo.UserID) a session belongs to.
func (l *sessionLimiter) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Mcp-Session-Id") != "" {
			next.ServeHTTP(w, r) // a request of an open session, a stream or a DELETE
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sdk.DefaultMaxRequestBodyBytes))
		if err != nil {
			http.Error(w, "the request body is too large or cannot be read", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		key := ""
		if ti := auth.TokenInfoFromContext(r.Context()); ti != nil {
			key = ti.UserID
		}
		initialize := hasInitialize(body)
		if initialize {
			if why := l.acquire(key); why != "" {
				l.refuse(r.Context(), w, key, why)
				return
			}
		}
		slot := &sessionSlot{}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), slotKey{}, slot)))
		ss := slot.get()
		survived := ss != nil && ss.InitializeParams() != nil
		switch {
		case initialize && !survived:
			l.release(key) // the SDK closed it before answering
			return
		case !initialize && !survived:
			return
		case !initialize && l.force(key):
			// An initialize this parser did not see as one: counted all
			// the same, and closed when it is over a bound.
			_ = ss.Close()
		}
		go func() {
			_ = ss.Wait()
			l.release(key)
		}()
	})
}

// force counts a session that is already open and reports whether that
// puts it over a bound.
func (l *sessionLimiter) force(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	l.perKey[key]++
	return l.total > l.maxTotal || l.perKey[key] > l.maxPerKey
}

// refuse answers an initialize past a bound: 429, and a JSON-RPC error
// saying which bound and how to change it.
func (l *sessionLimiter) refuse(ctx context.Context, w http.ResponseWriter, key, why string) {
	l.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", why)))
	msg := fmt.Sprintf("this API key has %d MCP sessions open, the most allowed (KEYGATE_MCP_MAX_SESSIONS_PER_KEY); close one (DELETE) or let one end", l.maxPerKey)
	if why == refusedTotal {
		msg = fmt.Sprintf("this keygate instance has %d MCP sessions open, the most allowed (KEYGATE_MCP_MAX_SESSIONS); try again later", l.maxTotal)
	}
	now := time.Now().UnixNano()
	if last := l.lastLog.Load(); now-last >= int64(time.Minute) && l.lastLog.CompareAndSwap(last, now) {
		total, mine := l.open(key)
		l.logger("MCP session refused: too many open", "reason", why, "key_id", key, "key_sessions", mine, "sessions", total)
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": -32000, "message": msg}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "60")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(body)
}

// hasInitialize reports whether a POST body holds an initialize request,
// alone or in a batch.
func hasInitialize(body []byte) bool {
	type message struct {
		Method string `json:"method"`
	}
	var msgs []message
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '[' {
		if json.Unmarshal(b, &msgs) != nil {
			return false
		}
	} else {
		var m message
		if json.Unmarshal(b, &m) != nil {
			return false
		}
		msgs = append(msgs, m)
	}
	for _, m := range msgs {
		if m.Method == "initialize" {
			return true
		}
	}
	return false
}
