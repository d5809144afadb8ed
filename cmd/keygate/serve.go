package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/keygate/keygate/internal/app"
)

// runServe builds keygate from its settings (internal/app), serves until
// SIGINT or SIGTERM, then finishes requests in flight and writes what is
// queued. SIGHUP reloads a policy folder or polls the policy bundle.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg := newConfig()
	fs := newFlagSet("serve", stderr)
	cfg.bindServe(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(true); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	logger := newLogger(cfg, stderr)
	cfg.finish(logger)

	a, err := app.New(ctx, cfg.Config)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if cerr := a.Close(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err == nil {
			logger.Info("stopped")
		}
	}()
	ln, err := a.Listen(ctx)
	if err != nil {
		return err
	}
	a.Start(ctx)
	addr := ln.Addr().String()
	scheme := "http://"
	if cfg.TLSCertFile != "" {
		scheme = "https://"
	}
	logger.Info("keygate serving", "addr", scheme+addr, "database", app.RedactURL(cfg.DatabaseURLOrDefault()),
		"version", version, "policies", a.PolicySource())
	if a.DevSecret {
		token, err := a.DevAdminToken()
		if err != nil {
			_ = ln.Close()
			return err
		}
		fmt.Fprintf(stdout, "\nkeygate is listening on http://%s\n\nDevelopment admin JWT for tenant \"default\" (valid %s, signed with %s):\n\n    export KEYGATE_TOKEN=%s\n\nMore tokens: keygate token --tenant T --user U [--role admin]\n\n",
			addr, cfg.TokenTTL, "the development secret in "+cfg.DataDir, token)
	}
	if cfg.PolicyDir != "" || cfg.PolicyBundleURL != "" || cfg.TLSCertFile != "" {
		go reloadOnSIGHUP(ctx, a, cfg.PolicyDir != "" || cfg.PolicyBundleURL != "")
	}
	return a.Serve(ctx, ln)
}

// reloadOnSIGHUP reloads the policy folder (or polls the policy bundle)
// and the TLS certificate on SIGHUP; a policy that is refused or a
// certificate that does not load is logged and the running one stays.
func reloadOnSIGHUP(ctx context.Context, a *app.App, policies bool) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if policies {
				_ = a.ReloadPolicies(ctx)
			}
			_ = a.ReloadTLS()
		}
	}
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
