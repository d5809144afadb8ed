// Command keygate runs the keygate authorization service and its tools
// (serve, migrate, token, secrets, policy, openapi, version), and manages a
// running keygate over its HTTP API (keys, audit, mcp, authorize, policy
// status).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/gin-gonic/gin"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `keygate: API keys and Rego decisions for AI agents, flows, MCP tools and vector stores.

Usage:
  keygate serve [flags]                       run the service (default: 127.0.0.1:8080, SQLite in ./data)
  keygate migrate up|down|status [flags]      manage the database schema
  keygate token --tenant T --user U [--role R] print a management JWT
  keygate secrets generate-key|rotate [flags] make a key for sealing secrets; seal them all with the first key
  keygate policy test|eval|check|fmt|init     test, explain, check and format Rego policies
  keygate openapi [--yaml]                    print the OpenAPI 3.1 document of the HTTP API
  keygate version                             print the version

Manage a running keygate (KEYGATE_URL, default http://127.0.0.1:8080; KEYGATE_TOKEN, a management JWT):
  keygate keys create|list|get|update|enable|disable|rotate|usage|delete
  keygate audit list
  keygate policy status                       which policy it serves, and why its last reload was refused
  keygate mcp servers list|get|create|sync|delete, keygate mcp tools list
  keygate authorize --type T --id ID --action A   one decision; exit 0 allowed, 1 denied, 2 error

Tables by default, -o json for scripts. Run "keygate <command> -h" for a command's flags.
Every flag has a KEYGATE_* environment twin.
`

func main() {
	// gin's mode is process-wide; set it once, before any router exists.
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if msg := err.Error(); msg != "" && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keygate:", strings.TrimPrefix(msg, "keygate: "))
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var status exitStatus
	if errors.As(err, &status) {
		return status.code
	}
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "token":
		return runToken(rest, stdout, stderr)
	case "secrets":
		return runSecrets(ctx, rest, stdout, stderr)
	case "openapi":
		return runOpenAPI(ctx, rest, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, stdout, stderr)
	case "mcp":
		return runMCP(ctx, rest, stdout, stderr)
	case "authorize":
		return runAuthorize(ctx, rest, stdout, stderr)
	case "policy":
		return runPolicy(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "keygate %s (%s, OPA %s)\n", version, runtime.Version(), opaVersion())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("keygate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// leadingVerb splits off a subcommand's verb given before its flags
// (`migrate up --data-dir d`); a verb after the flags stays in the rest.
func leadingVerb(args []string) (verbs, rest []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[:1], args[1:]
	}
	return nil, args
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func opaVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/open-policy-agent/opa" {
				return dep.Version
			}
		}
	}
	return "unknown"
}
