package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apptest"
	"github.com/keygate/keygate/internal/openapitest"
	"github.com/keygate/keygate/server"
)

// cmdline runs keygate's command line in-process against a running keygate.
type cmdline struct {
	t          *testing.T
	url, token string
	stdout     string
	stderr     string
	err        error
	exit       int
}

func (c *cmdline) run(args ...string) *cmdline {
	c.t.Helper()
	var out, errOut bytes.Buffer
	full := append(append([]string{}, args...), "--url", c.url, "--token", c.token)
	if args[0] == "openapi" {
		full = args
	}
	err := run(context.Background(), full, &out, &errOut)
	r := &cmdline{t: c.t, stdout: out.String(), stderr: errOut.String(), err: err}
	if err != nil {
		r.exit = exitCode(err)
	}
	return r
}

// ok fails unless the command succeeded.
func (c *cmdline) ok(note string) *cmdline {
	c.t.Helper()
	if c.err != nil {
		c.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", note, c.err, c.stdout, c.stderr)
	}
	return c
}

// fails expects the exit status and a message saying text.
func (c *cmdline) fails(note string, exit int, text string) {
	c.t.Helper()
	if c.err == nil || c.exit != exit || !strings.Contains(c.err.Error()+c.stdout, text) {
		c.t.Fatalf("%s: exit %d (%v), want exit %d saying %q\nstdout: %s", note, c.exit, c.err, exit, text, c.stdout)
	}
}

func (c *cmdline) json(v any) {
	c.t.Helper()
	if err := json.Unmarshal([]byte(c.stdout), v); err != nil {
		c.t.Fatalf("not JSON: %v\n%s", err, c.stdout)
	}
}

// TestManagementCLI runs every management command against a real keygate
// (in-process, on loopback), through a proxy that checks each exchange
// against the OpenAPI document.
func TestManagementCLI(t *testing.T) {
	t.Parallel()
	k := apptest.Start(t)
	kg := &cmdline{t: t, url: openapitest.Proxy(t, k.URL), token: k.Token("acme", "admin", "admin")}

	var key struct {
		ID, Token string
		Enabled   bool
	}
	kg.run("keys", "create", "support-bot", "--flow", "triage-*", "--agent", "support-agent,helper", "-o", "json").ok("create").json(&key)
	if !strings.HasPrefix(key.Token, "pk_") || !key.Enabled {
		t.Fatalf("create: %+v", key)
	}
	table := kg.run("keys", "create", "--scope", `{"mcp_tool_ids": ["github__*"]}`, "--expires-in", "24h", "review-bot").ok("create, as a table")
	if !strings.Contains(table.stdout, "Token (shown this once") || !strings.Contains(table.stdout, "pk_") || !strings.Contains(table.stdout, "github__*") {
		t.Fatalf("create prints the key and its token:\n%s", table.stdout)
	}
	kg.run("keys", "create", "support-bot").fails("a taken name", 1, "409 conflict")
	kg.run("keys", "create", "x", "--flow", "bad id").fails("an invalid scope", 1, "permission_scope.flow_ids[0]")
	kg.run("keys", "create", "x", "--flow", "f", "--scope", "{}").fails("both scope forms", 2, "not both")

	list := kg.run("keys", "list").ok("list")
	if lines := strings.Split(strings.TrimSpace(list.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "review-bot") {
		t.Fatalf("list: a header and two keys, newest first:\n%s", list.stdout)
	}
	var keys []map[string]any
	kg.run("keys", "list", "-o", "json", "--limit", "1").ok("list one").json(&keys)
	if len(keys) != 1 || keys[0]["name"] != "review-bot" {
		t.Fatalf("list --limit 1: %v", keys)
	}
	kg.run("keys", "list", "-o", "json", "--enabled=false").ok("list disabled").json(&keys)
	if len(keys) != 0 {
		t.Fatalf("no disabled key yet: %v", keys)
	}
	if got := kg.run("keys", "get", key.ID).ok("get"); !strings.Contains(got.stdout, "triage-*") || !strings.Contains(got.stdout, "support-agent, helper") {
		t.Fatalf("get shows the whole scope:\n%s", got.stdout)
	}
	var updated map[string]any
	kg.run("keys", "update", key.ID, "--name", "support-bot-2", "--expires-at", "2099-01-01T00:00:00Z", "-o", "json").ok("update").json(&updated)
	if updated["name"] != "support-bot-2" || updated["expires_at"] != "2099-01-01T00:00:00Z" {
		t.Fatalf("update: %v", updated)
	}
	kg.run("keys", "update", key.ID, "--no-expiry", "-o", "json").ok("clear the expiry").json(&updated)
	if updated["expires_at"] != nil {
		t.Fatalf("--no-expiry: %v", updated)
	}
	kg.run("keys", "update", key.ID).fails("an update of nothing", 2, "nothing to change")

	authorize := func(id string) *cmdline {
		return kg.run("authorize", "--api-key", key.Token, "--type", "flow", "--id", id, "--action", "execute")
	}
	if a := authorize("triage-daily").ok("allowed"); !strings.Contains(a.stdout, "ALLOWED") {
		t.Fatalf("allowed:\n%s", a.stdout)
	}
	authorize("billing-export").fails("denied", 1, "DENIED")
	kg.run("keys", "disable", key.ID).ok("disable")
	authorize("triage-daily").fails("a disabled key", 1, "KEY_DISABLED")
	kg.run("keys", "enable", key.ID).ok("enable")
	authorize("triage-daily").ok("enabled again")
	kg.run("authorize", "--api-key", key.Token, "--type", "flow", "--id", "f", "--action", "Bad Action").fails("an invalid question", 2, "422 invalid")
	kg.run("authorize", "--type", "flow", "--id", "f", "--action", "read").fails("no key", 2, "api-key")
	(&cmdline{t: t, url: "http://127.0.0.1:1", token: "x"}).run("authorize", "--api-key", key.Token, "--type", "flow", "--id", "f", "--action", "read", "--timeout", "2s").
		fails("no keygate", 2, "is keygate running at http://127.0.0.1:1")

	deadline := time.Now().Add(10 * time.Second)
	for {
		var events []map[string]any
		kg.run("audit", "list", "-o", "json", "--action", "api_key.created", "--since", "1h").ok("audit").json(&events)
		if len(events) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit list: %v, want the two creations", events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a := kg.run("audit", "list", "--limit", "3").ok("audit as a table"); !strings.HasPrefix(a.stdout, "TIME") || strings.Count(a.stdout, "\n") != 4 {
		t.Fatalf("audit list --limit 3:\n%s", a.stdout)
	}

	up := apptest.Upstream(t, "search", "delete_repo")
	var srv struct{ ID, SyncError string }
	kg.run("mcp", "servers", "create", "github", up.URL, "--header", "Authorization: Bearer a,b", "--call-timeout", "5s", "-o", "json").ok("register").json(&srv)
	if got := <-up.Auth; srv.SyncError != "" || got != "Bearer a,b" {
		t.Fatalf("register: %+v; the upstream got Authorization %q", srv, got)
	}
	if l := kg.run("mcp", "servers", "list").ok("servers"); !strings.Contains(l.stdout, "github") || strings.Contains(l.stdout, "Bearer") {
		t.Fatalf("servers list, never the headers:\n%s", l.stdout)
	}
	kg.run("mcp", "servers", "get", srv.ID).ok("get server")
	if s := kg.run("mcp", "servers", "sync", srv.ID).ok("sync"); !strings.Contains(s.stdout, "tools:") {
		t.Fatalf("sync:\n%s", s.stdout)
	}
	if tl := kg.run("mcp", "tools", "list").ok("tools"); !strings.Contains(tl.stdout, "github__search") || !strings.Contains(tl.stdout, "github__delete_repo") {
		t.Fatalf("tools list:\n%s", tl.stdout)
	}
	kg.run("mcp", "servers", "create", "x").fails("a server without a URL", 2, "NAME and a URL")
	kg.run("mcp", "servers", "delete", srv.ID).ok("delete server")
	kg.run("mcp", "servers", "get", srv.ID).fails("a deleted server", 1, "404 not_found")

	// A key's lifecycle: external id, meta, rate limit and credits, its
	// rotation and usage history.
	var metered struct{ ID, Token string }
	var created map[string]any
	mk := kg.run("keys", "create", "metered", "--agent", "a1", "--external-id", "cus_42", "--meta", `{"plan": "pro", "seats": 3}`,
		"--rate-limit", "100/1m", "--credits", "10", "--refill", "10/1h", "-o", "json").ok("create with limits")
	mk.json(&created)
	if created["external_id"] != "cus_42" || member(created, "meta", "plan") != "pro" || member(created, "meta", "seats") != 3.0 ||
		member(created, "rate_limit", "limit") != 100.0 || member(created, "rate_limit", "window_ms") != 60000.0 ||
		member(created, "credits", "remaining") != 10.0 || member(created, "credits", "refill", "interval_ms") != 3600000.0 {
		t.Fatalf("create with limits: %v", created)
	}
	metered.ID, metered.Token = created["id"].(string), created["token"].(string)
	if g := kg.run("keys", "get", metered.ID).ok("get a metered key"); !strings.Contains(g.stdout, "100 per 1m0s") ||
		!strings.Contains(g.stdout, "10, topped up to 10 every 1h0m0s") || !strings.Contains(g.stdout, `{"plan":"pro","seats":3}`) ||
		!strings.Contains(g.stdout, "cus_42") {
		t.Fatalf("get shows the limits and meta:\n%s", g.stdout)
	}
	kg.run("keys", "list", "-o", "json", "--external-id", "cus_42").ok("list by external id").json(&keys)
	if len(keys) != 1 || keys[0]["id"] != metered.ID {
		t.Fatalf("list --external-id: %v", keys)
	}
	a := kg.run("authorize", "--api-key", metered.Token, "--type", "agent", "--id", "a1", "--action", "execute").ok("a metered decision")
	if !strings.Contains(a.stdout, "99 of 100 left") || !strings.Contains(a.stdout, "credits left:") {
		t.Fatalf("authorize shows the rate limit and credits:\n%s", a.stdout)
	}
	kg.run("keys", "update", metered.ID, "--no-rate-limit", "--credits", "0", "--no-meta", "--external-id", "cus_43", "-o", "json").ok("update limits").json(&updated)
	if updated["rate_limit"] != nil || member(updated, "credits", "remaining") != 0.0 || updated["meta"] != nil || updated["external_id"] != "cus_43" {
		t.Fatalf("update limits: %v", updated)
	}
	kg.run("authorize", "--api-key", metered.Token, "--type", "agent", "--id", "a1", "--action", "execute").fails("out of credits", 1, "USAGE_EXCEEDED")
	kg.run("keys", "update", metered.ID, "--no-credits", "-o", "json").ok("remove the credits").json(&updated)
	if updated["credits"] != nil {
		t.Fatalf("--no-credits: %v", updated)
	}
	kg.run("keys", "update", metered.ID, "--meta", "[1]").fails("meta that is no object", 2, "JSON object")
	kg.run("keys", "update", metered.ID, "--rate-limit", "100").fails("a rate limit without its window", 2, "N/WINDOW")
	kg.run("keys", "update", metered.ID, "--rate-limit", "0/1m").fails("a rate limit keygate refuses", 1, "rate_limit.limit")
	kg.run("keys", "update", metered.ID, "--credits", "5", "--no-credits").fails("both credits flags", 2, "not both")
	kg.run("keys", "create", "x", "--refill", "1/1h").fails("a refill without credits", 2, "--refill goes with --credits")

	rot := kg.run("keys", "rotate", metered.ID, "--grace", "1h").ok("rotate")
	if !strings.Contains(rot.stdout, "Token (shown this once") || strings.Contains(rot.stdout, metered.Token) ||
		!strings.Contains(rot.stdout, "previous token until:") {
		t.Fatalf("rotate prints the key and its new token:\n%s", rot.stdout)
	}
	var rotated map[string]any
	kg.run("keys", "rotate", metered.ID, "-o", "json").ok("rotate again, without grace").json(&rotated)
	if rotated["token"] == nil || rotated["rotated_at"] == nil {
		t.Fatalf("rotate -o json: %v", rotated)
	}
	kg.run("authorize", "--api-key", metered.Token, "--type", "agent", "--id", "a1", "--action", "execute").fails("the first token, replaced twice", 1, "KEY_INVALID")
	kg.run("keys", "rotate", metered.ID, "--grace", "1500ms").fails("a grace of part of a second", 2, "whole seconds")
	kg.run("keys", "rotate", metered.ID, "--grace", "200h").fails("a grace over 7 days", 2, "168h")

	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var rep struct {
			Data  []map[string]any
			Total map[string]float64
		}
		kg.run("keys", "usage", metered.ID, "-o", "json").ok("usage").json(&rep)
		if rep.Total["allowed"] == 1 && rep.Total["usage_exceeded"] == 1 && len(rep.Data) == 24 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage never counted the two decisions: %v", rep.Total)
		}
	}
	if u := kg.run("keys", "usage", metered.ID, "--granularity", "day", "--since", "72h").ok("usage by day"); !strings.HasPrefix(u.stdout, "FROM") ||
		strings.Count(u.stdout, "\n") != 6 || !strings.Contains(u.stdout, "total") {
		t.Fatalf("usage as a table, a header, 4 days and the total:\n%s", u.stdout)
	}
	kg.run("keys", "usage", metered.ID, "--granularity", "week").fails("a granularity keygate refuses", 1, "granularity")

	if p := kg.run("policy", "status").ok("policy status"); !strings.Contains(p.stdout, "sha256:") || !strings.Contains(p.stdout, "embedded") {
		t.Fatalf("policy status:\n%s", p.stdout)
	}
	var status map[string]any
	kg.run("policy", "status", "-o", "json").ok("policy status as JSON").json(&status)
	if status["source"] != "embedded" || status["last_error"] != nil {
		t.Fatalf("policy status -o json: %v", status)
	}
	(&cmdline{t: t, url: kg.url, token: k.Token("acme", "bob")}).run("policy", "status").fails("a member asking for the policy", 1, "403 forbidden")
	kg.run("keys", "delete", metered.ID).ok("delete the metered key")

	if d := kg.run("keys", "delete", key.ID).ok("delete"); !strings.Contains(d.stdout, "deleted") {
		t.Fatalf("delete:\n%s", d.stdout)
	}
	kg.run("keys", "get", key.ID).fails("a deleted key", 1, "404 not_found")

	for _, tc := range []struct {
		note string
		args []string
		exit int
		text string
	}{
		{"a group alone", []string{"keys"}, 2, "needs a command"},
		{"an unknown verb", []string{"keys", "reroll"}, 2, "unknown command"},
		{"rotate without an id", []string{"keys", "rotate"}, 2, "exactly one KEY_ID"},
		{"policy status with an argument", []string{"policy", "status", "x"}, 2, "no arguments"},
		{"no id", []string{"keys", "get"}, 2, "exactly one KEY_ID"},
		{"an unknown flag", []string{"keys", "list", "--nope"}, 2, "flag provided but not defined"},
		{"an unknown format", []string{"keys", "list", "-o", "yaml"}, 2, "table or json"},
		{"an unknown audit verb", []string{"audit", "show"}, 2, "unknown command"},
	} {
		kg.run(tc.args...).fails(tc.note, tc.exit, tc.text)
	}
	(&cmdline{t: t, url: kg.url}).run("keys", "list").fails("no token", 2, "KEYGATE_TOKEN")
	(&cmdline{t: t, url: kg.url, token: "not-a-jwt"}).run("keys", "list").fails("a refused token", 1, "the management token was refused")

	doc, err := server.OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	if out := kg.run("openapi").ok("openapi"); out.stdout != string(doc) {
		t.Fatal("keygate openapi prints the document served at /openapi.json")
	}
	if out := kg.run("openapi", "--yaml").ok("openapi --yaml"); out.stdout != string(server.OpenAPIYAML()) {
		t.Fatal("keygate openapi --yaml prints the YAML source")
	}
}

// member reads a nested member of a decoded JSON object; nil when absent.
func member(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = o[p]
	}
	return v
}
