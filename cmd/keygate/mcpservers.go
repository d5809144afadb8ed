package main

import (
	"bufio"
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

// runMCP manages the upstream MCP servers behind keygate's /mcp.
func runMCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	servers := &cli.Command{
		Name: "servers", Usage: "the tenant's upstream MCP servers (tenant admins)",
		Commands: []*cli.Command{
			{
				Name: "list", Usage: "list the servers",
				Flags: []cli.Flag{&cli.StringFlag{Name: "user", Usage: "only the servers this user registered"}},
				Action: action(true, func(s *session, c *cli.Command) error {
					var list []client.MCPServer
					for srv, err := range s.client.MCPServers(s.ctx, client.ListMCPServersParams{UserID: c.String("user"), Limit: 100}) {
						if err != nil {
							return err
						}
						list = append(list, *srv)
					}
					if s.out.json {
						return s.out.JSON(nonNil(list))
					}
					rows := make([][]string, 0, len(list))
					for _, srv := range list {
						rows = append(rows, []string{srv.ID, srv.Name, srv.URL, strconv.FormatBool(srv.Enabled), when(srv.LastSyncedAt), dash(srv.SyncError)})
					}
					return s.out.table([]string{"ID", "NAME", "URL", "ENABLED", "LAST SYNCED", "SYNC ERROR"}, rows)
				}),
			},
			byID("get", "show one server", "SERVER_ID", func(s *session, id string) error {
				srv, err := s.client.GetMCPServer(s.ctx, id)
				if err != nil {
					return err
				}
				return s.printServer(srv)
			}),
			{
				Name: "create", Usage: "register a server at its streamable-HTTP endpoint, then sync its tools", ArgsUsage: "NAME URL",
				// Header values may hold commas.
				DisableSliceFlagSeparator: true,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "header", Usage: `a header sent upstream, "Name: value"; repeatable (visible to other users of this machine: prefer --headers-file)`},
					&cli.StringFlag{Name: "headers-file", Usage: `a file of "Name: value" lines, or a JSON object; - for standard input`},
					&cli.DurationFlag{Name: "call-timeout", HideDefault: true, Usage: "bound of each call and sync, 100ms to 2m (default: 30s)"},
					&cli.BoolFlag{Name: "disabled", Usage: "register it disabled"},
				},
				Action: action(true, func(s *session, c *cli.Command) error {
					if c.NArg() != 2 {
						return usageError{"keygate mcp servers create takes a NAME and a URL"}
					}
					req := client.CreateMCPServerRequest{Name: c.Args().Get(0), URL: c.Args().Get(1)}
					var err error
					if req.Headers, err = headersOf(c); err != nil {
						return err
					}
					if c.IsSet("call-timeout") {
						ms := int(c.Duration("call-timeout") / time.Millisecond)
						req.TimeoutMS = &ms
					}
					if c.Bool("disabled") {
						off := false
						req.Enabled = &off
					}
					srv, err := s.client.CreateMCPServer(s.ctx, req)
					if err != nil {
						return err
					}
					return s.printServer(srv)
				}),
			},
			byID("sync", "refresh a server's tool catalog now", "SERVER_ID", func(s *session, id string) error {
				report, err := s.client.SyncMCPServer(s.ctx, id)
				if err != nil {
					return err
				}
				if s.out.json {
					return s.out.JSON(report)
				}
				return s.out.fields("server", report.Server.Name, "tools", strconv.Itoa(len(report.Tools)),
					"added", list(report.Added), "removed", list(report.Removed), "changed", list(report.Changed), "skipped", list(report.Skipped))
			}),
			byID("delete", "remove a server; its tools leave /mcp at once", "SERVER_ID", func(s *session, id string) error {
				return s.deleted("MCP server", id, s.client.DeleteMCPServer(s.ctx, id))
			}),
		},
	}
	tools := &cli.Command{
		Name: "tools", Usage: "the tenant's tool catalog",
		Commands: []*cli.Command{{
			Name: "list", Usage: "list the tools, by the names keys are scoped with",
			Flags: []cli.Flag{&cli.StringFlag{Name: "server", Usage: "only this server's tools (its id)"}},
			Action: action(true, func(s *session, c *cli.Command) error {
				var list []client.MCPTool
				for tool, err := range s.client.MCPTools(s.ctx, client.ListMCPToolsParams{ServerID: c.String("server"), Limit: 100}) {
					if err != nil {
						return err
					}
					list = append(list, *tool)
				}
				if s.out.json {
					return s.out.JSON(nonNil(list))
				}
				rows := make([][]string, 0, len(list))
				for _, t := range list {
					rows = append(rows, []string{t.ExposedName, t.ServerName, strconv.FormatBool(t.Available), firstLine(t.Description)})
				}
				return s.out.table([]string{"NAME", "SERVER", "AVAILABLE", "DESCRIPTION"}, rows)
			}),
		}},
	}
	return runRemote(ctx, &cli.Command{
		Name: "keygate mcp", Usage: "manage the MCP gateway's upstream servers and tools",
		Commands: []*cli.Command{servers, tools},
	}, args, stdout, stderr)
}

func (s *session) printServer(srv *client.MCPServer) error {
	if s.out.json {
		return s.out.JSON(srv)
	}
	return s.out.fields("id", srv.ID, "name", srv.Name, "url", srv.URL, "enabled", strconv.FormatBool(srv.Enabled),
		"timeout", (time.Duration(srv.TimeoutMS) * time.Millisecond).String(), "last synced", when(srv.LastSyncedAt),
		"sync error", dash(srv.SyncError), "registered by", srv.UserID, "created", when(&srv.CreatedAt))
}

// headersOf reads --header and --headers-file; nil when neither is given.
func headersOf(c *cli.Command) (map[string]string, error) {
	var h map[string]string
	add := func(line string) error {
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return usageError{`a header must be "Name: value"`}
		}
		if h == nil {
			h = map[string]string{}
		}
		h[strings.TrimSpace(name)] = strings.TrimSpace(value)
		return nil
	}
	if f := c.String("headers-file"); f != "" {
		if f == "-" {
			f = "@-"
		} else {
			f = "@" + f
		}
		data, err := readArg(f, stdinOf(c))
		if err != nil {
			return nil, usageError{"--headers-file: " + err.Error()}
		}
		if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
			if err := json.Unmarshal(trimmed, &h); err != nil {
				return nil, usageError{"--headers-file: " + err.Error()}
			}
		} else {
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
					if err := add(line); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	for _, line := range c.StringSlice("header") {
		if err := add(line); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if r := []rune(s); len(r) > 80 {
		s = string(r[:77]) + "…"
	}
	return s
}
