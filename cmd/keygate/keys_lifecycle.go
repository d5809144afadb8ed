package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/client"
	"github.com/urfave/cli/v3"
)

// A key's lifecycle on the command line: its external id, meta, rate limit
// and credits on create and update, rotation, and its usage history; and
// the policy a running keygate serves.

// limitFlags name what a key carries besides its scope and expiry; with
// update, --no-* flags remove each.
func limitFlags(canClear bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "external-id", Usage: "your own id for the key's customer or owner"},
		&cli.StringFlag{Name: "meta", Usage: `a JSON object kept with the key, which the policy reads ({"plan": "pro"}), or @FILE, @- for standard input`},
		&cli.StringFlag{Name: "rate-limit", Usage: "at most N decision requests per window: N/WINDOW, such as 100/1m"},
		&cli.Int64Flag{Name: "credits", Usage: "usage credits: each allowed check spends one (on update: the new balance)"},
		&cli.StringFlag{Name: "refill", Usage: "with --credits, top them up to N every INTERVAL: N/INTERVAL, such as 1000/24h"},
	}
	if canClear {
		flags = append(flags,
			&cli.BoolFlag{Name: "no-external-id", Usage: "remove the external id"},
			&cli.BoolFlag{Name: "no-meta", Usage: "remove the meta"},
			&cli.BoolFlag{Name: "no-rate-limit", Usage: "remove the rate limit"},
			&cli.BoolFlag{Name: "no-credits", Usage: "remove the credits"},
		)
	}
	return flags
}

// keyLimits is what the limit flags say.
type keyLimits struct {
	externalID *string
	meta       map[string]any
	rateLimit  *client.RateLimit
	credits    *client.CreditsRequest
	// clear names the members to remove: external_id, meta, rate_limit,
	// credits.
	clear map[string]bool
}

func (l keyLimits) empty() bool {
	return l.externalID == nil && l.meta == nil && l.rateLimit == nil && l.credits == nil && len(l.clear) == 0
}

// limitsOf reads the limit flags.
func limitsOf(c *cli.Command) (keyLimits, error) {
	l := keyLimits{clear: map[string]bool{}}
	for _, f := range []struct{ set, clear, member string }{
		{"external-id", "no-external-id", "external_id"}, {"meta", "no-meta", "meta"},
		{"rate-limit", "no-rate-limit", "rate_limit"}, {"credits", "no-credits", "credits"},
	} {
		if !c.IsSet(f.clear) || !c.Bool(f.clear) {
			continue
		}
		if c.IsSet(f.set) {
			return l, usageError{fmt.Sprintf("give --%s or --%s, not both", f.set, f.clear)}
		}
		l.clear[f.member] = true
	}
	if c.IsSet("external-id") {
		id := c.String("external-id")
		l.externalID = &id
	}
	if c.IsSet("meta") {
		data, err := readArg(c.String("meta"), stdinOf(c))
		if err != nil {
			return l, usageError{"--meta: " + err.Error()}
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&l.meta); err != nil || l.meta == nil {
			return l, usageError{`--meta must be a JSON object, such as {"plan": "pro"}`}
		}
	}
	if c.IsSet("rate-limit") {
		n, window, err := perInterval(c.String("rate-limit"))
		if err != nil {
			return l, usageError{"--rate-limit must be N/WINDOW, such as 100/1m: " + err.Error()}
		}
		l.rateLimit = &client.RateLimit{Limit: n, WindowMS: window.Milliseconds()}
	}
	switch {
	case c.IsSet("credits"):
		l.credits = &client.CreditsRequest{Remaining: c.Int64("credits")}
		if c.IsSet("refill") {
			n, every, err := perInterval(c.String("refill"))
			if err != nil {
				return l, usageError{"--refill must be N/INTERVAL, such as 1000/24h: " + err.Error()}
			}
			l.credits.Refill = &client.CreditRefill{Amount: n, IntervalMS: every.Milliseconds()}
		}
	case c.IsSet("refill"):
		return l, usageError{"--refill goes with --credits, the balance to start from"}
	}
	return l, nil
}

// perInterval reads N/DURATION.
func perInterval(v string) (int64, time.Duration, error) {
	count, dur, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("no / in %q", v)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(count), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a whole number", count)
	}
	d, err := time.ParseDuration(strings.TrimSpace(dur))
	if err != nil {
		return 0, 0, err
	}
	return n, d, nil
}

// applyCreate sets the limits on a key to create.
func (l keyLimits) applyCreate(req *client.CreateKeyRequest) {
	if l.externalID != nil {
		req.ExternalID = *l.externalID
	}
	req.Meta, req.RateLimit, req.Credits = l.meta, l.rateLimit, l.credits
}

// applyUpdate sets the limits, and what to remove, on an update.
func (l keyLimits) applyUpdate(req *client.UpdateKeyRequest) {
	req.ExternalID, req.Meta, req.RateLimit, req.Credits = l.externalID, l.meta, l.rateLimit, l.credits
	req.ClearExternalID, req.ClearMeta = l.clear["external_id"], l.clear["meta"]
	req.ClearRateLimit, req.ClearCredits = l.clear["rate_limit"], l.clear["credits"]
}

// rotateCommand is `keygate keys rotate KEY_ID [--grace D]`.
func rotateCommand() *cli.Command {
	return &cli.Command{
		Name: "rotate", Usage: "replace a key's token; the new one is printed this once", ArgsUsage: "KEY_ID",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "grace", Usage: "how long the previous token keeps working, whole seconds up to 168h; 0: it stops at once"},
		},
		Action: action(true, func(s *session, c *cli.Command) error {
			id, err := oneID(c, "KEY_ID")
			if err != nil {
				return err
			}
			grace := c.Duration("grace")
			if grace < 0 || grace > client.MaxRotationGrace || grace%time.Second != 0 {
				return usageError{"--grace must be whole seconds from 0 to 168h"}
			}
			key, err := s.client.RotateKey(s.ctx, id, grace)
			if err != nil {
				return err
			}
			return s.printToken(key)
		}),
	}
}

// printToken shows a key just created or rotated, and its token.
func (s *session) printToken(key *client.CreatedKey) error {
	if s.out.json {
		return s.out.JSON(key)
	}
	if err := s.printKey(&key.Key); err != nil {
		return err
	}
	_, err := fmt.Fprintf(s.out.w, "\nToken (shown this once, keep it secret):\n\n    %s\n", key.Token)
	return err
}

// usageCommand is `keygate keys usage KEY_ID`.
func usageCommand() *cli.Command {
	return &cli.Command{
		Name: "usage", Usage: "a key's decisions counted per hour or day", ArgsUsage: "KEY_ID",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "granularity", Value: client.GranularityHour, Usage: "hour or day"},
			&cli.StringFlag{Name: "since", Usage: "from this time: RFC 3339, or a duration ago (72h); default the last 24 hours or 30 days"},
			&cli.StringFlag{Name: "until", Usage: "up to this time: RFC 3339, or a duration ago; default now"},
		},
		Action: action(true, func(s *session, c *cli.Command) error {
			id, err := oneID(c, "KEY_ID")
			if err != nil {
				return err
			}
			p := client.KeyUsageParams{Granularity: c.String("granularity")}
			if p.Since, err = timeFlag(c, "since"); err != nil {
				return err
			}
			if p.Until, err = timeFlag(c, "until"); err != nil {
				return err
			}
			rep, err := s.client.KeyUsage(s.ctx, id, p)
			if err != nil {
				return err
			}
			if s.out.json {
				return s.out.JSON(rep)
			}
			counts := func(first string, u client.UsageCounts) []string {
				return []string{first, strconv.FormatInt(u.Allowed, 10), strconv.FormatInt(u.Denied, 10), strconv.FormatInt(u.RateLimited, 10),
					strconv.FormatInt(u.UsageExceeded, 10), strconv.FormatInt(u.Refused, 10)}
			}
			rows := make([][]string, 0, len(rep.Data)+1)
			for _, in := range rep.Data {
				rows = append(rows, counts(in.Start.UTC().Format(time.RFC3339), in.UsageCounts))
			}
			rows = append(rows, counts("total", rep.Total))
			return s.out.table([]string{"FROM", "ALLOWED", "DENIED", "RATE LIMITED", "USAGE EXCEEDED", "REFUSED"}, rows)
		}),
	}
}

// limitFields are a key's lifecycle fields as printKey shows them.
func limitFields(k *client.Key, by func(*client.Setter) string) []string {
	rate, credits := "-", "-"
	if r := k.RateLimit; r != nil {
		rate = fmt.Sprintf("%d per %s", r.Limit, time.Duration(r.WindowMS)*time.Millisecond)
	}
	if cr := k.Credits; cr != nil {
		credits = strconv.FormatInt(cr.Remaining, 10)
		if r := cr.Refill; r != nil {
			credits += fmt.Sprintf(", topped up to %d every %s", r.Amount, time.Duration(r.IntervalMS)*time.Millisecond)
		}
	}
	meta := "-"
	if k.Meta != nil {
		b, err := json.Marshal(k.Meta)
		if err == nil {
			meta = string(b)
		}
	}
	externalID := "-"
	if k.ExternalID != nil {
		externalID = *k.ExternalID
	}
	return []string{
		"external id", externalID, "meta", meta,
		"rate limit", rate, "rate limit set by", by(k.RateLimitSetBy), "credits", credits, "credits set by", by(k.CreditsSetBy),
		"rotated", when(k.RotatedAt), "previous token until", when(k.PreviousTokenExpiresAt),
	}
}

// runPolicyStatus is `keygate policy status`: which policy a running
// keygate serves (GET /api/v1/policy). Each instance reloads on its own,
// so behind a load balancer it answers for one of them.
func runPolicyStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runRemote(ctx, &cli.Command{
		Name:  "keygate policy status",
		Usage: "which policy a running keygate serves, and why its last reload was refused (tenant admins)",
		Action: action(true, func(s *session, c *cli.Command) error {
			if c.NArg() > 0 {
				return usageError{"keygate policy status takes no arguments"}
			}
			p, err := s.client.GetPolicy(s.ctx)
			if err != nil {
				return err
			}
			if s.out.json {
				return s.out.JSON(p)
			}
			lastError := "-"
			if p.LastError != nil {
				lastError = *p.LastError
			}
			return s.out.fields("revision", p.Revision, "source", p.Source, "bundle revision", dash(p.BundleRevision),
				"loaded", when(&p.LoadedAt), "last error", lastError, "last error at", when(p.LastErrorAt))
		}),
	}, args, stdout, stderr)
}
