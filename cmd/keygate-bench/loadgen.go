package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// workload is what one measurement sends: request bodies encoded once, up
// front, so the load generator spends its share of the two cores on HTTP and
// not on JSON, and a check of every answer, so a fast wrong answer never
// counts as throughput.
type workload struct {
	name   string
	url    string
	bodies [][]byte
	// check returns nil when body is the right answer to bodies[i].
	check func(i, status int, body []byte) error
}

// result is one measurement.
type result struct {
	name     string
	conns    int
	ok       uint64        // right answers completed inside the window
	errors   uint64        // failed requests, non-200s and wrong answers inside the window
	elapsed  time.Duration // the measured window
	hist     *histogram    // latencies of the right answers
	firstErr string        // the first error seen, to say what went wrong
	// answered and lost count every request of the run, warm-up included:
	// those the server answered (whatever the status) and those it did not
	// (the connection failed or timed out), for counting what the server
	// did, such as the denials it audited.
	answered, lost uint64
}

// rps is right answers per second over the window.
func (r *result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// loadGen drives one server from conns goroutines, each with its own
// keep-alive connection (httpConn, prepared requests): a closed loop at
// fixed concurrency, as a pool of callers of an authorization service
// behaves.
type loadGen struct {
	conns   int
	timeout time.Duration // per request
}

// runTimed sends the bodies in turn for warmup, then for duration, and
// measures the requests that complete inside the second window.
func (g loadGen) runTimed(ctx context.Context, w workload, warmup, duration time.Duration) (*result, error) {
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+duration)
	var next atomic.Uint64
	n := uint64(len(w.bodies))
	res, err := g.run(ctx, w, func() (int, bool) {
		if !time.Now().Before(until) {
			return 0, false
		}
		return int((next.Add(1) - 1) % n), true
	}, func(end time.Time) bool {
		return !end.Before(from) && !end.After(until)
	})
	if err != nil {
		return nil, err
	}
	res.elapsed = duration
	return res, nil
}

// runOnce sends every body exactly once, without warm-up, and measures all
// of them; the window runs from the first request to the last answer. It
// serves requests that must not repeat, such as a token never used before.
func (g loadGen) runOnce(ctx context.Context, w workload) (*result, error) {
	start := time.Now()
	var next atomic.Uint64
	n := uint64(len(w.bodies))
	res, err := g.run(ctx, w, func() (int, bool) {
		i := next.Add(1) - 1
		return int(i), i < n
	}, func(time.Time) bool { return true })
	if err != nil {
		return nil, err
	}
	res.elapsed = time.Since(start)
	return res, nil
}

// run starts the workers and merges what they measured. next hands out the
// index of the body to send, false to stop; measured says whether a request
// that completed at end falls inside the window.
func (g loadGen) run(ctx context.Context, w workload, next func() (int, bool), measured func(end time.Time) bool) (*result, error) {
	if len(w.bodies) == 0 {
		return nil, fmt.Errorf("%s: no requests to send", w.name)
	}
	addr, reqs, err := preparedRequests(w.url, w.bodies)
	if err != nil {
		return nil, err
	}
	res := &result{name: w.name, conns: g.conns, hist: &histogram{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range g.conns {
		wg.Go(func() {
			conn := &httpConn{addr: addr, timeout: g.timeout}
			defer conn.close()
			h := &histogram{}
			var ok, errs, answered, lost uint64
			var firstErr string
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i, more := next()
				if !more {
					break
				}
				began := time.Now()
				status, err := conn.do(ctx, reqs[i], &buf)
				end := time.Now()
				if err == nil {
					answered++
					err = w.check(i, status, buf.Bytes())
				} else {
					lost++
				}
				if !measured(end) {
					continue
				}
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				ok++
				h.record(end.Sub(began))
			}
			mu.Lock()
			defer mu.Unlock()
			res.hist.merge(h)
			res.ok += ok
			res.errors += errs
			res.answered += answered
			res.lost += lost
			if res.firstErr == "" {
				res.firstErr = firstErr
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return res, nil
}
