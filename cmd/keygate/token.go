package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/keygate/keygate/server"
)

// roleList collects --role, repeatable or comma-separated.
type roleList []string

func (r *roleList) String() string { return strings.Join(*r, ",") }

func (r *roleList) Set(v string) error {
	for _, role := range strings.Split(v, ",") {
		if role = strings.TrimSpace(role); role != "" {
			*r = append(*r, role)
		}
	}
	return nil
}

// runToken prints only a JWT, so that `$(keygate token …)` works in scripts.
func runToken(args []string, stdout, stderr io.Writer) error {
	cfg := newConfig()
	fs := newFlagSet("token", stderr)
	cfg.bindCommon(fs)
	cfg.bindJWT(fs)
	tenant := fs.String("tenant", "", "tenant id (required)")
	user := fs.String("user", "", "user id (required)")
	var roles roleList
	fs.Var(&roles, "role", "role to grant, such as admin; repeatable")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(false); err != nil {
		return err
	}
	if *tenant == "" || *user == "" {
		return usageError{"--tenant and --user are required"}
	}
	if cfg.JWTSecret == "" && cfg.JWKSURL != "" {
		return usageError{"keygate signs only HS256 tokens; with a JWKS URL, tokens come from your identity provider"}
	}
	jwtCfg, _, err := cfg.JWT()
	if err != nil {
		return err
	}
	token, err := server.SignHS256(jwtCfg, *tenant, *user, roles, cfg.TokenTTL)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
}
