package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/urfave/cli/v3"
)

// The management commands (keys, audit, mcp, authorize) talk to a running
// keygate through package client. Each is a tree of urfave/cli commands:
// flags may come before or after arguments, -flag and --flag both work,
// and every global flag has its KEYGATE_* twin.

// exitStatus ends the command with an exit code of its own; a nil err
// prints nothing.
type exitStatus struct {
	code int
	err  error
}

func (e exitStatus) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e exitStatus) Unwrap() error { return e.err }

// remoteFlags are every management command's: where keygate is, who is
// asking, and how to print.
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "url", Value: client.DefaultURL, Sources: cli.EnvVars("KEYGATE_URL"),
			Usage: "keygate's base URL"},
		&cli.StringFlag{Name: "token", Sources: cli.EnvVars("KEYGATE_TOKEN"),
			Usage: "management JWT; keygate token prints one"},
		&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Sources: cli.EnvVars("KEYGATE_OUTPUT"),
			Usage: "table for people, json for scripts"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Sources: cli.EnvVars("KEYGATE_TIMEOUT"),
			Usage: "how long a command may take, retries included"},
	}
}

// runRemote runs a management command tree with the process's arguments.
func runRemote(ctx context.Context, root *cli.Command, args []string, stdout, stderr io.Writer) error {
	root.Flags = append(remoteFlags(), root.Flags...)
	root.Reader, root.Writer, root.ErrWriter = os.Stdin, stdout, stderr
	root.HideHelpCommand = true
	// Errors reach main, which prints them and picks the exit code; urfave
	// must never exit by itself.
	root.ExitErrHandler = func(context.Context, *cli.Command, error) {}
	prepare(root)
	return root.Run(ctx, append([]string{root.Name}, args...))
}

// prepare makes every command report usage errors as usageError (exit 2)
// and every group refuse an unknown or missing subcommand.
func prepare(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, _ *cli.Command, err error, _ bool) error {
		return usageError{err.Error()}
	}
	if len(cmd.Commands) > 0 && cmd.Action == nil {
		cmd.Action = func(_ context.Context, c *cli.Command) error {
			if c.NArg() > 0 {
				return usageError{fmt.Sprintf("unknown command %q; see %s -h", c.Args().First(), c.FullName())}
			}
			_ = cli.ShowSubcommandHelp(c)
			return usageError{c.FullName() + " needs a command"}
		}
	}
	for _, sub := range cmd.Commands {
		prepare(sub)
	}
}

// session is what an action needs: the client, the context bounded by
// --timeout, and the printer.
type session struct {
	ctx    context.Context
	client *client.Client
	out    *printer
	url    string
}

// connect reads the global flags. A command that manages keygate needs a
// token; one that asks for a decision does not.
func connect(ctx context.Context, c *cli.Command, needToken bool) (*session, context.CancelFunc, error) {
	out, err := newPrinter(c)
	if err != nil {
		return nil, nil, err
	}
	token := strings.TrimSpace(c.String("token"))
	if needToken && token == "" {
		return nil, nil, usageError{"no management token: set KEYGATE_TOKEN or --token (`keygate token --tenant T --user U --role admin` prints one)"}
	}
	cl, err := client.New(c.String("url"), client.WithToken(token), client.WithUserAgent("keygate-cli/"+version))
	if err != nil {
		return nil, nil, usageError{err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration("timeout"))
	return &session{ctx: ctx, client: cl, out: out, url: c.String("url")}, cancel, nil
}

// action wraps a command's work: connect, do it, and explain a failure.
func action(needToken bool, do func(s *session, c *cli.Command) error) cli.ActionFunc {
	return func(ctx context.Context, c *cli.Command) error {
		s, cancel, err := connect(ctx, c, needToken)
		if err != nil {
			return err
		}
		defer cancel()
		return s.explain(do(s, c))
	}
}

// pageSize is the page to ask for when at most limit items are shown (0:
// all of them).
func pageSize(limit int) int {
	if limit <= 0 || limit > 100 {
		return 100
	}
	return limit
}

// byID is a command on one thing, named by its id (arg) as the argument.
func byID(name, usage, arg string, do func(s *session, id string) error) *cli.Command {
	return &cli.Command{Name: name, Usage: usage, ArgsUsage: arg, Action: action(true, func(s *session, c *cli.Command) error {
		id, err := oneID(c, arg)
		if err != nil {
			return err
		}
		return do(s, id)
	})}
}

// deleted reports the outcome of a deletion.
func (s *session) deleted(what, id string, err error) error {
	if err != nil {
		return err
	}
	if s.out.json {
		return s.out.JSON(map[string]any{"id": id, "deleted": true})
	}
	_, err = fmt.Fprintf(s.out.w, "%s %s deleted\n", what, id)
	return err
}

// oneID reads the single argument of a command on one thing.
func oneID(c *cli.Command, what string) (string, error) {
	if c.NArg() != 1 || c.Args().First() == "" {
		return "", usageError{fmt.Sprintf("%s takes exactly one %s", c.FullName(), what)}
	}
	return c.Args().First(), nil
}

// printer writes answers as tables or as JSON.
type printer struct {
	w    io.Writer
	json bool
}

func newPrinter(c *cli.Command) (*printer, error) {
	switch o := c.String("output"); o {
	case "table", "":
		return &printer{w: c.Root().Writer}, nil
	case "json":
		return &printer{w: c.Root().Writer, json: true}, nil
	default:
		return nil, usageError{fmt.Sprintf("--output must be table or json, got %q", o)}
	}
}

// JSON prints v indented, as the API answered it.
func (p *printer) JSON(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table prints a header and rows, aligned.
func (p *printer) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			r[i] = printable(r[i])
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields prints name: value lines, aligned.
func (p *printer) fields(pairs ...string) error {
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], printable(pairs[i+1]))
	}
	return tw.Flush()
}

// printable keeps what keygate answered from moving the terminal: control
// characters become spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readArg reads a flag's value, or the file it names with @FILE ("@-" is
// standard input).
func readArg(v string, stdin io.Reader) ([]byte, error) {
	name, ok := strings.CutPrefix(v, "@")
	if !ok {
		return []byte(v), nil
	}
	if name == "-" {
		return io.ReadAll(io.LimitReader(stdin, 1<<20))
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// explain adds the likely fix to a failure: keygate not where the URL
// says, or a token it refuses.
func (s *session) explain(err error) error {
	var e *client.Error
	var op *net.OpError
	switch {
	case errors.As(err, &e) && e.Status == http.StatusUnauthorized && e.Code == client.CodeUnauthorized:
		return fmt.Errorf("%w\nthe management token was refused: set KEYGATE_TOKEN to a valid one (keygate token --tenant T --user U prints one)", err)
	case errors.As(err, &op) && op.Op == "dial":
		return fmt.Errorf("%w\nis keygate running at %s? Set KEYGATE_URL or --url", err, s.url)
	}
	return err
}
