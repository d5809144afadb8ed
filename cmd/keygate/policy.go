package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

const policyUsage = `Usage: keygate policy <command> [flags] [PATH...]

A PATH is a policy folder (read as "opa build -b" reads one: every .rego
file below it, data.json and data.yaml as data), a bundle (.tar.gz) or a
.rego file; several are read as one policy.

  test [PATH...]      run the Rego tests (*_test.rego) with coverage; fails
                      when one fails or coverage is below --threshold
  eval [PATH...] --input FILE [--query Q] [--explain full|notes|fails|debug]
                      evaluate a decision as keygate would, and explain it;
                      without PATH: KEYGATE_POLICY_DIR, else the embedded
                      policies; an --input that is a decision-log event is
                      replayed and compared with what was logged
  check [PATH...]     compile strictly and check what keygate needs
  fmt [PATH...] [--write]
                      list the .rego files opa fmt would change; --write
                      rewrites them
  init DIR            write the embedded policies into DIR, to start from
  status              ask a running keygate (KEYGATE_URL, KEYGATE_TOKEN; tenant
                      admins) which policy it serves, and why its last
                      reload was refused

PATH defaults to the current folder (eval: see above). Every command but
status needs nothing but this binary.
`

// runPolicy is `keygate policy`: the policy author's tools, needing nothing
// but this binary.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	defer func() {
		// keygate's errors read as their message here, with no code.
		var kerr *authz.Error
		if errors.As(err, &kerr) {
			err = errors.New(authz.Describe(err))
		}
	}()
	verbs, rest := leadingVerb(args)
	if len(verbs) == 0 {
		if len(rest) > 0 && (rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help") {
			fmt.Fprint(stdout, policyUsage)
			return nil
		}
		fmt.Fprint(stderr, policyUsage)
		return usageError{"policy needs a command: test, eval, check, fmt, init or status"}
	}
	switch verbs[0] {
	case "test":
		return runPolicyTest(ctx, rest, stdout, stderr)
	case "eval":
		return runPolicyEval(ctx, rest, stdout, stderr)
	case "check":
		return runPolicyCheck(ctx, rest, stdout, stderr)
	case "fmt":
		return runPolicyFmt(rest, stdout, stderr)
	case "init":
		return runPolicyInit(rest, stdout, stderr)
	case "status":
		return runPolicyStatus(ctx, rest, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return usageError{fmt.Sprintf("unknown policy command %q", verbs[0])}
}

// parseInterspersed parses flags given before, between or after the
// positional arguments (`policy test dir --threshold 90`), which the flag
// package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// policyArgs parses the flags and reads the policies the paths name, the
// current folder when none is.
func policyArgs(flags *flag.FlagSet, args []string) (authz.PolicySet, []string, error) {
	paths, err := parseInterspersed(flags, args)
	if err != nil {
		return authz.PolicySet{}, nil, err
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	set, err := readPolicyPaths(paths)
	return set, paths, err
}

// readPolicyPaths reads and merges the policies at paths.
func readPolicyPaths(paths []string) (authz.PolicySet, error) {
	var set authz.PolicySet
	for i, p := range paths {
		one, err := readPolicyPath(p)
		if err != nil {
			return authz.PolicySet{}, fmt.Errorf("%s: %w", p, err)
		}
		if i == 0 {
			set = one
			continue
		}
		if set, err = set.Merge(one); err != nil {
			return authz.PolicySet{}, err
		}
	}
	return set, nil
}

func readPolicyPath(p string) (authz.PolicySet, error) {
	info, err := os.Stat(p)
	if err != nil {
		return authz.PolicySet{}, err
	}
	switch {
	case info.IsDir():
		return authz.ReadPolicyFS(os.DirFS(p))
	case strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz"):
		f, err := os.Open(p)
		if err != nil {
			return authz.PolicySet{}, err
		}
		defer func() { _ = f.Close() }()
		return authz.ReadPolicyBundle(f, authz.BundleOptions{})
	case strings.HasSuffix(p, ".rego"):
		src, err := os.ReadFile(p)
		if err != nil {
			return authz.PolicySet{}, err
		}
		return authz.ReadPolicyFS(fstest.MapFS{filepath.Base(p): {Data: src}})
	}
	return authz.PolicySet{}, errors.New("not a policy folder, a bundle (.tar.gz) or a .rego file")
}

func runPolicyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("policy test", stderr)
	threshold := flags.Float64("threshold", 0, "fail when coverage, in percent, is below this (implies --coverage)")
	coverage := flags.Bool("coverage", false, "report coverage, and the lines no test reaches")
	verbose := flags.Bool("v", false, "show every test and what it printed")
	run := flags.String("run", "", "run only the tests whose name matches this regular expression")
	timeout := flags.Duration("timeout", 5*time.Second, "time one test may take")
	set, paths, err := policyArgs(flags, args)
	if err != nil {
		return err
	}
	if len(set.Tests) == 0 {
		return fmt.Errorf("no tests (*_test.rego) in %s", strings.Join(paths, ", "))
	}
	rep, err := authz.RunPolicyTests(ctx, set, authz.TestOptions{Coverage: *coverage || *threshold > 0, Timeout: *timeout, Filter: *run})
	if err != nil {
		return err
	}
	for _, r := range rep.Results {
		status := "PASS"
		switch {
		case r.Skip:
			status = "SKIP"
		case r.Error != "":
			status = "ERROR"
		case r.Fail:
			status = "FAIL"
		}
		if status == "PASS" && !*verbose {
			continue
		}
		fmt.Fprintf(stdout, "%s: %s.%s (%s) %s\n", status, r.Package, r.Name, r.Location, r.Duration.Round(time.Microsecond))
		if r.Error != "" {
			fmt.Fprintf(stdout, "  %s\n", r.Error)
		}
		if r.Output != "" && (*verbose || status != "PASS") {
			fmt.Fprintf(stdout, "  %s\n", strings.ReplaceAll(strings.TrimRight(r.Output, "\n"), "\n", "\n  "))
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed, %d errors, %d skipped\n", rep.Passed, rep.Failed, rep.Errored, rep.Skipped)
	if rep.Files != nil {
		if *coverage {
			for _, name := range slices.Sorted(maps.Keys(rep.Files)) {
				fc := rep.Files[name]
				line := fmt.Sprintf("  %6.2f%%  %s", fc.Coverage, name)
				if len(fc.NotCovered) > 0 {
					line += "  not covered: " + strings.Join(fc.NotCovered, ", ")
				}
				fmt.Fprintln(stdout, line)
			}
		}
		fmt.Fprintf(stdout, "coverage: %.2f%%\n", rep.Coverage)
	}
	if !rep.OK() {
		return fmt.Errorf("%d of %d tests failed", rep.Failed+rep.Errored, len(rep.Results))
	}
	if *threshold > 0 && rep.Coverage < *threshold {
		return fmt.Errorf("coverage %.2f%% is below the threshold %g%%", rep.Coverage, *threshold)
	}
	return nil
}

func runPolicyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	set, _, err := policyArgs(newFlagSet("policy check", stderr), args)
	if err != nil {
		return err
	}
	if err := authz.CheckPolicy(ctx, set); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "ok: %d modules, %d test files, revision %s\n", len(set.Modules), len(set.Tests), set.Revision())
	return nil
}

func runPolicyFmt(args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("policy fmt", stderr)
	write := flags.Bool("write", false, "rewrite the files that are not formatted")
	paths, err := parseInterspersed(flags, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(path string, d iofs.DirEntry, err error) error {
			switch {
			case err != nil:
				return err
			case path != p && strings.HasPrefix(d.Name(), "."):
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			case !d.IsDir() && strings.HasSuffix(path, ".rego"):
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	changed := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out, err := authz.FormatPolicy(f, src)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if string(out) == string(src) {
			continue
		}
		changed++
		fmt.Fprintln(stdout, f)
		if *write {
			if err := os.WriteFile(f, out, 0o644); err != nil {
				return err
			}
		}
	}
	if changed > 0 && !*write {
		return fmt.Errorf("%d files are not formatted; keygate policy fmt --write formats them", changed)
	}
	return nil
}

func runPolicyInit(args []string, stdout, stderr io.Writer) error {
	flags := newFlagSet("policy init", stderr)
	paths, err := parseInterspersed(flags, args)
	if err != nil {
		return err
	}
	if len(paths) != 1 {
		return usageError{"policy init takes one folder"}
	}
	dir := paths[0]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names, err := iofs.Glob(policies.FS(), "*.rego")
	if err != nil {
		return err
	}
	for _, name := range names {
		dst := filepath.Join(dir, name)
		if _, err := os.Stat(dst); err == nil {
			return fmt.Errorf("%s exists; policy init writes only into a folder without keygate's policies", dst)
		}
	}
	for _, name := range names {
		src, err := iofs.ReadFile(policies.FS(), name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, filepath.Join(dir, name))
	}
	return nil
}
