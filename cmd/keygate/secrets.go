package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keygate/keygate/storage"
)

// runSecrets manages the keys upstream secrets are sealed with at rest:
// generate-key prints a new keyring entry; rotate seals every stored secret
// with the keyring's first key.
func runSecrets(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg := newConfig()
	fs := newFlagSet("secrets", stderr)
	cfg.bindCommon(fs)
	cfg.bindEncryption(fs)
	id := fs.String("id", "", "id of the new key (generate-key); default k1")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: keygate secrets generate-key [--id ID] | rotate [flags]")
		fs.PrintDefaults()
	}
	verbs, args := leadingVerb(args)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(false); err != nil {
		return err
	}
	if verbs = append(verbs, fs.Args()...); len(verbs) != 1 {
		fs.Usage()
		return usageError{"secrets takes exactly one of generate-key, rotate"}
	}
	switch verbs[0] {
	case "generate-key":
		name := *id
		if name == "" {
			name = "k1"
		}
		entry, err := storage.GenerateKeyEntry(name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, entry)
		return nil
	case "rotate":
		keyring, err := cfg.Keyring()
		if err != nil {
			return err
		}
		db, err := storage.Open(ctx, cfg.DatabaseURLOrDefault())
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, db.Close()) }()
		n, err := storage.NewMCPStore(db, keyring).SealHeaders(ctx, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d MCP servers' headers sealed with key %q\n", n, keyring.CurrentID())
		return nil
	}
	fs.Usage()
	return usageError{fmt.Sprintf("unknown secrets command %q", verbs[0])}
}
