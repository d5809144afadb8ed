package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/keygate/keygate/client"
	"github.com/urfave/cli/v3"
)

// runAuthorize asks keygate one question, as a script would: the exit
// status is 0 when allowed, 1 when denied (a refused key included) and 2
// when no decision was made.
func runAuthorize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := runRemote(ctx, &cli.Command{
		Name:      "keygate authorize",
		Usage:     "may this API key do this action on this resource? exit 0: allowed, 1: denied, 2: no decision",
		UsageText: "keygate authorize --type flow --id triage-daily --action execute [--api-key pk_… | KEYGATE_API_KEY]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "api-key", Sources: cli.EnvVars("KEYGATE_API_KEY"), Required: true,
				Usage: "the key asked about (KEYGATE_API_KEY; the environment keeps it out of process listings)"},
			&cli.StringFlag{Name: "type", Required: true, Usage: "agent, flow, mcp_tool or vector_store"},
			&cli.StringFlag{Name: "id", Required: true, Usage: "the resource's id"},
			&cli.StringFlag{Name: "action", Required: true, Usage: "such as read, execute, call, query"},
			&cli.StringFlag{Name: "tenant", Usage: "the resource's tenant, when it has one"},
		},
		Action: action(false, func(s *session, c *cli.Command) error {
			if c.NArg() > 0 {
				return usageError{fmt.Sprintf("authorize takes no arguments, got %q", c.Args().Slice())}
			}
			d, err := s.client.Authorize(s.ctx, client.AuthorizeRequest{
				APIKey:   strings.TrimSpace(c.String("api-key")),
				Resource: client.Resource{Type: c.String("type"), ID: c.String("id"), TenantID: c.String("tenant")},
				Action:   c.String("action"),
			})
			if err != nil {
				return err
			}
			if s.out.json {
				err = s.out.JSON(d)
			} else {
				pairs := []string{"decision", d.Code, "reasons", strings.Join(d.Reasons, "; "), "decision id", d.DecisionID}
				if r := d.RateLimit; r != nil {
					pairs = append(pairs, "rate limit", fmt.Sprintf("%d of %d left, all again at %s", r.Remaining, r.Limit, when(&r.ResetAt)))
				}
				if n := d.CreditsRemaining; n != nil {
					pairs = append(pairs, "credits left", strconv.FormatInt(*n, 10))
				}
				err = s.out.fields(pairs...)
			}
			if err != nil {
				return err
			}
			if !d.Allowed {
				return exitStatus{code: 1}
			}
			return nil
		}),
	}, args, stdout, stderr)
	if err == nil {
		return nil
	}
	if e := (exitStatus{}); errors.As(err, &e) && e.code == 1 {
		return err // denied
	}
	return exitStatus{code: 2, err: err} // usage, network or a problem: no decision
}
