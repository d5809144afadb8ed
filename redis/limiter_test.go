package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/authz/authztest"
	"github.com/keygate/keygate/redis"
)

// testRedisURL is the Redis the tests share counts through: the machine's,
// unless KEYGATE_TEST_REDIS_URL names another.
func testRedisURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("KEYGATE_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/15"
	}
	l := newLimiter(t, url, nil)
	if err := l.Ping(context.Background()); err != nil {
		msg := "Redis not reachable (" + err.Error() + "); set KEYGATE_TEST_REDIS_URL"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

func newLimiter(t *testing.T, url string, edit func(*redis.Options)) *redis.RateLimiter {
	t.Helper()
	opts := redis.Options{URL: url, Fallback: authz.NewMemoryRateLimiter(0)}
	if edit != nil {
		edit(&opts)
	}
	l, err := redis.NewRateLimiter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// uniqueKey is a key id no other run of the test shares a count with.
func uniqueKey() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:])
}

func TestTwoInstancesShareOneLimit(t *testing.T) {
	t.Parallel()
	url := testRedisURL(t)
	// A slow answer (the race detector, every package's tests at once)
	// must not send a request to the fallback, which counts per instance:
	// this test is about sharing, so it waits for Redis, and fails if a
	// request was counted apart all the same.
	var fellBack atomic.Int64
	patient := func(o *redis.Options) {
		o.Timeout = 10 * time.Second
		o.OnFallback = func(context.Context, string) { fellBack.Add(1) }
	}
	instances := []*redis.RateLimiter{newLimiter(t, url, patient), newLimiter(t, url, patient)}
	key, limit := uniqueKey(), authz.RateLimit{Limit: 100, WindowMS: 60_000}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 { // 8 callers, half on each instance, 400 requests
		l := instances[i%2]
		wg.Go(func() {
			for range 50 {
				if l.Take(context.Background(), key, limit, time.Now()).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	for _, l := range instances {
		if l.Down() || fellBack.Load() > 0 {
			t.Fatalf("Redis failed during the test (%d requests counted by the fallback): the counts were not shared", fellBack.Load())
		}
	}
	// A window of a minute: the test's own duration earns back a request
	// or two, within the 10% asked for.
	if n := allowed.Load(); n < 100 || n > 110 {
		t.Fatalf("two instances allowed %d requests against one limit of 100", n)
	}
	t.Logf("two instances allowed %d of 400 requests against one limit of 100 a minute", allowed.Load())
}

func TestStateOfAKey(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, testRedisURL(t), nil)
	key, limit := uniqueKey(), authz.RateLimit{Limit: 3, WindowMS: 3_000}
	now := time.Now()
	for i, want := range []int64{2, 1, 0} {
		st := l.Take(context.Background(), key, limit, now)
		if !st.Allowed || st.Remaining != want || st.Limit != 3 || st.ResetAt.Before(now) || st.RetryAfter != 0 {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, st, want)
		}
	}
	st := l.Take(context.Background(), key, limit, now)
	if st.Allowed || st.Remaining != 0 || st.RetryAfter <= 0 || st.RetryAfter > time.Second {
		t.Fatalf("fourth request: %+v, want refused, retry within a second", st)
	}
}

func TestUnreachableRedisFailsOpenToTheFallback(t *testing.T) {
	t.Parallel()
	// A listener that takes connections and never answers, and a port
	// that refuses them.
	silent, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	refused, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	_ = refused.Close()

	for _, tt := range []struct {
		note, addr, cause string
	}{
		{"a Redis that never answers", silent.Addr().String(), "timeout"},
		{"a Redis that refuses connections", refusedAddr, "unreachable"},
	} {
		t.Run(tt.note, func(t *testing.T) {
			clock := authztest.NewClock(time.Now())
			logs := &authztest.SyncBuffer{}
			var causes sync.Map
			l := newLimiter(t, "redis://"+tt.addr+"/0", func(o *redis.Options) {
				o.Now = clock.Now
				o.Logger = slog.New(slog.NewTextHandler(logs, nil))
				o.OnFallback = func(_ context.Context, cause string) { causes.Store(cause, true) }
			})
			limit := authz.RateLimit{Limit: 2, WindowMS: 60_000}
			start := time.Now()
			var got []bool
			for range 3 {
				got = append(got, l.Take(context.Background(), "k", limit, clock.Now()).Allowed)
			}
			if waited := time.Since(start); waited > 2*time.Second {
				t.Fatalf("three decisions waited %s on a Redis that does not answer", waited)
			}
			// The fallback counts: two allowed, the third refused.
			if !got[0] || !got[1] || got[2] {
				t.Fatalf("allowed %v, want the fallback's [true true false]", got)
			}
			if _, ok := causes.Load(tt.cause); !ok {
				t.Fatalf("no fallback with cause %q", tt.cause)
			}
			if _, ok := causes.Load("backoff"); !ok {
				t.Fatal("Redis was asked again within the backoff")
			}
			if n := strings.Count(logs.String(), "Redis does not answer"); n != 1 {
				t.Fatalf("%d log lines, want 1:\n%s", n, logs)
			}
			// A second on, Redis is asked again; a minute on, the cause is
			// logged again.
			clock.Advance(time.Minute)
			l.Take(context.Background(), "k", limit, clock.Now())
			if n := strings.Count(logs.String(), "Redis does not answer"); n != 2 {
				t.Fatalf("%d log lines after a minute, want 2:\n%s", n, logs)
			}
			if !l.Down() {
				t.Fatal("Down() = false")
			}
		})
	}
}

func TestBadURL(t *testing.T) {
	t.Parallel()
	_, err := redis.NewRateLimiter(redis.Options{URL: "http://user:secret@host", Fallback: authz.NewMemoryRateLimiter(0)})
	if err == nil || !strings.Contains(err.Error(), "KEYGATE_REDIS_URL") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v, want one naming KEYGATE_REDIS_URL without the password", err)
	}
}
