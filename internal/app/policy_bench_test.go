package app

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// closedTestAnyReason is a Rego test that holds whichever reason closes
// reads.
const closedTestAnyReason = `package keygate.authz_test

import data.keygate.authz

test_reads_are_closed if {
	not authz.decision.allow with input as {"principal": {"type": "api_key", "tenant_id": "t1", "scope": {"flow_ids": ["f1"]}},
		"resource": {"type": "flow", "id": "f1"}, "action": "read"}
}
`

// BenchmarkPolicyReloadLatency is the time from saving a file in the
// policy folder (a temporary file renamed over it, as editors save) to the
// first decision made by the new policy: the watch's quiet time
// (policyWatchQuiet), reading the folder, the strict compile, the folder's
// Rego tests, preparing the queries. Each round saves a rule with a new
// reason; the decision is asked every millisecond until it gives it.
func BenchmarkPolicyReloadLatency(b *testing.B) {
	rule := func(n int) string {
		return fmt.Sprintf("package keygate.authz\n\ndeny contains \"reads are closed (%d)\" if input.action == \"read\"\n", n)
	}
	dir := policyFolder(b, map[string]string{"closed_test.rego": closedTestAnyReason, "closed.rego": rule(0)})
	a := newOutageApp(b, "", func(c *Config) { c.PolicyDir = dir })
	a.Start(context.Background())
	var worst time.Duration
	n := 0
	for b.Loop() {
		n++
		want := fmt.Sprintf("reads are closed (%d)", n)
		saved := time.Now()
		writeFile(b, filepath.Join(dir, "closed.rego"), rule(n))
		for d := readF1(b, a.Engine); len(d.Reasons) != 1 || d.Reasons[0] != want; d = readF1(b, a.Engine) {
			if time.Since(saved) > time.Minute {
				b.Fatalf("round %d: the new rule is not live after a minute (%+v)", n, a.PolicyStatus())
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(saved))
	}
	b.ReportMetric(float64(worst)/float64(time.Millisecond), "worst-ms")
}
