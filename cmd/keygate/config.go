package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/app"
)

// config is every setting of a keygate command: app.Config, filled from
// flags whose KEYGATE_* environment twins give their defaults (a flag given
// on the command line wins), and the settings of the command itself.
type config struct {
	app.Config
	TrustedProxies  string
	AllowedNetworks string
	LogLevel        string
	LogFormat       string

	// envErrs collects environment values that do not parse; start-up
	// refuses to go on with any.
	envErrs []error
}

func newConfig() *config {
	return &config{Config: app.Defaults()}
}

// bindCommon registers the settings every command that touches the database
// or signs tokens shares.
func (c *config) bindCommon(fs *flag.FlagSet) {
	d := app.Defaults()
	fs.StringVar(&c.DataDir, "data-dir", env("KEYGATE_DATA_DIR", d.DataDir), "folder for the SQLite database and the development signing secret (KEYGATE_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("KEYGATE_DATABASE_URL", ""), "postgres://… or sqlite:PATH; default sqlite:<data-dir>/keygate.db (KEYGATE_DATABASE_URL)")
	fs.StringVar(&c.DatabaseURLFile, "database-url-file", env("KEYGATE_DATABASE_URL_FILE", ""), "file holding the database URL, for one that carries a password (KEYGATE_DATABASE_URL_FILE)")
	fs.StringVar(&c.LogLevel, "log-level", env("KEYGATE_LOG_LEVEL", "info"), "debug, info, warn or error (KEYGATE_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("KEYGATE_LOG_FORMAT", "text"), "text or json (KEYGATE_LOG_FORMAT)")
}

func (c *config) bindJWT(fs *flag.FlagSet) {
	d := app.Defaults()
	fs.StringVar(&c.JWTSecret, "jwt-secret", env("KEYGATE_JWT_SECRET", ""), "HS256 secret for management JWTs, at least 32 bytes; unset: a development secret in the data folder (KEYGATE_JWT_SECRET)")
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", env("KEYGATE_JWT_SECRET_FILE", ""), "file holding the HS256 secret (KEYGATE_JWT_SECRET_FILE)")
	fs.StringVar(&c.JWKSURL, "jwks-url", env("KEYGATE_JWKS_URL", ""), "JWKS URL of the identity provider, for RS256/ES256 JWTs (KEYGATE_JWKS_URL)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", env("KEYGATE_JWT_ISSUER", ""), "required iss claim; required setting with a JWKS URL (KEYGATE_JWT_ISSUER)")
	fs.StringVar(&c.JWTAudience, "jwt-audience", env("KEYGATE_JWT_AUDIENCE", ""), "required aud claim; required setting with a JWKS URL (KEYGATE_JWT_AUDIENCE)")
	fs.StringVar(&c.JWTUserClaim, "jwt-user-claim", env("KEYGATE_JWT_USER_CLAIM", d.JWTUserClaim), "claim naming the user (KEYGATE_JWT_USER_CLAIM)")
	fs.StringVar(&c.JWTTenantClaim, "jwt-tenant-claim", env("KEYGATE_JWT_TENANT_CLAIM", d.JWTTenantClaim), "claim naming the tenant (KEYGATE_JWT_TENANT_CLAIM)")
	fs.StringVar(&c.JWTRolesClaim, "jwt-roles-claim", env("KEYGATE_JWT_ROLES_CLAIM", d.JWTRolesClaim), "claim listing the roles (KEYGATE_JWT_ROLES_CLAIM)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.envDuration("KEYGATE_TOKEN_TTL", d.TokenTTL), "lifetime of JWTs keygate prints (KEYGATE_TOKEN_TTL)")
}

// bindEncryption registers the keyring upstream secrets are sealed with.
func (c *config) bindEncryption(fs *flag.FlagSet) {
	fs.StringVar(&c.EncryptionKey, "encryption-key", env("KEYGATE_ENCRYPTION_KEY", ""), "keys sealing upstream secrets at rest: ID:BASE64 entries, comma-separated, the first seals; unset on SQLite: a development key in the data folder (KEYGATE_ENCRYPTION_KEY)")
	fs.StringVar(&c.EncryptionKeyFile, "encryption-key-file", env("KEYGATE_ENCRYPTION_KEY_FILE", ""), "file holding the encryption keys (KEYGATE_ENCRYPTION_KEY_FILE)")
}

func (c *config) bindServe(fs *flag.FlagSet) {
	d := app.Defaults()
	c.bindCommon(fs)
	c.bindJWT(fs)
	c.bindEncryption(fs)
	fs.StringVar(&c.Addr, "addr", env("KEYGATE_ADDR", d.Addr), "listen address (KEYGATE_ADDR)")
	fs.BoolVar(&c.Migrate, "migrate", c.envBool("KEYGATE_MIGRATE", d.Migrate), "apply database migrations at start (KEYGATE_MIGRATE)")
	fs.StringVar(&c.PolicyDir, "policy-dir", env("KEYGATE_POLICY_DIR", ""), "load Rego policies (and data.json/data.yaml) from this folder instead of the embedded ones; a change to it, or SIGHUP, reloads it once it compiles and its tests pass (KEYGATE_POLICY_DIR)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", env("KEYGATE_TRUSTED_PROXIES", ""), "comma-separated proxy IPs/CIDRs whose X-Forwarded-For is believed (KEYGATE_TRUSTED_PROXIES)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.envDuration("KEYGATE_SHUTDOWN_TIMEOUT", d.ShutdownTimeout), "how long shutdown waits for requests in flight (KEYGATE_SHUTDOWN_TIMEOUT)")
	fs.IntVar(&c.AuditBuffer, "audit-buffer", c.envInt("KEYGATE_AUDIT_BUFFER", d.AuditBuffer), "audit events queued in memory before new ones go to the spool (KEYGATE_AUDIT_BUFFER)")
	fs.IntVar(&c.AuditSpoolBytes, "audit-spool-bytes", c.envInt("KEYGATE_AUDIT_SPOOL_BYTES", d.AuditSpoolBytes), "bound of the audit spool in <data-dir>/audit-spool, which keeps audit events on disk while the database cannot take them; 0: no spool (KEYGATE_AUDIT_SPOOL_BYTES)")
	fs.IntVar(&c.KeyCacheSize, "key-cache-size", c.envInt("KEYGATE_KEY_CACHE_SIZE", d.KeyCacheSize), "API keys cached per instance, least recently used out (KEYGATE_KEY_CACHE_SIZE)")
	fs.IntVar(&c.DecisionCacheSize, "decision-cache-size", c.envInt("KEYGATE_DECISION_CACHE_SIZE", d.DecisionCacheSize), "policy answers remembered per instance for a policy that depends only on principal, resource and action; 0 turns it off (KEYGATE_DECISION_CACHE_SIZE)")
	fs.DurationVar(&c.KeyCacheTTL, "key-cache-ttl", c.envDuration("KEYGATE_KEY_CACHE_TTL", d.KeyCacheTTL), "longest a cached key is trusted without a lookup (KEYGATE_KEY_CACHE_TTL)")
	fs.DurationVar(&c.KeyCacheStaleness, "key-cache-staleness", c.envDuration("KEYGATE_KEY_CACHE_STALENESS", d.KeyCacheStaleness), "longest a cached key is trusted while the change feed is down, before it is looked up again (KEYGATE_KEY_CACHE_STALENESS)")
	fs.DurationVar(&c.NegativeCacheTTL, "negative-cache-ttl", c.envDuration("KEYGATE_NEGATIVE_CACHE_TTL", d.NegativeCacheTTL), "how long an unknown token stays unknown without a lookup (KEYGATE_NEGATIVE_CACHE_TTL)")
	fs.DurationVar(&c.MCPSyncInterval, "mcp-sync-interval", c.envDuration("KEYGATE_MCP_SYNC_INTERVAL", d.MCPSyncInterval), "how often every enabled upstream MCP server's tool catalog is synced (KEYGATE_MCP_SYNC_INTERVAL)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", env("KEYGATE_TLS_CERT_FILE", ""), "PEM certificate (chain) to serve HTTPS with; SIGHUP reloads it (KEYGATE_TLS_CERT_FILE)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", env("KEYGATE_TLS_KEY_FILE", ""), "PEM private key of the certificate (KEYGATE_TLS_KEY_FILE)")
	fs.StringVar(&c.AllowedNetworks, "mcp-allowed-networks", env("KEYGATE_MCP_ALLOWED_NETWORKS", ""), "comma-separated CIDRs of non-public networks (loopback, private, link-local) upstream MCP servers may be reached in; empty: public addresses only (KEYGATE_MCP_ALLOWED_NETWORKS)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("KEYGATE_METRICS_ADDR", ""), "listen address for Prometheus metrics (GET /metrics); main: on --addr; off: none; empty: on --addr when it is a loopback address, else none (KEYGATE_METRICS_ADDR)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", env("KEYGATE_GRPC_ADDR", ""), "listen address for Envoy's ext_authz over gRPC; empty: off (KEYGATE_GRPC_ADDR)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("KEYGATE_DEBUG_ADDR", ""), "listen address for Go's profiler (/debug/pprof/); keep it private; empty: off (KEYGATE_DEBUG_ADDR)")
	fs.IntVar(&c.DebugMutexFraction, "debug-mutex-fraction", c.envInt("KEYGATE_DEBUG_MUTEX_FRACTION", 0), "record 1 in N contended locks in the profiler's /debug/pprof/mutex; each costs a little while on; 0: off (KEYGATE_DEBUG_MUTEX_FRACTION)")
	fs.DurationVar(&c.DebugBlockRate, "debug-block-rate", c.envDuration("KEYGATE_DEBUG_BLOCK_RATE", 0), "record about one wait per this much time spent blocked in the profiler's /debug/pprof/block; each costs a little while on; 0: off (KEYGATE_DEBUG_BLOCK_RATE)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.envDuration("KEYGATE_FLUSH_INTERVAL", d.FlushInterval), "how often audit events and last_used_at are written (KEYGATE_FLUSH_INTERVAL)")
	c.bindLimits(fs)
	c.bindPolicy(fs)
}

// bindPolicy registers the policy bundle and the decision log
// (docs/policies.md).
func (c *config) bindPolicy(fs *flag.FlagSet) {
	d := app.Defaults()
	fs.StringVar(&c.PolicyBundleURL, "policy-bundle-url", env("KEYGATE_POLICY_BUNDLE_URL", ""), "load policies and data from the OPA bundle (.tar.gz) at this URL, polled with its ETag; instead of --policy-dir (KEYGATE_POLICY_BUNDLE_URL)")
	fs.DurationVar(&c.PolicyBundleInterval, "policy-bundle-interval", c.envDuration("KEYGATE_POLICY_BUNDLE_INTERVAL", d.PolicyBundleInterval), "how often the bundle is polled (KEYGATE_POLICY_BUNDLE_INTERVAL)")
	fs.StringVar(&c.PolicyBundlePublicKey, "policy-bundle-public-key", env("KEYGATE_POLICY_BUNDLE_PUBLIC_KEY", ""), "PEM public key bundles must be signed with (opa build --signing-key); unset: bundles are read unsigned (KEYGATE_POLICY_BUNDLE_PUBLIC_KEY)")
	fs.StringVar(&c.PolicyBundlePublicKeyFile, "policy-bundle-public-key-file", env("KEYGATE_POLICY_BUNDLE_PUBLIC_KEY_FILE", ""), "file holding that public key (KEYGATE_POLICY_BUNDLE_PUBLIC_KEY_FILE)")
	fs.StringVar(&c.PolicyBundleSigningAlg, "policy-bundle-signing-alg", env("KEYGATE_POLICY_BUNDLE_SIGNING_ALG", d.PolicyBundleSigningAlg), "algorithm of the bundle's signature: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512 (KEYGATE_POLICY_BUNDLE_SIGNING_ALG)")
	fs.StringVar(&c.PolicyBundleToken, "policy-bundle-token", env("KEYGATE_POLICY_BUNDLE_TOKEN", ""), "bearer token sent to the bundle server (KEYGATE_POLICY_BUNDLE_TOKEN)")
	fs.StringVar(&c.PolicyBundleTokenFile, "policy-bundle-token-file", env("KEYGATE_POLICY_BUNDLE_TOKEN_FILE", ""), "file holding that token (KEYGATE_POLICY_BUNDLE_TOKEN_FILE)")
	fs.Int64Var(&c.PolicyBundleMaxBytes, "policy-bundle-max-bytes", c.envInt64("KEYGATE_POLICY_BUNDLE_MAX_BYTES", d.PolicyBundleMaxBytes), "largest bundle downloaded, and largest once unpacked (KEYGATE_POLICY_BUNDLE_MAX_BYTES)")
	fs.StringVar(&c.DecisionLog, "decision-log", env("KEYGATE_DECISION_LOG", ""), "log every decision in OPA's decision-log shape: console, file:PATH or http:URL; unset: off (KEYGATE_DECISION_LOG)")
	fs.Float64Var(&c.DecisionLogSample, "decision-log-sample", c.envFloat("KEYGATE_DECISION_LOG_SAMPLE", d.DecisionLogSample), "share of decisions logged, above 0 and at most 1 (KEYGATE_DECISION_LOG_SAMPLE)")
	fs.IntVar(&c.DecisionLogBuffer, "decision-log-buffer", c.envInt("KEYGATE_DECISION_LOG_BUFFER", d.DecisionLogBuffer), "decisions queued for the decision log; past it they are dropped and counted, never slowing a decision (KEYGATE_DECISION_LOG_BUFFER)")
	fs.BoolVar(&c.DecisionLogGzip, "decision-log-gzip", c.envBool("KEYGATE_DECISION_LOG_GZIP", d.DecisionLogGzip), "compress the posts of the http decision log (KEYGATE_DECISION_LOG_GZIP)")
}

// bindLimits registers the limits against abuse (docs/operations.md,
// "Limits and abuse").
func (c *config) bindLimits(fs *flag.FlagSet) {
	d := app.Defaults()
	fs.IntVar(&c.AuthFailureBurst, "auth-failure-burst", c.envInt("KEYGATE_AUTH_FAILURE_BURST", d.AuthFailureBurst), "failed authentications an address may have in a row before it gets 429; 0 turns the limit off (KEYGATE_AUTH_FAILURE_BURST)")
	fs.Float64Var(&c.AuthFailureRate, "auth-failure-rate", c.envFloat("KEYGATE_AUTH_FAILURE_RATE", d.AuthFailureRate), "failed authentications a second an address earns back (KEYGATE_AUTH_FAILURE_RATE)")
	fs.IntVar(&c.AuthFailureMaxAddresses, "auth-failure-max-addresses", c.envInt("KEYGATE_AUTH_FAILURE_MAX_ADDRESSES", d.AuthFailureMaxAddresses), "addresses the failed-authentication limit tracks at once (KEYGATE_AUTH_FAILURE_MAX_ADDRESSES)")
	fs.DurationVar(&c.AuditRetention, "audit-retention", c.envDuration("KEYGATE_AUDIT_RETENTION", d.AuditRetention), "audit events older than this are deleted; 0 keeps them forever (KEYGATE_AUDIT_RETENTION)")
	fs.Int64Var(&c.MCPMaxResponseBytes, "mcp-max-response-bytes", c.envInt64("KEYGATE_MCP_MAX_RESPONSE_BYTES", d.MCPMaxResponseBytes), "largest answer read from an upstream MCP server (KEYGATE_MCP_MAX_RESPONSE_BYTES)")
	fs.IntVar(&c.MCPMaxSessionsPerKey, "mcp-max-sessions-per-key", c.envInt("KEYGATE_MCP_MAX_SESSIONS_PER_KEY", d.MCPMaxSessionsPerKey), "MCP client sessions one key may have open at once (KEYGATE_MCP_MAX_SESSIONS_PER_KEY)")
	fs.IntVar(&c.MCPMaxSessions, "mcp-max-sessions", c.envInt("KEYGATE_MCP_MAX_SESSIONS", d.MCPMaxSessions), "MCP client sessions open at once on this instance (KEYGATE_MCP_MAX_SESSIONS)")
	fs.DurationVar(&c.MCPSessionIdleTimeout, "mcp-session-idle-timeout", c.envDuration("KEYGATE_MCP_SESSION_IDLE_TIMEOUT", d.MCPSessionIdleTimeout), "an MCP session without a request for this long is closed (KEYGATE_MCP_SESSION_IDLE_TIMEOUT)")
	fs.DurationVar(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", c.envDuration("KEYGATE_HTTP_READ_HEADER_TIMEOUT", d.HTTPReadHeaderTimeout), "time a client has to send a request's headers (KEYGATE_HTTP_READ_HEADER_TIMEOUT)")
	fs.DurationVar(&c.HTTPReadTimeout, "http-read-timeout", c.envDuration("KEYGATE_HTTP_READ_TIMEOUT", d.HTTPReadTimeout), "time a client has to send a whole request (KEYGATE_HTTP_READ_TIMEOUT)")
	fs.DurationVar(&c.HTTPWriteTimeout, "http-write-timeout", c.envDuration("KEYGATE_HTTP_WRITE_TIMEOUT", d.HTTPWriteTimeout), "time a client has to take an answer; MCP event streams excepted (KEYGATE_HTTP_WRITE_TIMEOUT)")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", c.envDuration("KEYGATE_HTTP_IDLE_TIMEOUT", d.HTTPIdleTimeout), "an idle keep-alive connection is closed after this (KEYGATE_HTTP_IDLE_TIMEOUT)")
	fs.IntVar(&c.HTTPMaxConnections, "http-max-connections", c.envInt("KEYGATE_HTTP_MAX_CONNECTIONS", d.HTTPMaxConnections), "connections served at once; more wait to be accepted (KEYGATE_HTTP_MAX_CONNECTIONS)")
	fs.StringVar(&c.RedisURL, "redis-url", env("KEYGATE_REDIS_URL", ""), "redis://[user:password@]host:port/db shared by every instance for per-key rate limits; unset: each instance counts alone (KEYGATE_REDIS_URL)")
	fs.StringVar(&c.RedisURLFile, "redis-url-file", env("KEYGATE_REDIS_URL_FILE", ""), "file holding the Redis URL, for one that carries a password (KEYGATE_REDIS_URL_FILE)")
	fs.DurationVar(&c.RedisTimeout, "redis-timeout", c.envDuration("KEYGATE_REDIS_TIMEOUT", d.RedisTimeout), "longest a decision waits on Redis; past it the instance counts alone for a second (KEYGATE_REDIS_TIMEOUT)")
	fs.DurationVar(&c.UsageRetention, "usage-retention", c.envDuration("KEYGATE_USAGE_RETENTION", d.UsageRetention), "keys' hourly usage counts older than this are deleted; 0 keeps them forever (KEYGATE_USAGE_RETENTION)")
}

// validate reports bad environment values and the command's own settings;
// serve adds app.Config's checks.
func (c *config) validate(serve bool) error {
	errs := c.envErrs
	if err := c.ReadSecretFiles(); err != nil {
		errs = append(errs, err)
	}
	if serve {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if nets, err := app.ParseNetworks(c.AllowedNetworks); err != nil {
		errs = append(errs, err)
	} else {
		c.MCPAllowedNetworks = nets
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("KEYGATE_LOG_FORMAT must be text or json, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// finish completes the app.Config from the command's own settings.
func (c *config) finish(logger *slog.Logger) {
	c.Logger = logger
	c.Version = version
	c.Config.TrustedProxies = nil
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Config.TrustedProxies = append(c.Config.TrustedProxies, p)
		}
	}
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

func (c *config) envInt64(name string, def int64) int64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not an integer", name, v))
		return def
	}
	return n
}

func (c *config) envFloat(name string, def float64) float64 {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("%s=%q is not a number", name, v))
		return def
	}
	return f
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
