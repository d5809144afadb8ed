package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
)

// runScale measures uncached authentication (each request a seeded key not
// used before), then the memory of a process that has used cacheKeys more
// distinct keys, then as many requests as the uncached phase with keys it
// has just used.
func (b *bench) runScale(ctx context.Context, kg *server, seeded *seedStats) (*scaleResult, error) {
	s := &scaleResult{seed: seeded, scopeEntries: b.opts.seedScope, cacheKeys: b.opts.cacheKeys,
		usedKeys: b.opts.uncached + b.opts.cacheKeys + uncachedOne, memLimit: b.opts.memLimit}
	var err error
	if s.rssBefore, err = residentBytes(kg.pid(), "VmRSS"); err != nil {
		return nil, err
	}
	gen := loadGen{conns: b.opts.scaleConns, timeout: b.opts.timeout}
	url := kg.base + "/v1/authorize"
	always := func(int) bool { return true }

	// One request at a time: the latency of authenticating a key that is
	// in no cache, without queueing behind other requests.
	oneAtATime := loadGen{conns: 1, timeout: b.opts.timeout}
	used := b.opts.uncached + b.opts.cacheKeys
	b.logf("uncached authentication, one request at a time: %s requests", thousands(float64(uncachedOne)))
	if s.uncachedOne, err = oneAtATime.runOnce(ctx, workload{name: "uncached, one at a time", url: url,
		bodies: seededBodies(used, used+uncachedOne), check: allowCheck(keygateAllowed, always)}); err != nil {
		return nil, err
	}
	b.logResult(s.uncachedOne)

	b.logf("uncached authentication: %s requests, each with a key not used before, %d connections",
		thousands(float64(b.opts.uncached)), b.opts.scaleConns)
	if s.uncached, err = gen.runOnce(ctx, workload{name: "uncached", url: url,
		bodies: seededBodies(0, b.opts.uncached), check: allowCheck(keygateAllowed, always)}); err != nil {
		return nil, err
	}
	b.logResult(s.uncached)

	b.logf("warming %s more distinct keys", thousands(float64(b.opts.cacheKeys)))
	if s.warm, err = gen.runOnce(ctx, workload{name: "warm", url: url,
		bodies: seededBodies(b.opts.uncached, b.opts.uncached+b.opts.cacheKeys), check: allowCheck(keygateAllowed, always)}); err != nil {
		return nil, err
	}
	b.logResult(s.warm)
	if s.rssAfter, err = residentBytes(kg.pid(), "VmRSS"); err != nil {
		return nil, err
	}
	s.heapLive, s.heapGoal = lastGC(kg.output.String())
	if b.debugAddr != "" {
		if err := saveProfile(ctx, "http://"+b.debugAddr+"/debug/pprof/heap?gc=1", b.opts.heapProfile); err != nil {
			return nil, fmt.Errorf("heap profile: %w", err)
		}
		b.logf("  heap profile saved to %s", b.opts.heapProfile)
	}
	b.logf("  resident: %s before, %s after; Go heap after the last GC: %s MB live, %s MB goal", fmtMiB(s.rssBefore), fmtMiB(s.rssAfter), s.heapLive, s.heapGoal)

	// The same number of requests again, with keys just used: beside the
	// uncached row, what a key lookup that misses the cache costs.
	last := b.opts.uncached + b.opts.cacheKeys
	b.logf("cached authentication: the last %s warmed keys again", thousands(float64(b.opts.uncached)))
	if s.cached, err = gen.runOnce(ctx, workload{name: "cached", url: url,
		bodies: seededBodies(last-b.opts.uncached, last), check: allowCheck(keygateAllowed, always)}); err != nil {
		return nil, err
	}
	b.logResult(s.cached)
	if s.rssPeak, err = residentBytes(kg.pid(), "VmHWM"); err != nil {
		return nil, err
	}
	return s, nil
}

// saveProfile downloads a profile from keygate's debug listener.
func saveProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// uncachedOne is how many uncached keys are measured one at a time.
const uncachedOne = 2_000

// seededBodies are /v1/authorize bodies for seeded keys [from, to).
func seededBodies(from, to int) [][]byte {
	out := make([][]byte, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, mustJSON(map[string]any{"api_key": seedToken(i), "resource": seedCheck.Resource, "action": seedCheck.Action}))
	}
	return out
}

// gcLine matches the heap figures of a GODEBUG=gctrace=1 line: heap at
// the start of the GC -> at its end -> marked live, then the next goal.
var gcLine = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB, (\d+) MB goal`)

// lastGC returns the live heap and the heap goal, in MB, of the last GC
// trace line in a process's output; "?" when there is none.
func lastGC(output string) (live, goal string) {
	m := gcLine.FindAllStringSubmatch(output, -1)
	if len(m) == 0 {
		return "?", "?"
	}
	last := m[len(m)-1]
	return last[3], last[4]
}
