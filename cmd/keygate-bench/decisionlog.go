package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// decisionLogHeading starts the decision logs' section of the report;
// -decision-logs-only replaces that section alone.
const decisionLogHeading = "## Decision logs"

// decisionLogResult is what logging every decision costs keygate: the same
// mix with the decision log off, on the console and posted to a collector.
type decisionLogResult struct {
	off, console, http *result
	posts, bytes       int64  // what the collector received
	lost               string // keygate's word on dropped events, "" when none
	load, loadEnd      string
}

// runDecisionLogs measures keygate on SQLite three times, one after the
// other: decision log off, KEYGATE_DECISION_LOG=console (its standard
// output read by the harness, as a terminal or a log shipper would) and
// KEYGATE_DECISION_LOG=http: to a collector in the harness that reads and
// drops each batch. The embedded policy's mask (data.system.log.mask) is
// evaluated for every event.
func (b *bench) runDecisionLogs(ctx context.Context, mix []mixEntry) (*decisionLogResult, error) {
	col, err := startCollector(ctx)
	if err != nil {
		return nil, err
	}
	defer col.stop()
	out := &decisionLogResult{load: loadAverage()}
	for _, v := range []struct {
		slug, name string
		env        []string
		dst        **result
	}{
		{"off", "decision log off", nil, &out.off},
		{"console", "decision log: console", []string{"KEYGATE_DECISION_LOG=console"}, &out.console},
		{"http", "decision log: http, gzip", []string{"KEYGATE_DECISION_LOG=http:" + col.url}, &out.http},
	} {
		kg, key, err := b.startKeygate(ctx, "decision-log-"+v.slug, v.env)
		if err != nil {
			return nil, err
		}
		*v.dst, err = b.measure(ctx, workload{name: "keygate (SQLite), " + v.name, url: kg.base + "/v1/authorize",
			bodies: keygateBodies(key.Token, mix), check: allowCheck(keygateAllowed, mixAllow(mix))})
		if serr := stopKeygate(kg); err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
		if i := strings.Index(kg.output.String(), "decision log events were lost"); i >= 0 {
			line, _, _ := strings.Cut(kg.output.String()[i:], "\n")
			out.lost += fmt.Sprintf("%s: %s. ", v.name, line)
		}
	}
	out.posts, out.bytes = col.posts.Load(), col.bytes.Load()
	out.loadEnd = loadAverage()
	return out, nil
}

// collector is a decision-log service: it reads each post whole and
// answers 204.
type collector struct {
	url          string
	srv          *http.Server
	posts, bytes atomic.Int64
}

func startCollector(ctx context.Context) (*collector, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{url: "http://" + ln.Addr().String() + "/logs"}
	c.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		c.posts.Add(1)
		c.bytes.Add(n)
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() {
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("collector:", err)
		}
	}()
	return c, nil
}

func (c *collector) stop() { _ = c.srv.Close() }

// decisionLogMarkdown renders the decision logs' section; it names its run
// and machine, as -decision-logs-only puts it in a page made by another
// run.
func (r *report) decisionLogMarkdown() string {
	d := r.decisionLogs
	if d == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s", decisionLogHeading, r.provenance("this part", d.load, d.loadEnd))
	fmt.Fprintf(&b, "keygate on SQLite, as in the results above (the same mix, %d connections, %s of warm-up, %s measured, decision cache on), three times one after the other: ", r.conns, r.warmup, r.duration)
	b.WriteString("with the decision log off; with `KEYGATE_DECISION_LOG=console`, its standard output read by the harness; and with `KEYGATE_DECISION_LOG=http:URL` posting gzip-compressed batches to a collector in the harness, which reads each post and answers 204. ")
	b.WriteString("Every decision is logged (`KEYGATE_DECISION_LOG_SAMPLE=1`), each event built, masked by the embedded `data.system.log.mask` and encoded off the request path.\n\n")
	var rows [][]string
	for _, res := range []*result{d.off, d.console, d.http} {
		if res == nil {
			continue
		}
		row := resultRow(res)
		row = append(row, fmt.Sprintf("%.0f%%", 100*safeRatio(res, d.off)))
		rows = append(rows, row)
	}
	b.WriteString(mdTable([]string{"target", "conns", "requests", "req/s", "p50", "p90", "p99", "errors", "of off"}, rows, "lrrrrrrrr"))
	fmt.Fprintf(&b, "\nThe collector received %s posts, %s of compressed events.", thousands(float64(d.posts)), fmtMiB(uint64(d.bytes)))
	if d.lost != "" {
		fmt.Fprintf(&b, " keygate reported losses: %s", d.lost)
	} else {
		b.WriteString(" No keygate reported a lost event.")
	}
	b.WriteString("\n")
	return b.String()
}
