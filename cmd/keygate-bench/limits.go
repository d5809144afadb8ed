package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
)

// The per-key limits' cost on the fast path: the same workload with a key
// that has a rate limit and credits (never reached, so every answer is the
// policy's), on the instance that counts in memory and on one that counts
// in Redis.

// limitedKeyFields is what makes the bench key a limited one: a rate limit
// and credits too high to refuse anything during a run.
var limitedKeyFields = map[string]any{
	"rate_limit": map[string]any{"limit": authz.MaxRateLimit, "window_ms": 1000},
	"credits":    map[string]any{"remaining": authz.MaxCredits},
}

// redisBenchTimeout is KEYGATE_REDIS_TIMEOUT for the Redis measurement:
// on a 2-core machine shared with the load generator and Redis itself, an
// answer now and then takes longer than the default 50ms, and the
// instance would count alone meanwhile, which is not what is measured.
const redisBenchTimeout = 250 * time.Millisecond

// targetLimited is the least throughput a limited key may keep of an
// unlimited one's, on one instance.
const targetLimited = 0.85

// measureLimited measures the mix with a limited key of kg, a keygate the
// harness started as name.
func (b *bench) measureLimited(ctx context.Context, kg *server, what string, mix []mixEntry) (*result, error) {
	jwt, err := runCommand(ctx, b.bins.keygate, []string{"KEYGATE_JWT_SECRET=" + benchJWTSecret},
		"token", "--tenant", benchTenant, "--user", benchUser, "--role", "admin")
	if err != nil {
		return nil, err
	}
	key, err := createKeyWith(ctx, kg.base, jwt, "bench-key-limited", benchScope(), limitedKeyFields)
	if err != nil {
		return nil, err
	}
	return b.measure(ctx, workload{name: what, url: kg.base + "/v1/authorize",
		bodies: keygateBodies(key.Token, mix), check: limitedCheck(mixAllow(mix))})
}

// limitedCheck is allowCheck for a limited key: every answer also carries
// the key's rate limit, and an allowed one what credits are left.
func limitedCheck(want func(i int) bool) func(i, status int, body []byte) error {
	allowed := allowCheck(keygateAllowed, want)
	return func(i, status int, body []byte) error {
		if err := allowed(i, status, body); err != nil {
			return err
		}
		if !bytes.Contains(body, []byte(`"rate_limit":`)) || want(i) && !bytes.Contains(body, []byte(`"credits_remaining":`)) {
			return fmt.Errorf("request %d: the answer says nothing of the key's limits: %.300s", i, body)
		}
		return nil
	}
}

// runRedisLimited measures a limited key on a keygate that counts in Redis,
// when Redis answers at -redis-url; otherwise it says why not.
func (b *bench) runRedisLimited(ctx context.Context, rep *report) error {
	if b.opts.redisURL == "" {
		rep.redisSkipped = "not run (-redis-url is empty)"
		return nil
	}
	if err := redisAnswers(ctx, b.opts.redisURL); err != nil {
		rep.redisSkipped = "not run: Redis at -redis-url does not answer (" + err.Error() + ")"
		b.logf("skipping the Redis measurement: %v", err)
		return nil
	}
	kg, _, err := b.launchKeygate(ctx, "sqlite-redis", []string{"KEYGATE_REDIS_URL=" + b.opts.redisURL,
		"KEYGATE_REDIS_TIMEOUT=" + redisBenchTimeout.String()}, nil)
	if err != nil {
		return err
	}
	if rep.redisLimited, err = b.measureLimited(ctx, kg, "keygate (SQLite), key with a rate limit in Redis and credits", rep.mix); err != nil {
		return err
	}
	if out := kg.output.String(); strings.Contains(out, "Redis does not answer") {
		return fmt.Errorf("keygate on Redis fell back to counting alone during the measurement, whose figures are then not of Redis:\n%s", out)
	}
	return stopKeygate(kg)
}

// redisAnswers sends PING to the Redis of rawURL over plain TCP.
func redisAnswers(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "redis" {
		return fmt.Errorf("-redis-url must be redis://host:port/db")
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "+PONG") && !strings.Contains(string(buf[:n]), "NOAUTH") {
		return fmt.Errorf("unexpected answer %q", buf[:n])
	}
	return nil
}

// createKeyWith is createKey with more members in the body.
func createKeyWith(ctx context.Context, base, jwt, name string, scope authz.Scope, extra map[string]any) (*createdKey, error) {
	fields := map[string]any{"name": name, "permission_scope": scope}
	for k, v := range extra {
		fields[k] = v
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/api-keys", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Content-Type", "application/json")
	var key createdKey
	if err := doJSON(req, http.StatusCreated, &key); err != nil {
		return nil, fmt.Errorf("create the bench key: %w", err)
	}
	if !authz.ValidTokenFormat(key.Token) {
		return nil, fmt.Errorf("create the bench key: the answer holds no valid token")
	}
	return &key, nil
}

// limitsMarkdown adds the limited key's ratios to the results.
func (r *report) limitsMarkdown(b *strings.Builder) {
	if r.limited == nil || r.sqlite == nil {
		return
	}
	fmt.Fprintf(b, "- %s / the same without: %.0f%% (the rate limit counted in memory; a credit per allowed check, spent from what the instance reserved ahead, which a database write tops up every 256 or so)\n",
		r.limited.name, 100*safeRatio(r.limited, r.sqlite))
	switch {
	case r.redisLimited != nil:
		fmt.Fprintf(b, "- %s / keygate (SQLite) without: %.0f%% (a Redis round trip per request, to a Redis on this machine sharing its cores; `KEYGATE_REDIS_TIMEOUT=%s`, as under this load an answer now and then took longer than the default 50ms)\n",
			r.redisLimited.name, 100*safeRatio(r.redisLimited, r.sqlite), redisBenchTimeout)
	case r.redisSkipped != "":
		fmt.Fprintf(b, "- A key with its rate limit in Redis: %s.\n", r.redisSkipped)
	}
}
