package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/policies"
)

// readPolicies reads the Rego policies of dir, or the embedded ones when
// dir is empty.
func readPolicies(dir string) (map[string]string, error) {
	if dir == "" {
		return authz.ReadPolicies(policies.FS())
	}
	modules, err := authz.ReadPolicies(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("read policies from %s (KEYGATE_POLICY_DIR): %w", dir, err)
	}
	return modules, nil
}

// PolicySource names where the policies come from, for logs.
func (a *App) PolicySource() string {
	if a.Config.PolicyDir == "" {
		return "embedded"
	}
	return a.Config.PolicyDir
}

// ReloadPolicies reads the policy folder again and serves it if it
// compiles; otherwise the running policy stays and the error says why.
func (a *App) ReloadPolicies(ctx context.Context) error {
	modules, err := readPolicies(a.Config.PolicyDir)
	if err == nil {
		err = a.Engine.Load(ctx, modules)
	}
	logger := a.Config.logger()
	if err != nil {
		logger.Error("policy reload failed; keeping the running policies", "err", err)
		return err
	}
	logger.Info("policies reloaded", "source", a.PolicySource(), "modules", len(modules))
	logDecisionCaching(a.Engine, logger)
	return nil
}

// logDecisionCaching says whether policy answers are cached, and if not why,
// so a policy author sees the price of reading the request's time.
func logDecisionCaching(engine *authz.Engine, logger *slog.Logger) {
	if on, why := engine.DecisionCaching(); on {
		logger.Info("policy answers are cached: the policy depends only on principal, resource and action")
	} else {
		logger.Info("policy answers are not cached", "why", why)
	}
}
