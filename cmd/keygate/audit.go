package main

import (
	"context"
	"io"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/urfave/cli/v3"
)

// runAudit reads the tenant's audit trail on a running keygate.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRemote(ctx, &cli.Command{
		Name:  "keygate audit",
		Usage: "read your tenant's audit trail (tenant admins)",
		Commands: []*cli.Command{{
			Name: "list", Usage: "list audit events, newest first",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "action", Usage: "only this action, such as api_key.created or authorization.denied"},
				&cli.StringFlag{Name: "key", Usage: "only events about this key id"},
				&cli.StringFlag{Name: "since", Usage: "only events at or after this time: RFC 3339, or a duration ago (24h)"},
				&cli.StringFlag{Name: "until", Usage: "only events before this time: RFC 3339, or a duration ago"},
				&cli.BoolFlag{Name: "tenantless", Usage: "the events of no tenant instead: refused credentials that matched no key (platform_admin)"},
				&cli.IntFlag{Name: "limit", Value: 50, Usage: "show at most this many; 0: all"},
			},
			Action: action(true, func(s *session, c *cli.Command) error {
				p := client.ListAuditEventsParams{Action: c.String("action"), KeyID: c.String("key"),
					Tenantless: c.Bool("tenantless"), Limit: pageSize(c.Int("limit"))}
				var err error
				if p.Since, err = timeFlag(c, "since"); err != nil {
					return err
				}
				if p.Until, err = timeFlag(c, "until"); err != nil {
					return err
				}
				var events []client.AuditEvent
				for ev, err := range s.client.AuditEvents(s.ctx, p) {
					if err != nil {
						return err
					}
					events = append(events, *ev)
					if n := c.Int("limit"); n > 0 && len(events) >= n {
						break
					}
				}
				if s.out.json {
					return s.out.JSON(nonNil(events))
				}
				rows := make([][]string, 0, len(events))
				for _, e := range events {
					rows = append(rows, []string{e.OccurredAt.UTC().Format(time.RFC3339), e.Action, e.Outcome,
						e.ActorType + ":" + e.ActorID, dash(e.TargetType) + ":" + dash(e.TargetID), dash(e.Reason)})
				}
				return s.out.table([]string{"TIME", "ACTION", "OUTCOME", "ACTOR", "TARGET", "REASON"}, rows)
			}),
		}},
	}, args, stdout, stderr)
}

// timeFlag reads a time given as RFC 3339 or as a duration before now.
func timeFlag(c *cli.Command, name string) (time.Time, error) {
	v := c.String(name)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, usageError{"--" + name + " must be an RFC 3339 time or a duration ago, such as 24h"}
}
