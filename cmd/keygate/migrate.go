package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keygate/keygate/storage"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg := newConfig()
	fs := newFlagSet("migrate", stderr)
	cfg.bindCommon(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: keygate migrate up|down|status [flags]")
		fs.PrintDefaults()
	}
	// The verb may come before or after the flags.
	verbs, args := leadingVerb(args)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(false); err != nil {
		return err
	}
	verbs = append(verbs, fs.Args()...)
	if len(verbs) != 1 {
		fs.Usage()
		return usageError{"migrate takes exactly one of up, down, status"}
	}
	verb := verbs[0]
	if verb != "up" && verb != "down" && verb != "status" {
		fs.Usage()
		return usageError{fmt.Sprintf("unknown migrate command %q", verb)}
	}
	db, err := storage.Open(ctx, cfg.DatabaseURLOrDefault())
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	switch verb {
	case "up":
		if err := db.MigrateUp(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
	case "down":
		if err := db.MigrateDown(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "last migration group rolled back")
	case "status":
		status, err := db.MigrationStatus(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MIGRATION\tAPPLIED\tGROUP")
		for _, m := range status {
			fmt.Fprintf(tw, "%s\t%v\t%d\n", m.Name, m.Applied, m.GroupID)
		}
		return tw.Flush()
	}
	return nil
}
