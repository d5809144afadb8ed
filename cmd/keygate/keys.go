package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/urfave/cli/v3"
)

// runKeys manages API keys on a running keygate.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	setEnabled := func(on bool) func(s *session, id string) error {
		return func(s *session, id string) error {
			key, err := s.client.UpdateKey(s.ctx, id, client.UpdateKeyRequest{Enabled: &on})
			if err != nil {
				return err
			}
			return s.printKey(key)
		}
	}
	return runRemote(ctx, &cli.Command{
		Name:  "keygate keys",
		Usage: "manage the API keys of your tenant",
		Commands: []*cli.Command{
			{
				Name: "create", Usage: "create a key; its token is printed this once", ArgsUsage: "NAME",
				Flags: append(append(scopeFlags(), expiryFlags(false)...), limitFlags(false)...),
				Action: action(true, func(s *session, c *cli.Command) error {
					name, err := oneID(c, "NAME")
					if err != nil {
						return err
					}
					req := client.CreateKeyRequest{Name: name}
					if scope, err := scopeOf(c, stdinOf(c)); err != nil {
						return err
					} else if scope != nil {
						req.PermissionScope = *scope
					}
					if req.ExpiresAt, _, err = expiryOf(c); err != nil {
						return err
					}
					limits, err := limitsOf(c)
					if err != nil {
						return err
					}
					limits.applyCreate(&req)
					key, err := s.client.CreateKey(s.ctx, req)
					if err != nil {
						return err
					}
					return s.printToken(key)
				}),
			},
			{
				Name: "list", Usage: "list keys, newest first",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "user", Usage: "only this user's keys"},
					&cli.StringFlag{Name: "external-id", Usage: "only the keys of this external id"},
					&cli.BoolFlag{Name: "enabled", Usage: "only enabled keys; --enabled=false: only disabled ones"},
					&cli.IntFlag{Name: "limit", Usage: "show at most this many; 0: all"},
				},
				Action: action(true, func(s *session, c *cli.Command) error {
					p := client.ListKeysParams{UserID: c.String("user"), ExternalID: c.String("external-id"), Limit: pageSize(c.Int("limit"))}
					if c.IsSet("enabled") {
						on := c.Bool("enabled")
						p.Enabled = &on
					}
					var keys []client.Key
					for key, err := range s.client.Keys(s.ctx, p) {
						if err != nil {
							return err
						}
						keys = append(keys, *key)
						if n := c.Int("limit"); n > 0 && len(keys) >= n {
							break
						}
					}
					if s.out.json {
						return s.out.JSON(nonNil(keys))
					}
					rows := make([][]string, 0, len(keys))
					for _, k := range keys {
						rows = append(rows, []string{k.ID, k.Name, k.Start + "…", k.UserID, strconv.FormatBool(k.Enabled), when(k.ExpiresAt), when(k.LastUsedAt)})
					}
					return s.out.table([]string{"ID", "NAME", "START", "USER", "ENABLED", "EXPIRES", "LAST USED"}, rows)
				}),
			},
			byID("get", "show one key", "KEY_ID", func(s *session, id string) error {
				key, err := s.client.GetKey(s.ctx, id)
				if err != nil {
					return err
				}
				return s.printKey(key)
			}),
			{
				Name: "update", Usage: "change a key's name, scope, expiry, external id, meta, rate limit or credits", ArgsUsage: "KEY_ID",
				Flags: append(append(append(scopeFlags(), expiryFlags(true)...), limitFlags(true)...),
					&cli.StringFlag{Name: "name", Usage: "a new name"}),
				Action: action(true, func(s *session, c *cli.Command) error {
					id, err := oneID(c, "KEY_ID")
					if err != nil {
						return err
					}
					var req client.UpdateKeyRequest
					if c.IsSet("name") {
						name := c.String("name")
						req.Name = &name
					}
					if req.PermissionScope, err = scopeOf(c, stdinOf(c)); err != nil {
						return err
					}
					if req.ExpiresAt, req.ClearExpiresAt, err = expiryOf(c); err != nil {
						return err
					}
					limits, err := limitsOf(c)
					if err != nil {
						return err
					}
					limits.applyUpdate(&req)
					if req.Name == nil && req.PermissionScope == nil && req.ExpiresAt == nil && !req.ClearExpiresAt && limits.empty() {
						return usageError{"nothing to change: give --name, a scope, an expiry, --external-id, --meta, --rate-limit or --credits"}
					}
					key, err := s.client.UpdateKey(s.ctx, id, req)
					if err != nil {
						return err
					}
					return s.printKey(key)
				}),
			},
			byID("enable", "turn a key on", "KEY_ID", setEnabled(true)),
			byID("disable", "turn a key off; it stops working at once", "KEY_ID", setEnabled(false)),
			rotateCommand(),
			usageCommand(),
			byID("delete", "delete a key; it stops working at once", "KEY_ID", func(s *session, id string) error {
				return s.deleted("key", id, s.client.DeleteKey(s.ctx, id))
			}),
		},
	}, args, stdout, stderr)
}

// printKey shows one key: every field, the whole scope.
func (s *session) printKey(k *client.Key) error {
	if s.out.json {
		return s.out.JSON(k)
	}
	by := func(st *client.Setter) string {
		if st == nil {
			return "-"
		}
		if st.Admin {
			return st.UserID + " (admin)"
		}
		return st.UserID
	}
	sc := k.PermissionScope
	fields := []string{
		"id", k.ID, "name", k.Name, "start", k.Start + "…", "tenant", k.TenantID, "user", k.UserID,
		"enabled", strconv.FormatBool(k.Enabled), "disabled by", by(k.DisabledBy),
		"expires", when(k.ExpiresAt), "expiry set by", by(k.ExpiresAtSetBy), "last used", when(k.LastUsedAt),
		"agents", list(sc.AgentIDs), "flows", list(sc.FlowIDs), "mcp tools", list(sc.MCPToolIDs), "vector stores", list(sc.VectorStoreIDs),
	}
	fields = append(fields, limitFields(k, by)...)
	return s.out.fields(append(fields, "created", when(&k.CreatedAt), "updated", when(&k.UpdatedAt))...)
}

func list(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	return strings.Join(ids, ", ")
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// scopeFlags name a key's scope: one flag per list, repeatable or
// comma-separated, or the whole document with --scope.
func scopeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "agent", Usage: "agent id or glob the key may use; repeatable"},
		&cli.StringSliceFlag{Name: "flow", Usage: "flow id or glob; repeatable"},
		&cli.StringSliceFlag{Name: "mcp-tool", Usage: "MCP tool (<server>__<tool>) or glob; repeatable"},
		&cli.StringSliceFlag{Name: "vector-store", Usage: "vector store id or glob; repeatable"},
		&cli.StringFlag{Name: "scope", Usage: `the whole scope as JSON ({"flow_ids": ["triage-*"]}), or @FILE, @- for standard input`},
	}
}

// scopeOf reads the scope flags: nil when none is given. With update, they
// give the whole new scope.
func scopeOf(c *cli.Command, stdin io.Reader) (*client.Scope, error) {
	lists := []string{"agent", "flow", "mcp-tool", "vector-store"}
	anyList := false
	for _, l := range lists {
		anyList = anyList || c.IsSet(l)
	}
	if c.IsSet("scope") {
		if anyList {
			return nil, usageError{"give --scope or the list flags (--agent, --flow, --mcp-tool, --vector-store), not both"}
		}
		data, err := readArg(c.String("scope"), stdin)
		if err != nil {
			return nil, usageError{"--scope: " + err.Error()}
		}
		var sc client.Scope
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sc); err != nil {
			return nil, usageError{"--scope must be a JSON object of agent_ids, flow_ids, mcp_tool_ids, vector_store_ids: " + err.Error()}
		}
		return &sc, nil
	}
	if !anyList {
		return nil, nil
	}
	return &client.Scope{AgentIDs: c.StringSlice("agent"), FlowIDs: c.StringSlice("flow"),
		MCPToolIDs: c.StringSlice("mcp-tool"), VectorStoreIDs: c.StringSlice("vector-store")}, nil
}

func expiryFlags(canClear bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "expires-at", Usage: "when the key stops working, RFC 3339 (2027-01-31T00:00:00Z)"},
		&cli.DurationFlag{Name: "expires-in", Usage: "the key stops working after this long (720h)"},
	}
	if canClear {
		flags = append(flags, &cli.BoolFlag{Name: "no-expiry", Usage: "remove the expiry"})
	}
	return flags
}

// expiryOf reads the expiry flags: a time, a clearing, or neither.
func expiryOf(c *cli.Command) (*time.Time, bool, error) {
	n := 0
	for _, f := range []string{"expires-at", "expires-in", "no-expiry"} {
		if c.IsSet(f) {
			n++
		}
	}
	if n > 1 {
		return nil, false, usageError{"give one of --expires-at, --expires-in, --no-expiry"}
	}
	switch {
	case c.IsSet("expires-at"):
		t, err := time.Parse(time.RFC3339, c.String("expires-at"))
		if err != nil {
			return nil, false, usageError{"--expires-at must be an RFC 3339 time, such as 2027-01-31T00:00:00Z"}
		}
		return &t, false, nil
	case c.IsSet("expires-in"):
		d := c.Duration("expires-in")
		if d <= 0 {
			return nil, false, usageError{"--expires-in must be positive"}
		}
		t := time.Now().Add(d).UTC().Truncate(time.Second)
		return &t, false, nil
	case c.IsSet("no-expiry") && c.Bool("no-expiry"):
		return nil, true, nil
	}
	return nil, false, nil
}

// stdinOf is where @- reads from.
func stdinOf(c *cli.Command) io.Reader {
	if r := c.Root().Reader; r != nil {
		return r
	}
	return strings.NewReader("")
}
