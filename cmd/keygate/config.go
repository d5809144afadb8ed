package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config is every setting of `keygate serve`; each flag has a KEYGATE_*
// environment twin, and a flag given on the command line wins.
type config struct {
	Addr            string
	DataDir         string
	DatabaseURL     string
	Migrate         bool
	PolicyDir       string
	JWTSecret       string
	JWKSURL         string
	JWTIssuer       string
	JWTAudience     string
	JWTUserClaim    string
	JWTTenantClaim  string
	JWTRolesClaim   string
	TokenTTL        time.Duration
	TrustedProxies  string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	AuditBuffer     int
	FlushInterval   time.Duration
	KeyCacheSize    int
	DecisionCache   int
	KeyCacheTTL     time.Duration
	NegativeTTL     time.Duration
	MCPSyncInterval time.Duration
	DebugAddr       string

	// envErrs collects environment values that do not parse; start-up
	// refuses to go on with any.
	envErrs []error
}

// bindCommon registers the settings every command that touches the database
// or signs tokens shares.
func (c *config) bindCommon(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", "./data"), "folder for the SQLite database and the development signing secret (KEYGATE_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("KEYGATE_DATABASE_URL", ""), "postgres://… or sqlite:PATH; default sqlite:<data-dir>/keygate.db (KEYGATE_DATABASE_URL)")
	fs.StringVar(&c.LogLevel, "log-level", env("KEYGATE_LOG_LEVEL", "info"), "debug, info, warn or error (KEYGATE_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("KEYGATE_LOG_FORMAT", "text"), "text or json (KEYGATE_LOG_FORMAT)")
}

func (c *config) bindJWT(fs *flag.FlagSet) {
	fs.StringVar(&c.JWTSecret, "jwt-secret", env("KEYGATE_JWT_SECRET", ""), "HS256 secret for management JWTs, at least 32 bytes; unset: a development secret in the data folder (KEYGATE_JWT_SECRET)")
	fs.StringVar(&c.JWKSURL, "jwks-url", env("KEYGATE_JWKS_URL", ""), "JWKS URL of the identity provider, for RS256/ES256 JWTs (KEYGATE_JWKS_URL)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", env("KEYGATE_JWT_ISSUER", ""), "required iss claim, when set (KEYGATE_JWT_ISSUER)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", env("KEYGATE_JWT_AUDIENCE", ""), "required aud claim, when set (KEYGATE_JWT_AUDIENCE)")
	fs.StringVar(&c.JWTUserClaim, "jwt-user-claim", env("KEYGATE_JWT_USER_CLAIM", "sub"), "claim naming the user (KEYGATE_JWT_USER_CLAIM)")
	fs.StringVar(&c.JWTTenantClaim, "jwt-tenant-claim", env("KEYGATE_JWT_TENANT_CLAIM", "tenant_id"), "claim naming the tenant (KEYGATE_JWT_TENANT_CLAIM)")
	fs.StringVar(&c.JWTRolesClaim, "jwt-roles-claim", env("KEYGATE_JWT_ROLES_CLAIM", "roles"), "claim listing the roles (KEYGATE_JWT_ROLES_CLAIM)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.envDuration("KEYGATE_TOKEN_TTL", 24*time.Hour), "lifetime of JWTs keygate prints (KEYGATE_TOKEN_TTL)")
}

func (c *config) bindServe(fs *flag.FlagSet) {
	c.bindCommon(fs)
	c.bindJWT(fs)
	fs.StringVar(&c.Addr, "addr", env("KEYGATE_ADDR", "127.0.0.1:8080"), "listen address (KEYGATE_ADDR)")
	fs.BoolVar(&c.Migrate, "migrate", c.envBool("KEYGATE_MIGRATE", true), "apply database migrations at start (KEYGATE_MIGRATE)")
	fs.StringVar(&c.PolicyDir, "policy-dir", env("KEYGATE_POLICY_DIR", ""), "load Rego policies from this folder instead of the embedded ones; SIGHUP reloads (KEYGATE_POLICY_DIR)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", env("KEYGATE_TRUSTED_PROXIES", ""), "comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed (KEYGATE_TRUSTED_PROXIES)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.envDuration("KEYGATE_SHUTDOWN_TIMEOUT", 30*time.Second), "how long shutdown waits for requests in flight (KEYGATE_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&c.AuditBuffer, "audit-buffer", c.envInt("KEYGATE_AUDIT_BUFFER", 10000), "audit events queued before new ones are dropped (KEYGATE_AUDIT_BUFFER)")
	fs.IntVar(&c.KeyCacheSize, "key-cache-size", c.envInt("KEYGATE_KEY_CACHE_SIZE", 100_000), "API keys cached per instance, least recently used out (KEYGATE_KEY_CACHE_SIZE)")
	fs.IntVar(&c.DecisionCache, "decision-cache-size", c.envInt("KEYGATE_DECISION_CACHE_SIZE", 10_000), "policy answers remembered per instance for a policy that depends only on principal, resource and action; 0 turns it off (KEYGATE_DECISION_CACHE_SIZE)")
	fs.DurationVar(&c.KeyCacheTTL, "key-cache-ttl", c.envDuration("KEYGATE_KEY_CACHE_TTL", 30*time.Second), "longest a cached key is trusted without a lookup (KEYGATE_KEY_CACHE_TTL)")
	fs.DurationVar(&c.NegativeTTL, "negative-cache-ttl", c.envDuration("KEYGATE_NEGATIVE_CACHE_TTL", 5*time.Second), "how long an unknown token stays unknown without a lookup (KEYGATE_NEGATIVE_CACHE_TTL)")
	fs.DurationVar(&c.MCPSyncInterval, "mcp-sync-interval", c.envDuration("KEYGATE_MCP_SYNC_INTERVAL", 5*time.Minute), "how often every enabled upstream MCP server's tool catalog is synced (KEYGATE_MCP_SYNC_INTERVAL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("KEYGATE_DEBUG_ADDR", ""), "listen address for Go's profiler (/debug/pprof/); keep it private; empty: off (KEYGATE_DEBUG_ADDR)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.envDuration("KEYGATE_FLUSH_INTERVAL", time.Second), "how often audit events and last_used_at are written (KEYGATE_FLUSH_INTERVAL)")
}

// validate reports bad environment values and settings out of range; serve
// adds the checks only serving needs.
func (c *config) validate(serve bool) error {
	errs := c.envErrs
	if serve && c.AuditBuffer < 1 {
		errs = append(errs, fmt.Errorf("audit buffer must be at least 1, got %d", c.AuditBuffer))
	}
	if serve && c.DecisionCache < 0 {
		errs = append(errs, fmt.Errorf("decision cache size must not be negative, got %d", c.DecisionCache))
	}
	if serve && c.KeyCacheSize < 1 {
		errs = append(errs, fmt.Errorf("key cache size must be at least 1, got %d", c.KeyCacheSize))
	}
	if serve && (c.KeyCacheTTL <= 0 || c.NegativeTTL <= 0) {
		errs = append(errs, errors.New("cache TTLs must be positive"))
	}
	if serve && c.MCPSyncInterval < time.Second {
		errs = append(errs, fmt.Errorf("MCP sync interval must be at least 1s, got %s", c.MCPSyncInterval))
	}
	if serve && c.FlushInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("flush interval must be at least 10ms, got %s", c.FlushInterval))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log format must be text or json, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

func (c *config) databaseURL() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return "sqlite:" + filepath.Join(c.DataDir, "keygate.db")
}

func (c *config) trustedProxies() []string {
	var out []string
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func (c *config) envBool(name string, def bool) bool {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a boolean", name, v))
		return def
	}
	return b
}

func (c *config) envInt(name string, def int) int {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not an integer", name, v))
		return def
	}
	return n
}

func (c *config) envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a duration", name, v))
		return def
	}
	return d
}
